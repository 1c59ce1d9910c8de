#!/usr/bin/env bash
# Every config in configs/ and Tests/outside/ must pass `ternctl check`; every file in
# Tests/outside/bad-configs/ must be refused with exit 78 and name the key path or line given in
# its first line (`# expect: TEXT`).
set -u
ternctl=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
fail=0
for f in "$root"/configs/*.toml "$here"/*.toml; do
    if ! out=$("$ternctl" check "$f" 2>&1); then
        echo "FAIL $f should pass: $out"; fail=1
    else
        echo "$out"
    fi
done
for f in "$here"/bad-configs/*.toml; do
    expect=$(sed -n '1s/^# expect: //p' "$f")
    out=$("$ternctl" check "$f" 2>&1); rc=$?
    if [ $rc -ne 78 ]; then
        echo "FAIL $f: exit $rc, expected 78: $out"; fail=1
    elif [[ "$out" != *"$expect"* ]]; then
        echo "FAIL $f: message does not contain '$expect': $out"; fail=1
    else
        echo "refused as expected: $(basename "$f"): $out"
    fi
done
exit $fail
