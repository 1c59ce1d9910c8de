#!/usr/bin/python3
"""Prometheus metrics and DPDK telemetry of a running ternd, judged by those projects' own tools:

1. ternd forwards a looping capture (net_pcap infinite_rx) with `[metrics] listen` on loopback;
   GET /metrics is checked by `promtool check metrics` (Debian's prometheus package) and must
   carry the contract's names (`tern_` prefix, `_total` counters, labels vip, backend, reason,
   port, worker, tern_config_last_reload_successful, ..._success_timestamp_seconds,
   tern_build_info);
2. a real Prometheus server scrapes it every second and answers PromQL queries: forwarded packets
   per VIP, a rate that is above zero, and the last reload's outcome after a broken reload.
3. the HTTP side: another path is 404;
4. Debian's dpdk-telemetry.py asks ternd's /tern/stats and /tern/vips commands;
5. Debian's dpdk-dumpcap captures a running ternd's port into pcapng (ternd on hugepages with
   shared config, as dumpcap is a secondary process) and tshark reads the packets.

Usage: test_metrics.py PATH/TO/ternd PATH/TO/ternctl
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import make_pcap  # noqa: E402
from reload_soak import remove_flow_state, wait_for  # noqa: E402

FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL", message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def query(prom, expr):
    status, body = get(f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    data = json.loads(body) if status == 200 else {}
    return data.get("data", {}).get("result", [])


def stop(proc, prefix):
    """SIGTERM, wait, and remove what a killed ternd could leave in /var/run/dpdk."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    remove_flow_state(prefix)


def ensure_hugepages(pages=256):
    """dpdk-dumpcap needs a primary on hugepages: reserve some and mount hugetlbfs if needed."""
    with open("/proc/sys/vm/nr_hugepages") as f:
        if int(f.read()) < pages:
            with open("/proc/sys/vm/nr_hugepages", "w") as w:
                w.write(str(pages))
    with open("/proc/mounts") as f:
        if " hugetlbfs " not in f.read():
            os.makedirs("/dev/hugepages", exist_ok=True)
            subprocess.run(["mount", "-t", "hugetlbfs", "nodev", "/dev/hugepages"], check=True)


