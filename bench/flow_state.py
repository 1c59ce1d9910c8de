#!/usr/bin/python3
"""Flow tables kept across restarts ([dataplane] flow_state), measured:
1. ternd's rate with its flow table in anonymous memory (transparent huge pages), in a file on
   /dev/shm (tmpfs without huge pages, as /run) and, given --huge-tmpfs DIR (a tmpfs mounted with
   huge=within_size, as run-tern-flows.mount makes it), in a file there; rounds alternate, medians
   printed (ternd_rate's 100,000-flow capture, 1 worker, net_pcap infinite_rx -> net_null);
2. a restart with a 1M-entry table: the re-attach time ternd logs, and SIGTERM to `started:`.

  bench/flow_state.py PATH/TO/ternd [--huge-tmpfs DIR] [--rounds N]   (figures for RESULTS.md)
"""
import argparse
import statistics
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "Tests", "outside"))
import make_pcap  # noqa: E402
import ternd_rate  # noqa: E402
import test_ternd  # noqa: E402

STATE = "/dev/shm/tern-bench-flow-state"  # tmpfs


def rates(ternd, tmp, places, rounds):
    """Mpps per place (label -> file, "" for anonymous memory), `rounds` runs each, alternating."""
    ternd_rate.TERND = ternd
    template = bytes(make_pcap.eth() / make_pcap.IP(src="198.51.100.1", dst="192.0.2.1") /
                     make_pcap.TCP(sport=1024, dport=80, flags="A"))
    template += b"\0" * (60 - len(template))
    frames = []
    for i in range(100_000):
        f = bytearray(template)
        f[28:30] = (100 + i // 60_000).to_bytes(2, "big")
        f[34:36] = (1024 + i % 60_000).to_bytes(2, "big")
        frames.append(bytes(f))
    feed = os.path.join(tmp, "feed-100k.pcap")
    make_pcap.write_frames(feed, frames)
    results = {label: [] for label, _ in places}
    for _ in range(rounds):
        for label, state in places:
            cfg = os.path.join(tmp, "rate.toml")
            ternd_rate.config(cfg)
            with open(cfg) as f:
                text = f.read()
            with open(cfg, "w") as f:
                f.write(text.replace("flow_table_entries = 1048576\n", f'flow_table_entries = 1048576\nflow_state = "{state}"\n'))
            results[label].append(ternd_rate.rate(ternd_rate.ternd_rx, feed, cfg))
            if state and os.path.exists(state):
                os.remove(state)
    for label, figures in results.items():
        print(f"ternd, 100,000 flows, flow table {label}: median {statistics.median(figures):.2f} Mpps "
              f"(runs {', '.join(f'{x:.2f}' for x in figures)})", flush=True)


def restart(ternd, tmp):
    cfg = os.path.join(tmp, "restart.toml")
    with open(cfg, "w") as f:
        f.write('[node]\nname = "m"\ntunnel_source_v4 = "10.0.0.10"\n[dataplane]\nflow_table_entries = 1048576\n'
                f'flow_state = "{STATE}"\n[[port]]\ndevice = "net_null0"\ngateway_mac = "02:00:00:00:00:fe"\n'
                '[[vip]]\naddress = "192.0.2.1"\nport = 80\nprotocol = "tcp"\n[[vip.backend]]\naddress = "10.1.0.1"\n')

    def start():
        cmd = test_ternd.ternd_cmd(ternd, "net_null0", cfg)
        cmd[cmd.index("-m") + 1] = "1024"
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stderr:
            lines.append(line.strip())
            if "started:" in line:
                break
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        return proc, cmd, [line for line in lines if "flow state" in line]

    def stop(proc, cmd):
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        test_ternd.remove_runtime_dirs(cmd)
    proc, cmd, first = start()
    time.sleep(1)
    t0 = time.monotonic()
    stop(proc, cmd)
    t1 = time.monotonic()
    proc, cmd, second = start()
    t2 = time.monotonic()
    stop(proc, cmd)
    os.remove(STATE)
    print("\n".join(first + second))
    print(f"restart: SIGTERM to exit {t1 - t0:.2f} s, exec to started: {t2 - t1:.2f} s, SIGTERM to started: {t2 - t0:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("ternd")
    parser.add_argument("--huge-tmpfs")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="tern-bench-")
    places = [("in anonymous memory", ""), ("in a file on /dev/shm (4 KiB pages)", STATE)]
    if args.huge_tmpfs:
        places.append((f"in a file on {args.huge_tmpfs} (huge=within_size)", os.path.join(args.huge_tmpfs, "tern-bench-flows")))
    rates(args.ternd, tmp, places, args.rounds)
    restart(args.ternd, tmp)
