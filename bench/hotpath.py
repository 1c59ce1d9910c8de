#!/usr/bin/env python3
"""Where a scenario's instructions per packet go, instruction by instruction.

Runs TernBench's callgrind mode for 1 and 3 passes over the small variant of a scenario
(10,000 packets per pass), subtracts the two per instruction address (so set-up and the first,
cold pass cancel out), divides by the 20,000 packets between them and prints every instruction
executed at least --min times per packet, with its disassembly (objdump), grouped by function.

    bench/hotpath.py [--bench .build/release/TernBench] [--scenario tcp-established] [--min 0.5]
"""
import argparse
import collections
import os
import re
import subprocess
import tempfile

PACKETS_PER_PASS = 10_000


def per_address(bench, scenario, passes, out):
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=*benchBurst*", "--dump-instr=yes",
                    "--compress-strings=no", "--compress-pos=no", f"--callgrind-out-file={out}",
                    bench, "--callgrind", scenario + "-small", str(passes)], check=True, capture_output=True)
    cost = collections.Counter()
    function = {}
    fn = None
    skip_next = False
    columns = 1  # position columns before the cost ("positions: instr line" gives two)
    with open(out) as f:
        for line in f:
            if line.startswith("positions:"):
                columns = len(line.split()) - 1
            elif line.startswith("fn="):
                fn = line[3:].strip()
            elif line.startswith("calls="):
                skip_next = True  # the next line is the call's inclusive cost, not this function's
            elif line.startswith("0x"):
                if skip_next:
                    skip_next = False
                    continue
                fields = line.split()
                a = int(fields[0], 16)
                cost[a] += int(fields[columns])
                function[a] = fn
    return cost, function


def disassembly(bench):
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-M", "intel", bench],
                          check=True, capture_output=True, text=True).stdout
    lines = {}
    for line in text.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(.*)", line)
        if m:
            lines[int(m.group(1), 16)] = re.sub(r"\s+", " ", m.group(2)).strip()
    return lines


def demangle(names):
    out = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names),
                         capture_output=True, text=True)
    result = out.stdout.splitlines() if out.returncode == 0 else []
    return dict(zip(names, result)) if len(result) == len(names) else {n: n for n in names}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=".build/release/TernBench")
    ap.add_argument("--scenario", default="tcp-established")
    ap.add_argument("--min", type=float, default=0.5, help="smallest executions per packet to list")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tern-hotpath-")
    one, functions = per_address(args.bench, args.scenario, 1, os.path.join(tmp, "cg1.out"))
    three, functions3 = per_address(args.bench, args.scenario, 3, os.path.join(tmp, "cg3.out"))
    functions.update(functions3)
    packets = 2 * PACKETS_PER_PASS
    per_packet = {a: (three[a] - one.get(a, 0)) / packets for a in three}
    asm = disassembly(args.bench)
    by_function = collections.defaultdict(list)
    for a, n in per_packet.items():
        by_function[functions[a]].append((a, n))
    names = demangle(sorted(by_function))
    total = sum(per_packet.values())
    print(f"{args.scenario}: {total:.1f} instructions per packet ({args.bench})")
    for fn, rows in sorted(by_function.items(), key=lambda kv: -sum(n for _, n in kv[1])):
        subtotal = sum(n for _, n in rows)
        if subtotal < args.min:
            continue
        print(f"\n{subtotal:7.1f}  {names.get(fn, fn)[:150]}")
        for a, n in sorted(rows):
            if n >= args.min:
                print(f"{n:7.2f}  {a:x}  {asm.get(a, '?')}")


if __name__ == "__main__":
    main()