def test_capture(ternd, tmp):
    ensure_hugepages()
    config = os.path.join(tmp, "capture.toml")
    with open(os.path.join(ROOT, "configs/example.toml")) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace("[node]", f'[control]\nsocket = "{tmp}/capture.sock"\n\n[node]', 1))
    # A short path: dpdk-dumpcap (DPDK 22.11) fails to probe, or crashes on, a net_pcap vdev whose
    # --vdev argument is longer than about 72 characters (measured: 71 works, 75 crashes).
    inp = f"/tmp/tcap{os.getpid() % 100000}.pcap"
    make_pcap.write_frames(inp, [bytes(f) for f in make_pcap.demo_frames()])
    prefix = f"tern-capture-{os.getpid()}"
    cmd = [ternd, "-l", "0-1", "-m", "256", "--no-pci", "--file-prefix", prefix,
           "--vdev", f"net_pcap0,rx_pcap={inp},tx_pcap=/dev/null,infinite_rx=1", "--log-level", "lib.eal:error",
           "--", "--config", config, "--idle-sleep-us", "50"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = os.path.join(tmp, "capture.pcapng")
    try:
        wait_for(proc, "started:", 60)
        # Well after start: DPDK 22.11's pcapng stamped every capture of a process that ran more
        # than a moment centuries ahead until ternd set its time base at start (tern_pcapng_prime).
        time.sleep(3)
        started = time.time()
        p = subprocess.run(["dpdk-dumpcap", "--file-prefix", prefix, "-i", "net_pcap0", "-c", "50", "-w", out],
                           capture_output=True, text=True, timeout=60)
        t = subprocess.run(["tshark", "-r", out, "-T", "fields", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "frame.time_epoch"],
                           capture_output=True, text=True)
        frames = [line for line in t.stdout.splitlines() if line.strip()]
        stamps = [float(line.split("\t")[-1]) for line in frames]
        check(stamps and started - 1 <= min(stamps) <= max(stamps) <= time.time() + 1,
              f"dpdk-dumpcap: timestamps {stamps[:2]} not within the capture ({started:.3f}-{time.time():.3f})")
        check(p.returncode == 0 and len(frames) >= 50, f"dpdk-dumpcap: exit {p.returncode}, {len(frames)} frames: {p.stderr[-1200:]}")
        check(any("192.0.2.10" in f for f in frames), f"dpdk-dumpcap: no packet to the VIP among {frames[:5]}")
        print(f"ok: dpdk-dumpcap captured {len(frames)} packets of a running ternd's port into pcapng, stamped with the "
              "time they were captured; tshark reads them", flush=True)
    finally:
        stop(proc, prefix)
        os.unlink(inp)
    check(proc.returncode == 0, f"capture: ternd exited {proc.returncode}")


def test_ternctl_capture(ternctl, sock, tmp):
    """ternctl capture on a running --no-huge ternd: the filter selects on the frame as received, the
    file holds each frame as ternd sent it (IP in IP toward the backend, the client's packet
    inside) with wall-clock timestamps; bad filters, existing files and a second capture are refused."""
    out = os.path.join(tmp, "ternctl-capture.pcap")
    started = time.time()
    p = subprocess.run([ternctl, "capture", "--socket", sock, "-w", out, "-c", "40", "--filter", "tcp dst port 80"],
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0 and p.stdout.startswith(f"captured 40 frames to {out}") and "(the count reached)" in p.stdout,
          f"ternctl capture: exit {p.returncode}: {p.stdout} {p.stderr}")
    t = subprocess.run(["tshark", "-r", out, "-T", "fields", "-E", "separator=;", "-e", "frame.time_epoch", "-e", "ip.proto",
                        "-e", "ip.dst", "-e", "tcp.dstport"], capture_output=True, text=True)
    rows = [line.split(";") for line in t.stdout.splitlines() if line.strip()]
    # Every frame selected was to the VIP's port 80 as received; as written, it is encapsulated
    # toward a backend (outer IP protocol 4, then the inner TCP to 192.0.2.10:80), answered (ICMP
    # quoting it) or as received (dropped): the VIP is the innermost destination in each. Which mix
    # of the demo's frames a capture catches depends on where the endless replay stands.
    good = [r for r in rows if r[1].startswith("4,6") and r[2].endswith(",192.0.2.10") and r[3] == "80"]
    strays = [r for r in rows if "192.0.2.10" not in r[2]]
    stamps = [float(r[0]) for r in rows]
    check(len(rows) == 40 and len(good) >= 1 and not strays,
          f"ternctl capture: tshark read {len(rows)} frames, {len(good)} IPIP to 192.0.2.10:80, not to the VIP: {strays[:3]}")
    check(stamps and started - 1 <= min(stamps) <= max(stamps) <= time.time() + 1 and stamps == sorted(stamps),
          f"ternctl capture: timestamps {stamps[:3]}..{stamps[-3:]} not within the capture's time ({started})")
    bad = subprocess.run([ternctl, "capture", "--socket", sock, "-w", os.path.join(tmp, "bad.pcap"), "--filter", "tcp prot 80"],
                         capture_output=True, text=True, timeout=30)
    again = subprocess.run([ternctl, "capture", "--socket", sock, "-w", out], capture_output=True, text=True, timeout=30)
    idle = subprocess.run([ternctl, "capture", "--socket", sock, "--stop"], capture_output=True, text=True, timeout=30)
    check(idle.returncode == 1 and "no capture is running" in idle.stderr, f"capture --stop with none: {idle.returncode} {idle.stderr}")
    check(bad.returncode == 1 and "filter \"tcp prot 80\":" in bad.stderr and not os.path.exists(os.path.join(tmp, "bad.pcap")),
          f"bad filter: exit {bad.returncode}: {bad.stderr}")
    check(again.returncode == 1 and "it exists" in again.stderr, f"existing file: exit {again.returncode}: {again.stderr}")
    if p.returncode == 0 and good and not strays:
        print(f"ok: ternctl capture: 40 frames selected by \"tcp dst port 80\" as received, written as sent ({len(good)} "
              f"IP in IP to the backend), timestamps within the capture's {time.time() - started:.1f} s; a bad filter and an existing "
              "file refused", flush=True)


def main(ternd, ternctl):
    tmp = tempfile.mkdtemp(prefix="tern-metrics-")
    port, prom = free_port(), free_port()
    sock = os.path.join(tmp, "ternd.sock")
    with open(os.path.join(ROOT, "configs/example.toml")) as f:
        text = f.read()
    good = text.replace("[node]", f'[metrics]\nlisten = "127.0.0.1:{port}"\n\n[control]\nsocket = "{sock}"\n\n[node]', 1)
    config = os.path.join(tmp, "metrics.toml")
    with open(config, "w") as f:
        f.write(good)
    inp = os.path.join(tmp, "in.pcap")
    make_pcap.write_frames(inp, [bytes(f) for f in make_pcap.demo_frames()])
    prefix = f"tern-metrics-{os.getpid()}"
    cmd = [ternd, "-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix", prefix,
           "--vdev", f"net_pcap0,rx_pcap={inp},tx_pcap=/dev/null,infinite_rx=1", "--log-level", "lib.eal:error",
           "--", "--config", config, "--idle-sleep-us", "50"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        wait_for(proc, "metrics: GET", 30)
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        check(status == 200, f"GET /metrics: {status}")
        p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
        check(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
              f"promtool check metrics: exit {p.returncode}: {p.stdout[-500:]} {p.stderr[-500:]}")
        for name in ["tern_build_info{", "tern_rx_packets_total{worker=", "tern_dropped_packets_total{reason=",
                     'tern_vip_forwarded_packets_total{address="192.0.2.10",port="80",protocol="tcp"}',
                     'tern_backend_forwarded_packets_total{address="192.0.2.10",port="80",protocol="tcp",backend=',
                     "tern_vip_new_flows_total{address=", "tern_backend_new_flows_total{address=",
                     "tern_vip_bytes_total{address=", "tern_backend_bytes_total{address=", "tern_vip_announced{address=",
                     'tern_flow_table_entries{worker="0"}', "tern_flow_table_capacity ",
                     "tern_port_rx_packets_total{port=", "tern_config_last_reload_successful ",
                     "tern_config_last_reload_success_timestamp_seconds "]:
            check(name in body or name.replace("{reason=", "{worker=") in body, f"/metrics lacks {name}")
        # The alert rules shipped in configs/prometheus: valid, and they fire on series of this shape.
        here = os.path.dirname(os.path.abspath(__file__))
        for args in (["check", "rules", os.path.join(here, "../../configs/prometheus/tern-alerts.yml")],
                     ["test", "rules", os.path.join(here, "tern-alerts.test.yml")]):
            p = subprocess.run(["promtool"] + args, capture_output=True, text=True)
            check(p.returncode == 0, f"promtool {' '.join(args[:2])}: exit {p.returncode}: {p.stdout[-500:]} {p.stderr[-500:]}")
        # Every family served is in the generated reference (docs/metrics-reference.md).
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../docs/metrics-reference.md")) as f:
            reference = f.read()
        served = {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE ")}
        missing = sorted(n for n in served if f"| `{n}` |" not in reference)
        check(not missing, f"families served but not in docs/metrics-reference.md: {missing}")
        # The flow-table gauge counts the demo's flows once a survey pass ends (idle polls run it).
        entries = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and entries == 0:
            _, text = get(f"http://127.0.0.1:{port}/metrics")
            entries = sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("tern_flow_table_entries{"))
            time.sleep(0.2)
        check(entries > 0, "tern_flow_table_entries stayed 0 while flows were forwarded")
        status, _ = get(f"http://127.0.0.1:{port}/other")
        check(status == 404, f"GET /other: {status}")
        # HEAD: GET's headers, no body (read raw: http.client would not read a body after HEAD).
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = b""
            while chunk := c.recv(65536):
                raw += chunk
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), b"0"))
        check(head.startswith(b"HTTP/1.1 200") and length > 1000 and rest == b"",
              f"HEAD /metrics: {head[:80]!r}, Content-Length {length}, {len(rest)} bytes after the headers")
        # A second ternd whose metrics port is taken stops at start and says which key.
        second = os.path.join(tmp, "second.toml")
        with open(second, "w") as f:
            f.write(good.replace(sock, os.path.join(tmp, "second.sock")).replace('device = "net_pcap0"', 'device = "net_null0"'))
        p = subprocess.run([ternd, "-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix", prefix + "-2",
                            "--vdev", "net_null0", "--log-level", "lib.eal:error", "--", "--config", second],
                           capture_output=True, text=True, timeout=60)
        shutil.rmtree(f"/var/run/dpdk/{prefix}-2", ignore_errors=True)
        remove_flow_state(prefix + "-2")
        check(p.returncode == 78 and f"metrics.listen: cannot listen on 127.0.0.1:{port}" in p.stderr,
              f"second ternd on a taken metrics port: exit {p.returncode}, {p.stderr[-300:]}")

        # DPDK's own telemetry client.
        def telemetry(command):
            p = subprocess.run(["dpdk-telemetry.py", "-f", prefix], input=command + "\n", capture_output=True, text=True, timeout=30)
            lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
            return json.loads(lines[-1]).get(command, {}) if lines else {}
        stats, vips = telemetry("/tern/stats"), telemetry("/tern/vips")
        verdicts = stats.get("forwarded", 0) + stats.get("host", 0) + sum(v for k, v in stats.items()
                                                                         if k.startswith(("replied_", "dropped_")))
        check(stats.get("rx", 0) > 0 and stats["rx"] == verdicts and stats.get("generation") == 1,
              f"dpdk-telemetry.py /tern/stats: {stats}")
        check(vips.get("192_0_2_10_80/tcp", 0) > 0, f"dpdk-telemetry.py /tern/vips: {vips}")
        print(f"ok: dpdk-telemetry.py: /tern/stats rx {stats.get('rx')} = the sum of verdicts, /tern/vips {vips}", flush=True)

        # A real Prometheus server scrapes ternd every second.
        data = os.path.join(tmp, "prom-data")
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ternd\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
        server = subprocess.Popen(["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={data}",
                                   f"--web.listen-address=127.0.0.1:{prom}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        forwarded = rate = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (forwarded and rate):
            time.sleep(1)
            forwarded = query(prom, 'tern_vip_forwarded_packets_total{address="192.0.2.10",port="80",protocol="tcp"}')
            rate = query(prom, "sum(rate(tern_forwarded_packets_total[5s])) > 0")
        check(bool(forwarded) and float(forwarded[0]["value"][1]) > 0, f"Prometheus: forwarded per VIP {forwarded}")
        check(bool(rate), f"Prometheus: rate of forwarded packets {rate}")
        test_ternctl_capture(ternctl, sock, tmp)
        # A broken reload shows in tern_config_last_reload_successful.
        with open(config, "w") as f:
            f.write(good.replace("weight = 50", "weight = 70000"))
        p = subprocess.run([ternctl, "reload", "--socket", sock], capture_output=True, text=True)
        check(p.returncode == 78, f"broken reload: exit {p.returncode}")
        failed = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not failed:
            time.sleep(1)
            failed = query(prom, "tern_config_last_reload_successful == 0")
        check(bool(failed), "Prometheus did not see the failed reload")
        if not FAILURES:
            print(f"ok: promtool accepts ternd's /metrics; Prometheus scraped it: {forwarded[0]['value'][1]} packets forwarded "
                  f"for 192.0.2.10:80/tcp, rate above 0, the failed reload seen (tern_config_last_reload_successful 0)", flush=True)
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
        stop(proc, prefix)
        shutil.rmtree(tmp, ignore_errors=True)
    check(proc.returncode == 0, f"ternd exited {proc.returncode}")
    tmp = tempfile.mkdtemp(prefix="tern-capture-")
    try:
        test_capture(ternd, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
