#!/usr/bin/python3
"""ternd over virtual devices: packet rate and reload time. Not a test (no assertions).

Rate: net_pcap replays a small pcap in a loop (infinite_rx=1) into one worker; encapsulated
packets leave on net_null0 (backend_device), so no file is written in the measured path. Two runs
of different length are subtracted so start-up cancels out. The same feed into dpdk-testpmd
(io forwarding to net_null) is the baseline measured in the same run.

Reload: a config with VIPS x BACKENDS; SIGHUP; ternd's log line gives build and publish times.

Usage: bench/ternd_rate.py [path/to/ternd] (default .build/release/ternd)
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../Tests/outside"))
import make_pcap  # noqa: E402

TERND = ".build/release/ternd"  # set by measure()
EAL = ["-l", "0-1", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--log-level", "lib.eal:error"]
RUN = [0]


def prefix():
    RUN[0] += 1
    return f"tern-bench-{os.getpid()}-{RUN[0]}"


def config(path, vips=1, backends=100, devices=("net_pcap0", "net_null0"), weight=lambda v: 100):
    """`weight(v)`: the weight of every backend of VIP v (a reload that changes it rebuilds that VIP's table)."""
    lines = ['[node]\nname = "bench"\ntunnel_source_v4 = "10.0.0.10"\n[dataplane]\nflow_table_entries = 1048576\n',
             f'[[port]]\ndevice = "{devices[0]}"\ngateway_mac = "02:00:00:00:00:fe"\nmac = "02:00:00:00:00:01"\n'
             f'backend_device = "{devices[1]}"\n',
             f'[[port]]\ndevice = "{devices[1]}"\ngateway_mac = "02:00:00:00:00:fe"\nmac = "02:00:00:00:00:02"\n']
    for v in range(vips):
        lines.append(f'[[vip]]\naddress = "192.0.{2 + v // 250}.{v % 250 + 1}"\nport = 80\nprotocol = "tcp"\n')
        for b in range(backends):
            lines.append(f'[[vip.backend]]\naddress = "10.{1 + v // 250}.{v % 250}.{b + 1}"\nweight = {weight(v)}\n')
    with open(path, "w") as f:
        f.write("".join(lines))


def ternd_rx(feed, cfg, seconds):
    p = prefix()
    cmd = [TERND, *EAL, "--file-prefix", p, "--vdev", f"net_pcap0,rx_pcap={feed},infinite_rx=1", "--vdev", "net_null0,no-rx=1",
           "--", "--config", cfg]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    shutil.rmtree(f"/var/run/dpdk/{p}", ignore_errors=True)
    if os.path.exists(f"/run/tern/flows/{p}"):
        os.remove(f"/run/tern/flows/{p}")  # the flow state ternd keeps for a restart
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["mbufs_in_use"] == 0 and stats["rx"] == stats["forwarded"], (stats, err)
    return stats["rx"]


def testpmd_rx(feed, seconds):
    p = prefix()
    cmd = ["dpdk-testpmd", *EAL, "--file-prefix", p, "--vdev", f"net_pcap0,rx_pcap={feed},infinite_rx=1", "--vdev", "net_null0,no-rx=1",
           "--", "--no-flush-rx", "--forward-mode=io", "--auto-start", "--total-num-mbufs=16384"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(seconds)
    out, _ = proc.communicate(input="quit\n", timeout=60)
    shutil.rmtree(f"/var/run/dpdk/{p}", ignore_errors=True)
    if os.path.exists(f"/run/tern/flows/{p}"):
        os.remove(f"/run/tern/flows/{p}")  # the flow state ternd keeps for a restart
    m = re.findall(r"RX-packets:\s+(\d+)", out)
    return int(m[-1]) if m else 0


def rate(fn, *args):
    short, long_ = fn(*args, 2.0), fn(*args, 5.0)
    return (long_ - short) / 3.0 / 1e6


def reload_time(vips, backends, tmp, weights=(lambda v: 50 if v == 0 else 100, lambda v: 60)):
    """One reload per entry of `weights` (by default: one VIP's weights changed, one table to
    build; then every VIP's, all of them). Returns, for each, (ms to build, tables built, ms to
    publish)."""
    cfg = os.path.join(tmp, f"reload-{vips}x{backends}.toml")
    config(cfg, vips, backends, devices=("net_null0", "net_null1"))
    p = prefix()
    cmd = [TERND, *EAL, "--file-prefix", p, "--vdev", "net_null0,no-rx=1", "--vdev", "net_null1,no-rx=1", "--", "--config", cfg,
           "--idle-sleep-us", "100"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3 + vips * backends / 10000)
    for weight in weights:
        config(cfg, vips, backends, devices=("net_null0", "net_null1"), weight=weight)
        proc.send_signal(signal.SIGHUP)
        time.sleep(2 + vips * backends / 50000)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    shutil.rmtree(f"/var/run/dpdk/{p}", ignore_errors=True)
    if os.path.exists(f"/run/tern/flows/{p}"):
        os.remove(f"/run/tern/flows/{p}")  # the flow state ternd keeps for a restart
    found = re.findall(r"reload ok: .*built in ([\d.]+) ms \((\d+) Maglev tables? built.*published in ([\d.]+) ms", err)
    return [(float(b), int(n), float(pub)) for b, n, pub in found]


def measure(ternd):
    """Lines of (label, figure) for the summary: ternd's rate, testpmd's on the same feed, reloads."""
    global TERND
    TERND = ternd
    tmp = tempfile.mkdtemp(prefix="tern-bench-")
    feed = os.path.join(tmp, "feed.pcap")
    # 1000 flows, 64-byte frames, one VIP with 100 backends.
    frames = [bytes(make_pcap.eth() / make_pcap.IP(src=f"198.51.{100 + i // 250}.{i % 250 + 1}", dst="192.0.2.1") /
                    make_pcap.TCP(sport=1024 + i, dport=80, flags="A")) for i in range(1000)]
    make_pcap.write_frames(feed, [f + b"\0" * (60 - len(f)) for f in frames])
    cfg = os.path.join(tmp, "rate.toml")
    config(cfg)
    # A 100,000-packet capture of 100,000 flows (net_pcap holds it all in mbufs; the pool grows).
    big = os.path.join(tmp, "feed-100k.pcap")
    template = frames[0]
    big_frames = []
    for i in range(100_000):
        f = bytearray(template + b"\0" * (60 - len(template)))
        f[28:30] = (100 + i // 60_000).to_bytes(2, "big")
        f[34:36] = (1024 + i % 60_000).to_bytes(2, "big")
        big_frames.append(bytes(f))
    make_pcap.write_frames(big, big_frames)
    ternd, testpmd = rate(ternd_rx, feed, cfg), rate(testpmd_rx, feed)
    lines = [("ternd, 1 worker, net_pcap infinite_rx -> net_null (1000 flows, 64 B)", f"{ternd:.2f} Mpps"),
             ("dpdk-testpmd io forward, same feed", f"{testpmd:.2f} Mpps"),
             ("ternd / testpmd", f"{ternd / testpmd:.2f}" if testpmd else "-"),
             ("ternd, same, a 100,000-packet capture of 100,000 flows", f"{rate(ternd_rx, big, cfg):.2f} Mpps")]
    for vips, backends in [(2, 4), (100, 100)]:
        for built, tables, published in reload_time(vips, backends, tmp):
            lines.append((f"reload {vips} VIPs x {backends} backends (M=65537), {tables} table(s) built",
                          f"{built} ms build, {published} ms publish"))
    # Six reloads of 1,000 VIPs x 100 backends, each changing VIP 0's weights (one table to build).
    series = reload_time(1000, 100, tmp, [lambda v, k=k: 50 + k if v == 0 else 100 for k in range(6)])
    builds = [b for b, _, _ in series]
    if len(builds) == 6:
        lines.append(("reload 1000 VIPs x 100 backends, one VIP changed: first after start, then median of 5",
                      f"{builds[0]} ms, {sorted(builds[1:])[2]} ms build"))
    shutil.rmtree(tmp, ignore_errors=True)
    return lines


def main():
    for label, figure in measure(sys.argv[1] if len(sys.argv) > 1 else TERND):
        print(f"{label:<72} {figure}")


if __name__ == "__main__":
    main()
