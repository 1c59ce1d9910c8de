#!/usr/bin/python3
"""Before and after a change to the packet path, in one run: callgrind instructions per packet
(small variants, stable) and pipeline ns per packet (rounds of the two binaries interleaved, best
of each), for two TernBench binaries built from different commits.

  bench/compare.py BEFORE/TernBench AFTER/TernBench [--rounds N] [--scenario S ...]

Build the "before" binary from a worktree of the older commit (`git worktree add ../before REV`,
then `swift build -c release --product TernBench` there). Prints a Markdown table for
bench/RESULTS.md.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402

SCENARIOS = ["tcp-established", "tcp-syn", "udp", "ipv6", "gue", "multi-vip", "imix"]


def pipeline_ns(bench, scenario, tmp):
    out = os.path.join(tmp, "p.json")
    subprocess.run([bench, "--mode", "pipeline", "--scenario", scenario, "--json", out], check=True, capture_output=True)
    with open(out) as f:
        return next(r["ns_per_packet"] for r in json.load(f)["records"] if r["mode"] == "pipeline")


def instructions(bench, scenario, tmp):
    run.BENCH = bench
    per_packet, callees = run.instructions_per_packet(scenario + "-small", 10_000, tmp)
    forbidden = sorted(c for c in callees if run.FORBIDDEN.search(c))
    return per_packet, forbidden


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenario", action="append")
    args = ap.parse_args()
    scenarios = args.scenario or SCENARIOS
    tmp = tempfile.mkdtemp(prefix="tern-compare-")
    rows = []
    bad = []
    for s in scenarios:
        ib, fb = instructions(args.before, s, tmp)
        ia, fa = instructions(args.after, s, tmp)
        bad += fa
        nb, na = [], []
        for _ in range(args.rounds):
            nb.append(pipeline_ns(args.before, s, tmp))
            na.append(pipeline_ns(args.after, s, tmp))
        rows.append((s, ib, ia, min(nb), min(na)))
        print(f"{s:<18} instr {ib:7.1f} -> {ia:7.1f} ({(ia - ib) / ib * 100:+.1f}%)   "
              f"ns {min(nb):6.1f} -> {min(na):6.1f}  (all rounds: {nb} / {na})", flush=True)
    print("\n| scenario | instructions/packet before | after | change | ns/packet before | after |")
    print("|---|---|---|---|---|---|")
    for s, ib, ia, nb, na in rows:
        print(f"| {s} | {ib:.1f} | {ia:.1f} | {(ia - ib) / ib * 100:+.1f}% | {nb:.1f} | {na:.1f} |")
    subprocess.run("rm -rf /var/run/dpdk/tern-bench-*", shell=True)
    if bad:
        print("FAIL: the packet path calls", sorted(set(bad)))
        sys.exit(1)


if __name__ == "__main__":
    main()
