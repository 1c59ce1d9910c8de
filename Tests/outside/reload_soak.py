#!/usr/bin/python3
"""Reload soak: ternd forwards a looping capture (net_pcap infinite_rx into net_null) while it is
sent SIGHUP again and again with a config of VIPS x BACKENDS; its resident memory (VmRSS) is read
after the first reloads and at the end. Fails when RSS grows by more than --max-growth-mib or
when a reload fails or packets go missing.

  reload_soak.py PATH/TO/ternd [--vips 100] [--backends 100] [--table-size 1009] [--reloads 40]

The figure in bench/RESULTS.md (1,000 reloads of 1000 x 100) comes from:
  reload_soak.py .build/release/ternd --vips 1000 --backends 100 --table-size 65537 --reloads 1000 --no-load
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_pcap  # noqa: E402



def remove_flow_state(prefix):
    """ternd keeps its flow tables in /run/tern/flows/PREFIX across restarts (dataplane.flow_state's
    default); a test's ternd runs leave nothing behind."""
    try:
        os.remove(f"/run/tern/flows/{prefix}")
    except FileNotFoundError:
        pass

def config_text(vips, backends, table_size, generation):
    out = ['[node]\nname = "soak"\ntunnel_source_v4 = "10.0.0.10"\n[dataplane]\nflow_table_entries = 65536\n'
           '[[port]]\ndevice = "net_pcap0"\ngateway_mac = "02:00:00:00:00:fe"\nmac = "02:00:00:00:00:01"\n'
           f'[maglev]\ntable_size = {table_size}\n']
    for v in range(vips):
        out.append(f'[[vip]]\naddress = "192.0.{2 + v // 250}.{v % 250 + 1}"\nport = 80\nprotocol = "tcp"\n')
        for b in range(backends):
            # Weights change with every generation, so every reload builds different tables.
            out.append(f'[[vip.backend]]\naddress = "10.{1 + v // 250}.{v % 250}.{b + 1}"\nweight = {(b + generation) % 7 + 1}\n')
    return "".join(out)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_for(proc, text, timeout):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"ternd did not log {text!r}: {''.join(seen)[-800:]}")


def soak(ternd, vips, backends, table_size, reloads, max_growth_mib, load=True, report_every=0):
    tmp = tempfile.mkdtemp(prefix="tern-soak-")
    prefix = f"tern-soak-{os.getpid()}"
    try:
        config = os.path.join(tmp, "soak.toml")
        with open(config, "w") as f:
            f.write(config_text(vips, backends, table_size, 0))
        inp = os.path.join(tmp, "loop.pcap")
        make_pcap.write_frames(inp, [bytes(make_pcap.eth() / make_pcap.IP(src=f"198.51.100.{i % 250 + 1}", dst="192.0.2.1") /
                                           make_pcap.TCP(sport=1000 + i, dport=80)) for i in range(256)])
        cmd = [ternd, "-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", prefix,
               "--vdev", f"net_pcap0,rx_pcap={inp},tx_pcap=/dev/null{',infinite_rx=1' if load else ''}",
               "--log-level", "lib.eal:error",
               "--", "--config", config, "--idle-sleep-us", "50"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(proc, "started:", 300)
            before = None
            started = time.monotonic()
            for n in range(1, reloads + 1):
                with open(config, "w") as f:
                    f.write(config_text(vips, backends, table_size, n))
                proc.send_signal(signal.SIGHUP)
                line = wait_for(proc, "reload ", 300)
                if "reload ok" not in line:
                    raise AssertionError(f"reload {n} failed: {line}")
                if n == min(3, reloads):
                    before = rss_kib(proc.pid)
                if report_every and n % report_every == 0:
                    print(f"  after reload {n}: RSS {rss_kib(proc.pid) / 1024:.1f} MiB", flush=True)
            after = rss_kib(proc.pid)
            took = time.monotonic() - started
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        stats = json.loads(out.strip().splitlines()[-1])
        verdicts = stats["forwarded"] + stats["host"] + stats["replied"] + sum(stats["dropped"].values())
        problems = []
        if proc.returncode != 0:
            problems.append(f"ternd exited {proc.returncode}: {err[-500:]}")
        if stats["rx"] != verdicts or stats["mbufs_in_use"] != 0:
            problems.append(f"rx {stats['rx']} vs verdicts {verdicts}, mbufs in use {stats['mbufs_in_use']}")
        if stats["reloads"] != {"ok": reloads, "failed": 0}:
            problems.append(f"reload counters {stats['reloads']}")
        growth = (after - before) / 1024
        if growth > max_growth_mib:
            problems.append(f"RSS grew {growth:.1f} MiB")
        print(f"{'ok' if not problems else 'FAIL'}: reload soak{' under load' if load else ''}: {reloads} reloads of {vips} VIPs x {backends} backends "
              f"(table {table_size}) in {took:.0f} s, {stats['rx']} packets; RSS {before / 1024:.1f} MiB after reload "
              f"{min(3, reloads)}, {after / 1024:.1f} MiB after reload {reloads} ({growth:+.1f} MiB)", flush=True)
        for p in problems:
            print("FAIL", p, flush=True)
        return not problems
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
        remove_flow_state(prefix)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ternd")
    ap.add_argument("--vips", type=int, default=100)
    ap.add_argument("--backends", type=int, default=100)
    ap.add_argument("--table-size", type=int, default=1009)
    ap.add_argument("--reloads", type=int, default=40)
    ap.add_argument("--max-growth-mib", type=float, default=8)
    ap.add_argument("--no-load", action="store_true", help="replay the capture once instead of in a loop (idle worker)")
    ap.add_argument("--report-every", type=int, default=0, help="print RSS every N reloads")
    a = ap.parse_args()
    sys.exit(0 if soak(a.ternd, a.vips, a.backends, a.table_size, a.reloads, a.max_growth_mib, load=not a.no_load,
                       report_every=a.report_every) else 1)


if __name__ == "__main__":
    main()
