#!/usr/bin/python3
"""Tern's benchmark driver: runs TernBench (pipeline, dpdk and Maglev modes), adds instruction
counts per packet measured with callgrind, checks that the packet path calls no allocator,
reference counting or lock, prints a one-screen summary and writes JSON, a PNG chart and
TernBench's full output (bench.log beside the JSON).

  bench/run.py [--quick] [--scenario NAME] [--ternd PATH] [--json FILE] [--png FILE]

--scenario runs one scenario (pipeline and dpdk modes, its instructions; no Maglev builds);
--ternd adds ternd over net_pcap beside dpdk-testpmd and reload times (bench/ternd_rate.py).

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


def summary(records, ternd_lines, machine, date):
    """The one-screen table: per scenario, pipeline ns and Mpps, instructions, worker loop vs io."""
    rows = {}
    for r in records:
        row = rows.setdefault(r["scenario"], {})
        row[r["mode"]] = r
    out = [f"Tern benchmark summary - {machine} - {date}", ""]
    head = f"{'scenario':<18}{'pipeline ns':>12}{'Mpps':>8}{'instr/pkt':>11}{'worker Mpps':>13}{'io Mpps':>9}{'ratio to io':>13}"
    out += [head, "-" * len(head)]
    for name, row in rows.items():
        if "build" in row:
            continue
        p, d, io = row.get("pipeline"), row.get("dpdk"), row.get("dpdk-io")

        def f(x, spec):
            return format(x, spec) if isinstance(x, (int, float)) else "-".rjust(int(spec.split(".")[0]))
        out.append(f"{name:<18}{f(p and p['ns_per_packet'], '12.1f')}{f(p and p['mpps'], '8.2f')}"
                   f"{f(p and p.get('instructions_per_packet'), '11.1f')}{f(d and d['mpps'], '13.2f')}"
                   f"{f(io and io['mpps'], '9.2f')}{f(d and d.get('ratio_to_baseline'), '13.2f')}")
    builds = [(n, row["build"]["ns_per_packet"] / 1e6) for n, row in rows.items() if "build" in row]
    maglev = [(n.removeprefix("maglev-"), ms) for n, ms in builds if n.startswith("maglev-")]
    reload = [(n.removeprefix("reload-"), ms) for n, ms in builds if n.startswith("reload-")]
    if maglev:
        out += ["", "Maglev builds (median of 11): " + ", ".join(f"{n} {ms:.2f} ms" for n, ms in maglev)]
    if reload:
        out += ["Reload builds, one VIP of VIPs x backends changed (median of 5): " + ", ".join(f"{n} {ms:.2f} ms" for n, ms in reload)]
    if ternd_lines:
        out += [""] + [f"{label:<72} {figure}" for label, figure in ternd_lines]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scenario", help="one scenario (TernBench's names: tcp-established, tcp-syn, udp, ipv6, gue, multi-vip, imix)")
    ap.add_argument("--ternd", help="also measure this ternd over net_pcap beside dpdk-testpmd (bench/ternd_rate.py)")
    ap.add_argument("--json", default=os.path.join(ROOT, "out/bench.json"))
    ap.add_argument("--png", default=os.path.join(ROOT, "out/bench.png"))
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="tern-bench-")
    raw = os.path.join(tmp, "bench.json")
    log_path = os.path.splitext(args.json)[0] + ".log"
    cmd = [BENCH, "--json", raw] + (["--quick"] if args.quick else []) + (["--scenario", args.scenario] if args.scenario else [])
    print(f"TernBench running (full output: {log_path}) ...", flush=True)
    with open(log_path, "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    subprocess.run("rm -rf /var/run/dpdk/tern-bench-*", shell=True)
    if done.returncode != 0:
        print(open(log_path).read()[-3000:])
        sys.exit(f"TernBench failed ({done.returncode}); see {log_path}")
    with open(raw) as f:
        result = json.load(f)
    if not any(r["mode"] == "pipeline" for r in result["records"]):
        sys.exit(f"no scenario named {args.scenario!r} (see {log_path})")

    print("callgrind (instructions per packet, small variants) ...", flush=True)
    log = open(log_path, "a")
    log.write("\ninstructions per packet (callgrind, inside benchBurst, small variants):\n")
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
        log.write(f"  {small:<24} {per_packet:7.1f}   functions called: {names}\n")
        if args.quick:
            break  # one scenario is enough for the smoke run
    log.close()
    ternd_lines = []
    if args.ternd:
        print("ternd over net_pcap beside dpdk-testpmd, reloads ...", flush=True)
        import ternd_rate
        ternd_lines = ternd_rate.measure(args.ternd)
        result["ternd"] = [{"measure": label, "figure": figure} for label, figure in ternd_lines]
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    chart(result["records"], args.png, result["machine"], result["date"])
    print("\n" + summary(result["records"], ternd_lines, result["machine"], result["date"]))
    print(f"\nwrote {args.json}, {args.png} and {log_path}")
    if bad:
        print("FAIL: the packet path calls", bad)
        sys.exit(1)
    print("ok: no allocation, reference counting or lock below benchBurst")


if __name__ == "__main__":
    main()
