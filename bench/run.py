#!/usr/bin/python3
"""Tern's benchmark driver: runs TernBench (pipeline, dpdk and Maglev modes), adds instruction
counts per packet measured with callgrind, checks that the packet path calls no allocator,
reference counting or lock, prints a table and writes JSON and a PNG chart.

  bench/run.py [--quick] [--json FILE] [--png FILE]

Instructions per packet: callgrind counts only inside `benchBurst` (one burst through the
pipeline); two runs with different pass counts are subtracted, so set-up cancels out. The small
variant of each scenario is used (instructions barely depend on table size; cache misses do).
The call check lists every function called below `benchBurst` and fails on malloc, free,
swift_retain/release, swift_allocObject or pthread locks.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, ".build/release/TernBench")
FORBIDDEN = re.compile(r"malloc|calloc|realloc|\bfree\b|swift_retain|swift_release|swift_allocObject|swift_bridgeObjectRetain|"
                       r"pthread_mutex|swift_beginAccess|swift_dynamicCast|objc_")


def callgrind(scenario, passes, out):
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=*benchBurst*", "--compress-strings=no",
                    "--compress-pos=no", f"--callgrind-out-file={out}",
                    BENCH, "--callgrind", scenario, str(passes)], check=True, capture_output=True)
    total = 0
    edges = {}
    caller = callee = None
    after_calls = False
    with open(out) as f:
        for line in f:
            if line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith("fn="):
                caller = line[3:].strip()
            elif line.startswith("cfn="):
                callee = line[4:].strip()
            elif line.startswith("calls="):
                after_calls = True
            elif after_calls:
                after_calls = False
                if int(line.split()[-1]) > 0:  # inclusive cost while collecting
                    edges.setdefault(caller, set()).add(callee)
    # Everything reachable from benchBurst.
    roots = [f for f in edges if "benchBurst" in f]
    seen, todo = set(), list(roots)
    while todo:
        for c in edges.get(todo.pop(), ()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return total, seen


def instructions_per_packet(scenario, packets_per_pass, tmp):
    t1, c1 = callgrind(scenario, 1, os.path.join(tmp, "cg1.out"))
    t3, c3 = callgrind(scenario, 3, os.path.join(tmp, "cg3.out"))
    return (t3 - t1) / (2 * packets_per_pass), c1 | c3


def short_name(symbol):
    """parseNetwork from $s8TernWire6ParserO12parseNetwork_..., or the symbol itself."""
    m = re.search(r"[A-Z]\d+([a-z][A-Za-z]*?)(?:_|\d)", symbol)
    return m.group(1) if m else symbol


def chart(records, path, machine, date):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pipeline = [r for r in records if r["mode"] == "pipeline"]
    dpdk = {}
    for r in records:
        if r["mode"].startswith("dpdk"):
            dpdk.setdefault(r["scenario"], {})[r["mode"]] = r["mpps"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    ax = axes[0]
    names = [r["scenario"] for r in pipeline]
    ax.barh(names, [r["ns_per_packet"] for r in pipeline], color="#4477aa")
    ax.set_xlabel("ns per packet (pipeline alone, one core)")
    ax.invert_yaxis()
    ax.set_title("Tern pipeline")
    ax = axes[1]
    scen = list(dpdk)
    width = 0.27
    for k, (mode, color) in enumerate([("dpdk-io", "#bbbbbb"), ("dpdk-macswap", "#888888"), ("dpdk", "#ee6677")]):
        ax.bar([i + (k - 1) * width for i in range(len(scen))], [dpdk[s].get(mode, 0) for s in scen], width,
               label={"dpdk": "Tern worker loop", "dpdk-io": "io forward (ceiling)", "dpdk-macswap": "MAC swap"}[mode], color=color)
    ax.set_xticks(range(len(scen)))
    ax.set_xticklabels(scen, rotation=30, ha="right")
    ax.set_ylabel("Mpps, one worker core")
    ax.set_title("dpdk mode: Tern vs its baselines (same harness, same run)")
    ax.legend()
    fig.suptitle(f"{machine} - {date}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=os.path.join(ROOT, "out/bench.json"))
    ap.add_argument("--png", default=os.path.join(ROOT, "out/bench.png"))
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="tern-bench-")
    raw = os.path.join(tmp, "bench.json")
    cmd = [BENCH, "--json", raw] + (["--quick"] if args.quick else [])
    subprocess.run(cmd, check=True)
    subprocess.run("rm -rf /var/run/dpdk/tern-bench-*", shell=True)
    with open(raw) as f:
        result = json.load(f)

    print("\ninstructions per packet (callgrind, inside benchBurst, small variants):")
    bad = []
    for r in result["records"]:
        if r["mode"] != "pipeline":
            continue
        small = r["scenario"] if r["scenario"].endswith("-small") else r["scenario"] + "-small"
        per_packet, callees = instructions_per_packet(small, 10_000, tmp)
        r["instructions_per_packet"] = round(per_packet, 1)
        forbidden = sorted(c for c in callees if FORBIDDEN.search(c))
        if forbidden:
            bad.append((small, forbidden))
        names = ", ".join(sorted(short_name(c) for c in callees)) or "-"
        print(f"  {small:<24} {per_packet:7.1f}   functions called: {names}")
        if args.quick:
            break  # one scenario is enough for the smoke run
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    chart(result["records"], args.png, result["machine"], result["date"])
    print(f"\nwrote {args.json} and {args.png}")
    if bad:
        print("FAIL: the packet path calls", bad)
        sys.exit(1)
    print("ok: no allocation, reference counting or lock below benchBurst")


if __name__ == "__main__":
    main()
