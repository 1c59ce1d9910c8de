#!/usr/bin/env bash
# `ternctl check` (built with --sanitize=address, which brings LeakSanitizer) over every config in
# configs/, Tests/outside and Tests/outside/bad-configs: each must exit 0 or 78, and no run may
# report a leak or a memory error.
set -u
ternctl=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export ASAN_OPTIONS=detect_leaks=1:exitcode=99
export LSAN_OPTIONS=exitcode=98
fail=0
count=0
for f in "$root"/configs/*.toml "$here"/*.toml "$here"/bad-configs/*.toml; do
    out=$("$ternctl" check "$f" 2>&1); rc=$?
    count=$((count + 1))
    if [ $rc -ne 0 ] && [ $rc -ne 78 ] || [[ "$out" == *"Sanitizer"* ]]; then
        echo "FAIL $f: exit $rc"; echo "$out" | head -40; fail=1
    fi
done
[ $fail -eq 0 ] && echo "ok: ternctl check over $count configs: no leak, no memory error"
exit $fail
