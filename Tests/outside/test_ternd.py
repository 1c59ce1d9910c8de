#!/usr/bin/python3
"""ternd over net_pcap virtual devices, judged from outside:

1. one worker: ternd emits exactly the bytes, in the same order, that `ternctl simulate` emits for
   the same input and config (the outside cases and the demo traffic);
2. two workers (one rx_pcap and one tx_pcap per queue): the same multiset of frames; separate
   client and backend ports (backend_device): encapsulated frames leave on the backend port with
   its MACs, replies on the client port, each in simulate's order;
3. reload under load: ternd replays a pcap in a loop (infinite_rx=1) into a FIFO read here; several
   SIGHUPs alternate between configs whose backends differ, one SIGHUP meets a broken config, one
   a table header that used to abort the parser ([é]), then SIGTERM. RX equals the sum of verdicts, no mbuf is left in use, the failed reload is reported and
   changes nothing, and the output switches backend set exactly once per successful reload, never
   mixing afterwards;
4. start-up errors: a bad config exits 78 naming the key; a device the config names but EAL lacks
   exits 78 naming port[0].device; an unknown option or a missing --config exits 64 with the usage.

Usage: test_ternd.py PATH/TO/ternd PATH/TO/ternctl
"""
import json
import os
import re
import shutil
import signal
import socket as socketlib
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_pcap  # noqa: E402
from reload_soak import remove_flow_state, wait_for as wait_for_line  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FAILURES = []
RUN = 0


# ternd's stderr lines: `2026-12-06T06:20:01.042Z ternd: ...` (no time stamp under journald).
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z )?ternd: ")


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL", message, flush=True)


def eal(prefix, vdev, lcores="0-1"):
    return ["--lcores" if "@" in lcores else "-l", lcores, "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix", prefix, "--vdev", vdev,
            "--log-level", "lib.eal:error"]


def ternd_cmd(ternd, vdev, config, extra=(), lcores="0-1"):
    global RUN
    RUN += 1
    return [ternd, *eal(f"tern-test-{os.getpid()}-{RUN}", vdev, lcores), "--", "--config", config, "--idle-sleep-us", "50",
            *extra]


def read_pcap(path):
    frames = []
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), hex(magic)
    o = 24
    while o < len(data):
        _, _, caplen, _ = struct.unpack("<IIII", data[o:o + 16])
        frames.append(data[o + 16:o + 16 + caplen])
        o += 16 + caplen
    return frames


def remove_runtime_dirs(cmd):
    """EAL leaves /var/run/dpdk/<file-prefix> behind even with --no-shconf."""
    prefix = cmd[cmd.index("--file-prefix") + 1]
    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    remove_flow_state(prefix)


def run_ternd(cmd, timeout=60):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        remove_runtime_dirs(cmd)
    return p.returncode, p.stdout, p.stderr


def simulate(ternctl, config, inp, out):
    subprocess.run([ternctl, "simulate", "--config", config, "--in", inp, "--out", out, "--port", "0"], check=True,
                   capture_output=True)
    return read_pcap(out)


def test_same_bytes_as_simulate(ternd, ternctl, tmp):
    for name, config, frames in [
        ("outside cases", os.path.join(HERE, "outside.toml"), [make_pcap.frame_bytes(c) for c in make_pcap.outside_cases()]),
        ("demo traffic", os.path.join(ROOT, "configs/example.toml"), [bytes(f) for f in make_pcap.demo_frames()]),
        # Full-size packets without DF that the tunnel makes too big: outer IPv4 fragments (IPIP
        # and GUE), the second fragment's mbuf taken from the pool.
        ("outer fragments", os.path.join(HERE, "outside.toml"),
         [bytes(make_pcap.eth() / make_pcap.IP(src=f"198.51.100.{i + 1}", dst="192.0.2.10") /
                (make_pcap.TCP(sport=4000 + i, dport=80, flags="A") / (bytes([i]) * (1460 - 3 * i)) if i % 2 else
                 make_pcap.UDP(sport=4000 + i, dport=5353) / (bytes([i]) * (1472 - 3 * i)))) for i in range(6)]),
    ]:
        inp, sim_out, ternd_out = (os.path.join(tmp, f) for f in ("in.pcap", "sim.pcap", "ternd.pcap"))
        make_pcap.write_frames(inp, frames)
        expected = simulate(ternctl, config, inp, sim_out)
        cmd = ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap={ternd_out}", config, ["--stop-when-idle", "1"])
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        rc, out, err = p.returncode, p.stdout, p.stderr
        prefix = cmd[cmd.index("--file-prefix") + 1]
        check(not os.path.exists(f"/var/run/dpdk/{prefix}"), f"{name}: ternd left /var/run/dpdk/{prefix} behind")
        remove_runtime_dirs(cmd)
        check(rc == 0, f"{name}: ternd exited {rc}: {err[-500:]}")
        if rc != 0:
            continue
        stats = json.loads(out.strip().splitlines()[-1])
        got = read_pcap(ternd_out)
        check(got == expected, f"{name}: ternd emitted {len(got)} frames, simulate {len(expected)}; identical: {got == expected}")
        check(stats["rx"] == len(frames) and stats["tx"] == len(expected), f"{name}: rx/tx {stats['rx']}/{stats['tx']}")
        check(stats["mbufs_in_use"] == 0, f"{name}: mbufs in use {stats['mbufs_in_use']}")
        print(f"ok: {name}: ternd (1 worker) emitted the same {len(got)} frames as ternctl simulate, in order", flush=True)


def test_held_fragments(ternd, ternctl, tmp):
    """Fragments ahead of their first through ternd's worker loop (mbufs held, run again after
    the first's burst, given back at stop): IPv4 TCP and IPv6 UDP reversed, an echo request whose
    middle comes first, an IPv4 datagram whose first is lost, between plain packets. ternd emits
    the same frames as simulate (its held fragments leave after the first's burst, simulate's right
    after the first: compared as multisets), counts the same holds and timeouts, and frees every mbuf."""
    from scapy.all import ICMP, IPv6ExtHdrFragment, Raw, TCP, UDP, IPv6, fragment, fragment6
    e = make_pcap.eth()
    v4 = [e / f for f in fragment(make_pcap.IP(src="198.51.100.61", dst="192.0.2.10", id=61) / TCP(sport=6100, dport=80, flags="A")
                                  / Raw(b"a" * 3000), fragsize=1200)]
    v6 = [e / f for f in fragment6(IPv6(src="2001:db8:ff::62", dst="2001:db8::10") / IPv6ExtHdrFragment(id=62) / UDP(sport=6200, dport=5353)
                                   / Raw(b"b" * 3000), 1280)]
    echo = [e / f for f in fragment(make_pcap.IP(src="198.51.100.63", dst="192.0.2.10", id=63) / ICMP(id=63) / Raw(b"c" * 3000),
                                    fragsize=1200)]
    lost = [e / f for f in fragment(make_pcap.IP(src="198.51.100.64", dst="192.0.2.10", id=64) / UDP(sport=6400, dport=5353)
                                    / Raw(b"d" * 3000), fragsize=1200)]
    plain = [e / make_pcap.IP(src=f"198.51.100.{70 + i}", dst="192.0.2.10") / TCP(sport=7000 + i, dport=80, flags="A") for i in range(4)]
    stream = v4[::-1] + plain[:2] + v6[::-1] + [echo[1], echo[0], echo[2]] + plain[2:] + lost[1:]
    frames = [bytes(f) for f in stream]
    inp, sim_out, ternd_out = (os.path.join(tmp, f) for f in ("held-in.pcap", "held-sim.pcap", "held-ternd.pcap"))
    make_pcap.write_frames(inp, frames)
    config = os.path.join(HERE, "outside.toml")
    p = subprocess.run([ternctl, "simulate", "--config", config, "--in", inp, "--out", sim_out, "--json"], capture_output=True, text=True)
    want = json.loads(p.stdout) if p.returncode == 0 else {}
    expected = read_pcap(sim_out)
    cmd = ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap={ternd_out}", config, ["--stop-when-idle", "1"])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    remove_runtime_dirs(cmd)
    check(p.returncode == 0, f"held fragments: ternd exited {p.returncode}: {p.stderr[-500:]}")
    if p.returncode != 0:
        return
    stats = json.loads(p.stdout.strip().splitlines()[-1])
    got = read_pcap(ternd_out)
    held = len(v4) - 1 + len(v6) - 1 + 1 + len(lost) - 1
    ok = (sorted(got) == sorted(expected) and len(got) == len(frames) - (len(lost) - 1)
          and stats["fragments_held"] == want.get("fragments_held") == held
          and stats["dropped"]["fragment_timeout"] == want.get("dropped", {}).get("fragment_timeout") == len(lost) - 1
          and stats["rx"] == len(frames) and stats["mbufs_in_use"] == 0)
    check(ok, f"held fragments: ternd {len(got)} frames, simulate {len(expected)}, same multiset {sorted(got) == sorted(expected)}; "
              f"held {stats['fragments_held']}/{want.get('fragments_held')}, timed out {stats['dropped']['fragment_timeout']}, "
              f"rx {stats['rx']}, mbufs in use {stats['mbufs_in_use']}")
    if ok:
        print(f"ok: held fragments: ternd held {held} fragments ahead of their first (IPv4, IPv6, an echo request), sent them "
              f"after it ({len(got)} frames, the multiset simulate emits), gave {len(lost) - 1} whose first was lost back at stop "
              "(fragment_timeout); mbufs in use 0", flush=True)


def test_separate_ports(ternd, ternctl, tmp):
    """Client-facing port net_pcap0 with backend_device = net_pcap1: encapsulated frames leave on
    net_pcap1 with its MACs, echo replies on net_pcap0 with its own: what `ternctl simulate`
    computes from the same config (the one port plan both use), split by the port each frame
    leaves on."""
    frames = [bytes(f) for f in make_pcap.demo_frames()]
    example = os.path.join(ROOT, "configs/example.toml")
    with open(example) as f:
        text = f.read()
    one_port = '[[port]]\ndevice = "net_pcap0"\ngateway_mac = "02:00:00:00:00:fe"\nmac = "02:00:00:00:00:01"\n'
    assert one_port in text
    config = os.path.join(tmp, "two-ports.toml")
    with open(config, "w") as f:
        f.write(text.replace(one_port, one_port + 'backend_device = "net_pcap1"\n\n[[port]]\ndevice = "net_pcap1"\n'
                             'gateway_mac = "02:00:00:00:01:fe"\nmac = "02:00:00:00:01:01"\n'))
    inp, empty, front, back = (os.path.join(tmp, n) for n in ("in2.pcap", "empty.pcap", "front.pcap", "back.pcap"))
    make_pcap.write_frames(inp, frames)
    make_pcap.write_frames(empty, [])
    expected = simulate(ternctl, config, inp, os.path.join(tmp, "sim-ports.pcap"))
    cmd = ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap={front}", config, ["--stop-when-idle", "1"])
    cmd[cmd.index("--vdev") + 2:cmd.index("--vdev") + 2] = ["--vdev", f"net_pcap1,rx_pcap={empty},tx_pcap={back}"]
    rc, out, err = run_ternd(cmd)
    check(rc == 0, f"separate ports: ternd exited {rc}: {err[-500:]}")
    if rc != 0:
        return

    def is_reply(frame):  # ICMP or ICMPv6 straight after the Ethernet header: an echo reply
        return frame[12:14] == b"\x08\x00" and frame[23] == 1 or frame[12:14] == b"\x86\xdd" and frame[20] == 58

    back_mac = bytes.fromhex("0200000001fe" "020000000101")
    want_back = [f for f in expected if not is_reply(f)]
    want_front = [f for f in expected if is_reply(f)]
    check(all(f[:12] == back_mac for f in want_back), "separate ports: simulate gave encapsulated frames other MACs")
    got_back, got_front = read_pcap(back), read_pcap(front)
    check(got_back == want_back, f"separate ports: {len(got_back)} frames toward backends, expected {len(want_back)}; "
          f"identical: {got_back == want_back}")
    check(got_front == want_front, f"separate ports: {len(got_front)} replies on the client port, expected {len(want_front)}")
    stats = json.loads(out.strip().splitlines()[-1])
    check(stats["mbufs_in_use"] == 0 and stats["tx"] == len(expected), f"separate ports: stats {stats}")
    if got_back == want_back and got_front == want_front and want_front:
        print(f"ok: separate ports: {len(got_back)} encapsulated frames left on the backend port with its MACs, "
              f"{len(got_front)} echo replies on the client port, as simulate computed them", flush=True)


def test_two_workers_same_multiset(ternd, ternctl, tmp):
    frames = [bytes(f) for f in make_pcap.demo_frames()]
    config = os.path.join(tmp, "two.toml")
    with open(os.path.join(ROOT, "configs/example.toml")) as f:
        text = f.read().replace("workers = 1", "workers = 2")
    with open(config, "w") as f:
        f.write(text)
    inp, a, b = (os.path.join(tmp, n) for n in ("all.pcap", "a.pcap", "b.pcap"))
    make_pcap.write_frames(inp, frames)
    make_pcap.write_frames(a, frames[0::2])
    make_pcap.write_frames(b, frames[1::2])
    expected = simulate(ternctl, config, inp, os.path.join(tmp, "sim2.pcap"))
    oa, ob = os.path.join(tmp, "oa.pcap"), os.path.join(tmp, "ob.pcap")
    vdev = f"net_pcap0,rx_pcap={a},rx_pcap={b},tx_pcap={oa},tx_pcap={ob}"
    rc, out, err = run_ternd(ternd_cmd(ternd, vdev, config, ["--stop-when-idle", "1"], lcores="0@0,1@1,2@1"))
    check(rc == 0, f"two workers: ternd exited {rc}: {err[-500:]}")
    if rc == 0:
        got = read_pcap(oa) + read_pcap(ob)
        check(sorted(got) == sorted(expected), f"two workers: {len(got)} frames vs simulate {len(expected)}, same multiset: "
              f"{sorted(got) == sorted(expected)}")
        stats = json.loads(out.strip().splitlines()[-1])
        check(stats["workers"] == 2 and stats["mbufs_in_use"] == 0, f"two workers: stats {stats}")
        print(f"ok: two workers emitted the same multiset of {len(got)} frames as ternctl simulate", flush=True)


class FifoReader(threading.Thread):
    """Reads a pcap stream from a FIFO; keeps the run lengths of consecutive frames whose outer
    IPv4 destination falls in the same backend set."""

    def __init__(self, path, sets):
        super().__init__(daemon=True)
        self.path, self.sets = path, sets
        self.runs = []  # [set name, count]
        self.frames = 0
        self.unknown = 0

    def run(self):
        with open(self.path, "rb") as f:
            f.read(24)
            while True:
                header = f.read(16)
                if len(header) < 16:
                    return
                caplen = struct.unpack("<IIII", header)[2]
                frame = f.read(caplen)
                self.frames += 1
                dst = ".".join(str(b) for b in frame[30:34])
                name = next((n for n, s in self.sets.items() if dst in s), None)
                if name is None:
                    self.unknown += 1
                elif self.runs and self.runs[-1][0] == name:
                    self.runs[-1][1] += 1
                else:
                    self.runs.append([name, 1])


class StderrLog(threading.Thread):
    """Reads a process's stderr as it comes, so a test can wait for a line (a reload's outcome)
    instead of sleeping, and still read everything at the end."""

    OUTCOME = re.compile(r"reload (ok|failed|refused|abandoned)")

    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc, self.lines, self.lock = proc, [], threading.Lock()
        self.start()

    def run(self):
        for line in self.proc.stderr:
            with self.lock:
                self.lines.append(line)

    def text(self):
        with self.lock:
            return "".join(self.lines)

    def outcomes(self):
        with self.lock:
            return sum(1 for line in self.lines if self.OUTCOME.search(line))


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_reload_under_load(ternd, tmp):
    backends = {"A": {"10.1.0.1", "10.1.0.2"}, "B": {"10.2.0.1", "10.2.0.2", "10.2.0.3"}}

    def config_text(name):
        blocks = "".join(f'[[vip.backend]]\naddress = "{a}"\n' for a in sorted(backends[name]))
        return ('[node]\nname = "reload"\ntunnel_source_v4 = "10.0.0.10"\n[dataplane]\nflow_table_entries = 4096\n'
                '[[port]]\ndevice = "net_pcap0"\ngateway_mac = "02:00:00:00:00:fe"\nmac = "02:00:00:00:00:01"\n'
                '[maglev]\ntable_size = 1009\n[[vip]]\naddress = "192.0.2.10"\nport = 80\nprotocol = "tcp"\n' + blocks)

    config = os.path.join(tmp, "live.toml")
    with open(config, "w") as f:
        f.write(config_text("A"))
    inp = os.path.join(tmp, "loop.pcap")
    make_pcap.write_frames(inp, [bytes(make_pcap.eth() / make_pcap.IP(src=f"198.51.100.{i % 250 + 1}", dst="192.0.2.10") /
                                       make_pcap.TCP(sport=1000 + i, dport=80)) for i in range(500)])
    fifo = os.path.join(tmp, "out.fifo")
    os.mkfifo(fifo)
    reader = FifoReader(fifo, backends)
    reader.start()
    cmd = ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap={fifo},infinite_rx=1", config)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = StderrLog(proc)
    expected_runs = ["A"]
    try:
        # Each step waits for what it caused: frames of the running set, then one reload outcome
        # line per SIGHUP, then (when the set changed) frames of the new set.
        wait_until(lambda: reader.runs and reader.runs[-1][1] >= 1000, 30, "frames of backend set A")
        for step, name in enumerate(["B", "A", "broken", "aborted-tomlkit", "restart-only", "B", "A"]):
            if name == "broken":
                with open(config, "w") as f:
                    f.write(config_text("A").replace("port = 80", "port = 99999"))
            elif name == "aborted-tomlkit":  # this table header aborted the old TOML library (exit 134)
                with open(config, "w") as f:
                    f.write(config_text("A") + "[\u00e9]\n")
            elif name == "restart-only":
                with open(config, "w") as f:
                    f.write(config_text("B").replace("flow_table_entries = 4096", "flow_table_entries = 8192"))
            else:
                with open(config, "w") as f:
                    f.write(config_text(name))
                expected_runs.append(name)
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: log.outcomes() == step + 1, 30, f"the outcome of reload {step + 1} ({name})")
            if name in backends:
                wait_until(lambda: reader.runs[-1][0] == name and reader.runs[-1][1] >= 1000, 30, f"frames of backend set {name}")
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        proc.wait(timeout=30)
        log.join(timeout=30)
        err = log.text()
    finally:
        if proc.poll() is None:
            proc.kill()
        remove_runtime_dirs(cmd)
    reader.join(timeout=30)
    check(proc.returncode == 0, f"reload: ternd exited {proc.returncode}: {err[-800:]}")
    stats = json.loads(out.strip().splitlines()[-1])
    verdicts = stats["forwarded"] + stats["host"] + stats["replied"] + sum(stats["dropped"].values())
    check(stats["rx"] == verdicts, f"reload: rx {stats['rx']} != sum of verdicts {verdicts}")
    check(stats["forwarded"] == stats["rx"], f"reload: not everything forwarded: {stats}")
    check(stats["mbufs_in_use"] == 0, f"reload: mbufs in use {stats['mbufs_in_use']}")
    check(stats["reloads"] == {"ok": 4, "failed": 3}, f"reload: reload counters {stats['reloads']}")
    check("reload failed, keeping the running config" in err and "vip[0].port" in err, "reload: the broken config was not reported")
    check(any(LOG_LINE.match(line) and "live.toml:20:2: expected a key" in line for line in err.splitlines()),
          f"reload: the [\u00e9] header was not reported with its line: {err[-600:]}")
    check(all(LOG_LINE.match(line) for line in err.splitlines() if "live.toml" in line),
          "reload: a line of a multi-line error lost its 'ternd: ' prefix")
    check("restart-only keys changed: dataplane.flow_table_entries" in err, "reload: the restart-only change was not named")
    check(err.count("reload ok:") == 4, "reload: expected four 'reload ok' lines")
    check(reader.unknown == 0, f"reload: {reader.unknown} frames to unknown backends")
    check(reader.frames == stats["tx"], f"reload: read {reader.frames} frames, ternd says tx {stats['tx']}")
    check([r[0] for r in reader.runs] == expected_runs, f"reload: backend sets in output order {[r[0] for r in reader.runs]}, "
          f"expected {expected_runs}")
    print(f"ok: reload under load: {stats['rx']} packets, runs {reader.runs}, reloads {stats['reloads']}, mbufs in use 0", flush=True)


def test_startup_errors(ternd, tmp):
    bad = os.path.join(HERE, "bad-configs/port-range.toml")
    rc, _, err = run_ternd(ternd_cmd(ternd, "net_null0", bad))
    check(rc == 78 and "vip[0].port" in err, f"bad config: exit {rc}, stderr {err[-300:]}")
    rc, _, err = run_ternd(ternd_cmd(ternd, "net_null0", os.path.join(ROOT, "configs/example.toml")))
    check(rc == 78 and "port[0].device" in err and "net_pcap0" in err, f"missing device: exit {rc}, stderr {err[-300:]}")
    # DPDK's own lines go through ternd's logger: prefixed, with their level.
    rc, _, err = run_ternd(ternd_cmd(ternd, "net_bogus0", os.path.join(ROOT, "configs/example.toml")))
    check(rc == 1 and "ternd: error: EAL: failed to parse device \"net_bogus0\"" in err
          and all(LOG_LINE.match(line) for line in err.splitlines()), f"EAL's log: exit {rc}, stderr {err[-400:]}")
    p = subprocess.run([ternd, "--", "--config", bad, "--bogus"], capture_output=True, text=True)
    check(p.returncode == 64 and "unknown option --bogus" in p.stderr and "usage: ternd" in p.stdout,
          f"unknown option: exit {p.returncode}, stderr {p.stderr[-200:]}")
    p = subprocess.run([ternd, "--"], capture_output=True, text=True)
    check(p.returncode == 64 and "--config is required" in p.stderr, f"no --config: exit {p.returncode}")
    for args in (["--version"], ["--", "--version"], ["-l", "0", "--version"]):
        p = subprocess.run([ternd, *args], capture_output=True, text=True)
        check(p.returncode == 0 and p.stdout.startswith("ternd "), f"ternd {' '.join(args)}: exit {p.returncode} {p.stdout[:80]}")
    p = subprocess.run([ternd, "--help"], capture_output=True, text=True)
    check(p.returncode == 0 and "usage: ternd" in p.stdout, f"ternd --help: exit {p.returncode}")
    # Under systemd (JOURNAL_STREAM names stderr) every line carries its syslog priority.
    r, w = os.pipe()
    st = os.fstat(w)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    p = subprocess.Popen([ternd, "--", "--config", bad], stderr=w, stdout=subprocess.DEVNULL, env=env)
    os.close(w)
    with os.fdopen(r) as f:
        lines = f.read().splitlines()
    p.wait(timeout=30)
    check(p.returncode == 78 and lines and all(line.startswith("<3>ternd: error: ") for line in lines),
          f"journal priorities: exit {p.returncode}, {lines[:3]}")
    p = subprocess.run([ternd, "--", "--config", bad, "--log-level", "loud"], capture_output=True, text=True)
    check(p.returncode == 64 and "--log-level needs" in p.stderr, f"--log-level loud: exit {p.returncode}")
    print("ok: start-up errors exit 78 naming the key; usage errors exit 64; EAL's lines come through ternd's logger", flush=True)


def null_config(tmp, extra=""):
    path = os.path.join(tmp, "null.toml")
    with open(path, "w") as f:
        f.write('[node]\nname = "null"\ntunnel_source_v4 = "10.0.0.10"\n[dataplane]\nflow_table_entries = 4096\n'
                '[[port]]\ndevice = "net_null0"\ngateway_mac = "02:00:00:00:00:fe"\n' + extra +
                '[[vip]]\naddress = "192.0.2.10"\nport = 80\nprotocol = "tcp"\n[[vip.backend]]\naddress = "10.1.0.1"\n')
    return path


def test_startup_causes(ternd, tmp):
    """Start-up failures name their real cause: an unreadable capture, a prefix in use."""
    missing = os.path.join(tmp, "no-such.pcap")
    rc, _, err = run_ternd(ternd_cmd(ternd, f"net_pcap0,rx_pcap={missing},tx_pcap={tmp}/x.pcap",
                                     os.path.join(ROOT, "configs/example.toml")))
    check(rc == 1 and f"rx_pcap={missing}: No such file or directory" in err and "port[0].device" not in err,
          f"unreadable capture: exit {rc}, stderr {err[-300:]}")
    with open(os.path.join(tmp, "huge.toml"), "w") as f, open(null_config(tmp)) as g:
        # 3 x 18 GiB: within the 64 GiB cap of `check`, beyond what these 24 GiB machines have.
        f.write(g.read().replace("flow_table_entries = 4096", "workers = 3\nflow_table_entries = 268435456"))
    rc, _, err = run_ternd(ternd_cmd(ternd, "net_null0", os.path.join(tmp, "huge.toml")))
    check(rc == 78 and "dataplane.flow_table_entries" in err and "MemAvailable" in err,
          f"flow tables beyond the machine: exit {rc}, stderr {err[-300:]}")
    config = null_config(tmp)
    first = ternd_cmd(ternd, "net_null0", config)
    proc = subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc, "started:", 30)
        second = list(first)
        rc, _, err = run_ternd(second, timeout=30)
        check(rc == 1 and f"(pid {proc.pid})" in err and "--file-prefix" in err, f"second ternd on one prefix: exit {rc}, stderr {err[-300:]}")
        check(proc.poll() is None, "second ternd on one prefix: the first one stopped")
        proc.send_signal(signal.SIGPIPE)
        # Every signal whose default action would end ternd, but the faults and SIGKILL/SIGSTOP.
        ignored = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF,
                   signal.SIGIO, signal.SIGPWR, signal.SIGXCPU, signal.SIGXFSZ, signal.SIGSTKFLT, signal.SIGRTMIN,
                   signal.SIGRTMIN + 5, signal.SIGRTMAX]
        for sig in ignored:
            proc.send_signal(sig)
            wait_for_line(proc, f"signal {int(sig)} ignored", 30)
        time.sleep(0.2)
        check(proc.poll() is None, "a signal stopped ternd")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        remove_runtime_dirs(first)
    print("ok: start-up causes: an unreadable rx_pcap is named; flow tables beyond MemAvailable are refused naming the key; "
          "a second ternd on one --file-prefix names the first's pid; SIGPIPE and 14 signals that would end it (SIGUSR1, SIGQUIT, "
          "SIGALRM, SIGXCPU, SIGXFSZ, real-time ...) are ignored, logged", flush=True)


def test_sigterm_stops_a_long_reload(ternd, tmp):
    """A reload whose Maglev tables take seconds to build gives way to SIGTERM."""
    config = null_config(tmp)
    cmd = ternd_cmd(ternd, "net_null0", config)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc, "started:", 30)
        vips = "".join(f'[[vip]]\naddress = "192.0.2.{i + 20}"\nport = 80\nprotocol = "tcp"\n'
                       f'[[vip.backend]]\naddress = "10.1.0.{i + 1}"\n' for i in range(10))
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text + "[maglev]\ntable_size = 10000019\n" + vips)
        # SIGTERM once the build is under way: the tables (10 x 20 MB) grow ternd's memory.
        rss = lambda: int(next(l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmRSS:")).split()[1])  # noqa: E731
        before = rss()
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: rss() > before + 40_000, 60, "the reload's tables to grow ternd's memory")
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        remove_runtime_dirs(cmd)
    check(proc.returncode == 0 and "reload abandoned" in err, f"long reload: exit {proc.returncode}, stderr {err[-500:]}")
    stats = json.loads(out.strip().splitlines()[-1])
    check(stats["reloads"] == {"ok": 0, "failed": 1}, f"long reload: reload counters {stats['reloads']}")
    print(f"ok: SIGTERM during a reload build of 10 x 10000019 slots: the build stopped, ternd exited 0 {took:.1f} s after the signal",
          flush=True)


def ctl(ternctl, sock, *args, user=None):
    cmd = [ternctl, *args, "--socket", sock]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def table_fingerprint(ternctl, config, vip):
    """FNV-1a 64 over each backend (address order: IPv4 first, then by value) as address bytes and
    2-byte weight, then each slot's backend index as 2 bytes (README, Snapshot.fingerprint)."""
    import ipaddress
    slots = subprocess.run([ternctl, "table", "--config", config, "--vip", vip], capture_output=True, text=True,
                           check=True).stdout.split()
    summary = subprocess.run([ternctl, "table", "--config", config, "--vip", vip, "--summary"], capture_output=True,
                             text=True, check=True).stdout.splitlines()[1:]
    weights = {line.split()[0]: int(line.split("weight=")[1].split()[0]) for line in summary}
    order = sorted(weights, key=lambda a: (ipaddress.ip_address(a).version, int(ipaddress.ip_address(a))))
    h = 0xCBF29CE484222325

    def mix(data):
        nonlocal h
        for byte in data:
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    for a in order:
        mix(ipaddress.ip_address(a).packed + weights[a].to_bytes(2, "big"))
    for s in slots:
        mix((0xFFFF if s == "-" else order.index(s)).to_bytes(2, "big"))
    return f"{h:016x}"


def test_control_socket(ternd, ternctl, tmp):
    """ternctl against a running ternd: status, show, drain (matches `ternctl table`), reload ok and
    broken (78, the key path, traffic goes on), a silent client blocks nothing, the socket is
    root-only, a live socket refuses a second ternd and a stale one is replaced."""
    sockdir = f"/run/tern-test-{os.getpid()}"
    os.makedirs(sockdir, exist_ok=True)
    os.chmod(sockdir, 0o755)
    sock = os.path.join(sockdir, "ternd.sock")
    with open(os.path.join(ROOT, "configs/example.toml")) as f:
        text = f.read()
    config = os.path.join(tmp, "ctl.toml")
    with open(config, "w") as f:
        f.write(text.replace("[node]", f'[control]\nsocket = "{sock}"\n\n[node]', 1))
    inp = os.path.join(tmp, "ctl-in.pcap")
    make_pcap.write_frames(inp, [bytes(f) for f in make_pcap.demo_frames()])
    cmd = ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap=/dev/null,infinite_rx=1", config)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc, "started:", 30)
        mode = os.stat(sock).st_mode & 0o777
        check(mode == 0o600, f"control socket mode {oct(mode)}, expected 0o600")
        p = ctl(ternctl, sock, "status", user="nobody")
        check(p.returncode == 69 and "Permission denied" in p.stderr, f"nobody's status: exit {p.returncode}, {p.stderr[-200:]}")
        p = ctl(ternctl, sock, "status", "--json")
        status = json.loads(p.stdout) if p.returncode == 0 else {}
        check(status.get("ok") and status.get("generation") == 1 and status["ports"][0]["name"] == "net_pcap0"
              and status["ports"][0]["stats"]["ipackets"] > 0, f"status: {p.stdout[:300]} {p.stderr[-200:]}")
        # Live counters grow and add up (rx_polled lags rx by at most one burst per worker).
        first = json.loads(ctl(ternctl, sock, "stats", "--json").stdout)
        time.sleep(0.3)
        second = json.loads(ctl(ternctl, sock, "stats", "--json").stdout)
        verdicts = second["forwarded"] + second["host"] + second["replied"] + sum(second["dropped"].values())
        check(second["rx"] > first["rx"] > 0 and second["rx"] == verdicts and 0 <= second["rx"] - second["rx_polled"] <= 32
              and sum(second["per_vip"].values()) <= second["forwarded"] + 1,
              f"live stats: {first['rx']} then {second['rx']} (polled {second['rx_polled']}), verdicts {verdicts}")
        p = ctl(ternctl, sock, "stats", "--watch", "0.3", "--count", "1")
        check(p.returncode == 0 and "per second" in p.stdout and "vip 192.0.2.10:80/tcp" in p.stdout, f"stats --watch: {p.stdout[:300]}")
        # A client that connects and says nothing does not hold up a reload.
        silent = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        silent.connect(sock)
        p = ctl(ternctl, sock, "drain", "10.1.0.11", "--vip", "192.0.2.10:80/tcp")
        check(p.returncode == 0 and "drained 10.1.0.11 of 192.0.2.10:80/tcp" in p.stdout, f"drain: {p.returncode} {p.stdout} {p.stderr}")
        p = ctl(ternctl, sock, "reload")
        check(p.returncode == 0 and p.stdout.startswith("reload ok"), f"reload with a silent client connected: {p.returncode} {p.stderr}")
        silent.settimeout(10)
        check(b"no request within" in silent.recv(4096), "the silent client was not dropped with an error")
        silent.close()
        # The drain survived the reload; the running table matches `ternctl table` with weight 0.
        p = ctl(ternctl, sock, "show", "backends", "192.0.2.10:80/tcp", "--json")
        rows = {b["address"]: b for b in json.loads(p.stdout)["vips"][0]["backends"]} if p.returncode == 0 else {}
        drained = os.path.join(tmp, "drained.toml")
        with open(drained, "w") as f:
            f.write(re.sub(r'(address = "10\.1\.0\.11"\nweight = )\d+', r"\g<1>0", text, count=1))
        t = subprocess.run([ternctl, "table", "--config", drained, "--vip", "192.0.2.10:80/tcp", "--summary"],
                           capture_output=True, text=True)
        expected = {line.split()[0]: int(line.split("slots=")[1].split()[0]) for line in t.stdout.splitlines()[1:]}
        check(rows.get("10.1.0.11", {}).get("state") == "draining" and {a: r["slots"] for a, r in rows.items()} == expected,
              f"show backends {rows} vs ternctl table {expected}")
        p = ctl(ternctl, sock, "undrain", "10.1.0.11")
        check(p.returncode == 0, f"undrain: {p.stderr}")
        # The table fingerprint, recomputed here from `ternctl table` and the config as documented.
        vips = {v["vip"]: v for v in json.loads(ctl(ternctl, sock, "show", "vips", "--json").stdout)["vips"]}
        want = table_fingerprint(ternctl, os.path.join(ROOT, "configs/example.toml"), "192.0.2.10:80/tcp")
        check(vips["192.0.2.10:80/tcp"]["fingerprint"] == want, f"fingerprint {vips['192.0.2.10:80/tcp']['fingerprint']} != {want}")
        # Packets and new flows per VIP are its backends' sums, carried across the reloads above.
        web = vips["192.0.2.10:80/tcp"]
        rows = json.loads(ctl(ternctl, sock, "show", "backends", "192.0.2.10:80/tcp", "--json").stdout)["vips"][0]["backends"]
        check(web["packets"] > 0 and 0 < web["new_flows"] <= web["packets"]
              and sum(r["packets"] for r in rows) >= web["packets"] and sum(r["new_flows"] for r in rows) >= web["new_flows"],
              f"show vips {web} / show backends {rows}: packets and new flows")
        # Its backends are up and take new flows: ternd asks the feed to announce it.
        check(web["announced"] is True, f"show vips: {web}")
        # A broken config: 78 with the key path; the running config stays and traffic goes on.
        with open(config, "w") as f:
            f.write(text.replace("[node]", f'[control]\nsocket = "{sock}"\n\n[node]', 1).replace("weight = 50", "weight = 70000"))
        before = json.loads(ctl(ternctl, sock, "status", "--json").stdout)["ports"][0]["stats"]["ipackets"]
        p = ctl(ternctl, sock, "reload")
        check(p.returncode == 78 and "vip[0].backend[2].weight" in p.stderr, f"broken reload: exit {p.returncode}, {p.stderr[-300:]}")
        time.sleep(0.3)
        after = json.loads(ctl(ternctl, sock, "status", "--json").stdout)
        check(after["generation"] == 4 and after["ports"][0]["stats"]["ipackets"] > before and proc.poll() is None,
              f"after the broken reload: {after}")
        # A live socket refuses a second ternd (on another prefix).
        with open(config, "w") as f:
            f.write(text.replace("[node]", f'[control]\nsocket = "{sock}"\n\n[node]', 1))
        rc, _, err = run_ternd(ternd_cmd(ternd, "net_null0", config), timeout=30)
        check(rc == 1 and "another ternd answers on this control socket" in err, f"second ternd on the socket: {rc} {err[-300:]}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        remove_runtime_dirs(cmd)
        prefix = cmd[cmd.index("--file-prefix") + 1]
        if os.path.exists(f"/run/tern/ternd-{prefix}.lock"):  # a killed ternd leaves its (unlocked) lock file
            os.unlink(f"/run/tern/ternd-{prefix}.lock")
    # A stale socket (left by a killed ternd) is replaced.
    check(os.path.exists(sock), "the killed ternd's socket is gone (test setup)")
    with open(config, "w") as f:
        f.write(text.replace("[node]", f'[control]\nsocket = "{sock}"\n\n[node]', 1))
    cmd = ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap=/dev/null", config, ["--stop-when-idle", "1"])
    rc, _, err = run_ternd(cmd)
    check(rc == 0 and not os.path.exists(sock), f"stale socket: exit {rc}, socket left: {os.path.exists(sock)}, {err[-300:]}")
    shutil.rmtree(sockdir, ignore_errors=True)
    print("ok: control socket: status, live stats (growing, adding up, --watch rates), table fingerprint as documented, drain (show backends = ternctl table), reload ok and 78 with the key, silent client, "
          "0600 and nobody refused, a live socket refuses a second ternd, a stale one is replaced", flush=True)


def test_replay_and_jumbo(ternd, tmp):
    """A 100,000-packet capture replays in a loop (the pool grows to hold it); 8,000-byte frames
    through a port with mtu = 9000 leave encapsulated, whole, none dropped as malformed."""
    template = bytes(make_pcap.eth() / make_pcap.IP(src="198.51.100.1", dst="192.0.2.1") / make_pcap.TCP(sport=1024, dport=80, flags="A"))
    template += b"\0" * (60 - len(template))
    frames = []
    for i in range(100_000):  # 100,000 flows: source address and port vary (ternd checks no checksum)
        f = bytearray(template)
        f[28:30] = struct.pack(">H", 100 + i // 60_000)
        f[34:36] = struct.pack(">H", 1024 + i % 60_000)
        frames.append(bytes(f))
    replay = os.path.join(tmp, "replay-100k.pcap")
    make_pcap.write_frames(replay, frames)
    config = os.path.join(tmp, "replay.toml")
    with open(config, "w") as f:
        f.write('[node]\nname = "replay"\ntunnel_source_v4 = "10.0.0.10"\n[dataplane]\nflow_table_entries = 262144\n'
                '[[port]]\ndevice = "net_pcap0"\ngateway_mac = "02:00:00:00:00:fe"\nmac = "02:00:00:00:00:01"\n'
                '[[vip]]\naddress = "192.0.2.1"\nport = 80\nprotocol = "tcp"\n'
                + "".join(f'[[vip.backend]]\naddress = "10.1.0.{b}"\n' for b in range(1, 9)))
    cmd = ternd_cmd(ternd, f"net_pcap0,rx_pcap={replay},tx_pcap=/dev/null,infinite_rx=1", config)
    cmd[cmd.index("-m") + 1] = "1024"  # 100,000 mbufs of 2 KiB stay in the replay ring
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = wait_for_line(proc, "started:", 60)
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        remove_runtime_dirs(cmd)
    stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    check(proc.returncode == 0 and "pcap replay 100000" in started, f"replay: exit {proc.returncode}, {started!r} {err[-300:]}")
    check(stats.get("rx", 0) > 100_000 and stats.get("forwarded") == stats.get("rx") and stats.get("mbufs_in_use") == 0,
          f"replay: {dict((k, stats.get(k)) for k in ('rx', 'forwarded', 'mbufs_in_use'))}")

    # Jumbo: 8,000-byte TCP and UDP packets, mtu 9000.
    jumbo = [bytes(make_pcap.eth() / make_pcap.IP(src=f"198.51.100.{i + 1}", dst="192.0.2.1") /
                   (make_pcap.TCP(sport=2000 + i, dport=80, flags="A") if i % 2 else make_pcap.UDP(sport=2000 + i, dport=53)) /
                   (bytes([i]) * (8000 - 20 - (20 if i % 2 else 8)))) for i in range(40)]
    inp, out_pcap = os.path.join(tmp, "jumbo-in.pcap"), os.path.join(tmp, "jumbo-out.pcap")
    make_pcap.write_frames(inp, jumbo)
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace('mac = "02:00:00:00:00:01"\n', 'mac = "02:00:00:00:00:01"\nmtu = 9000\n')
                + '[[vip]]\naddress = "192.0.2.1"\nport = 53\nprotocol = "udp"\n[[vip.backend]]\naddress = "10.2.0.1"\n')
    rc, out, err = run_ternd(ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap={out_pcap}", config, ["--stop-when-idle", "1"]))
    stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    sent = read_pcap(out_pcap) if os.path.exists(out_pcap) else []
    check(rc == 0 and stats.get("forwarded") == 40 and stats.get("dropped", {}).get("malformed") == 0,
          f"jumbo: exit {rc}, forwarded {stats.get('forwarded')}, dropped {stats.get('dropped')} {err[-300:]}")
    check(sorted(len(f) for f in sent) == sorted(len(f) + 20 for f in jumbo)
          and all(f[34:] == j[14:] for f, j in zip(sorted(sent, key=lambda f: f[-1]), sorted(jumbo, key=lambda f: f[-1]))),
          f"jumbo: {len(sent)} frames out, lengths {sorted(len(f) for f in sent)[:4]}")
    # The same jumbo capture replayed in a loop at the default MTU: net_pcap cannot (its ring would
    # hold multi-segment mbufs); ternd says the driver's reason stands above, not that the pool is short.
    small_mtu = os.path.join(tmp, "replay-1500.toml")
    with open(small_mtu, "w") as f:
        f.write(text)
    rc, _, err = run_ternd(ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap=/dev/null,infinite_rx=1", small_mtu))
    check(rc == 78 and "infinite_rx mode" in err and "driver's reason is logged above" in err,
          f"jumbo replayed with infinite_rx: exit {rc}: {err[-400:]}")
    # A full 9,000-byte datagram without DF at mtu 9000: two outer fragments, the second in an mbuf
    # from the pool (its data room is sized for the largest fragment frame).
    full = bytes(make_pcap.eth() / make_pcap.IP(src="198.51.100.99", dst="192.0.2.1") / make_pcap.UDP(sport=2999, dport=53) /
                 (b"j" * (9000 - 28)))
    make_pcap.write_frames(inp, [full])
    rc, out, err = run_ternd(ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap={out_pcap}", config, ["--stop-when-idle", "1"]))
    stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    sent = read_pcap(out_pcap) if os.path.exists(out_pcap) else []
    check(rc == 0 and stats.get("forwarded_in_fragments") == 1 and stats.get("tx_failed") == 0 and len(sent) == 2
          and all(len(f) <= 14 + 9000 for f in sent) and sum(len(f) - 34 for f in sent) == len(full) - 14,
          f"jumbo outer fragments: exit {rc}, {stats.get('forwarded_in_fragments')} fragmented, tx_failed {stats.get('tx_failed')}, "
          f"frames {[len(f) for f in sent]}")
    # net_af_packet (on lo: nothing is sent) with its default 2,048-byte ring frames cannot take
    # mtu 9000: refused naming the key and the framesz it needs; with framesz=9216 it starts.
    af_config = os.path.join(tmp, "af-packet.toml")
    with open(af_config, "w") as f:
        f.write(text.replace('device = "net_pcap0"', 'device = "net_af_packet0"').replace('mac = "02:00:00:00:00:01"\n', 'mtu = 9000\n'))
    rc, _, err = run_ternd(ternd_cmd(ternd, "net_af_packet0,iface=lo", af_config))
    message = "port[0].mtu: 9000 needs framesz=9088 or more on net_af_packet0 (it has 2048)"
    check(rc == 78 and message in err, f"af_packet framesz: exit {rc}, {err[-300:]}")
    cmd = ternd_cmd(ternd, "net_af_packet0,iface=lo,framesz=9216,blocksz=36864", af_config)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        af_started = wait_for_line(proc, "started:", 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        remove_runtime_dirs(cmd)
    check(proc.returncode == 0 and "started:" in af_started, f"af_packet framesz=9216: exit {proc.returncode}, {af_started!r}")
    # A pool too small for the replay: refused naming the key to raise.
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace("[dataplane]\n", "[dataplane]\nmbufs = 4096\n"))
    cmd = ternd_cmd(ternd, f"net_pcap0,rx_pcap={replay},tx_pcap=/dev/null,infinite_rx=1", config)
    cmd[cmd.index("-m") + 1] = "1024"
    rc, _, err = run_ternd(cmd)
    check(rc == 78 and "dataplane.mbufs" in err and "the pool has 4096 mbufs (the computed size is" in err,
          f"small pool: exit {rc}, stderr {err[-300:]}")
    print("ok: a 100,000-packet capture replays with infinite_rx (pool sized for it); 8,000-byte frames at mtu 9000 "
          "leave whole in IPIP, a 9,000-byte one without DF in two outer fragments; a pool set too small is refused "
          "naming dataplane.mbufs; net_af_packet at mtu 9000 is refused naming the framesz it needs, and starts with it",
          flush=True)


class FeedReader(threading.Thread):
    """Runs `ternctl bgp-feed` with a pipe for ExaBGP's side and keeps each line it writes."""

    def __init__(self, ternctl, sock, interval="0.3"):
        super().__init__(daemon=True)
        self.proc = subprocess.Popen([ternctl, "bgp-feed", "--socket", sock, "--interval", interval], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines, self.times = [], []
        self.start()

    def run(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            self.times.append(time.monotonic())

    def finish(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.join(timeout=10)
        return self.proc.returncode, self.proc.stderr.read()


def lying_socket(path, reply, user=None):
    """A process serving one canned reply on `path` (as `user` when given): a squatter or a liar."""
    code = ("import socket,sys,os\n"
            "s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)\n"
            "while True:\n c,_=s.accept()\n try: c.recv(65536); c.sendall(sys.argv[2].encode())\n"
            " except OSError: pass\n c.close()\n")
    # As `user` through Popen itself: a kill then reaches the server (runuser would stay between).
    proc = subprocess.Popen([sys.executable, "-c", code, path, reply], user=user)
    wait_until(lambda: os.path.exists(path), 10, f"{path} to be bound")
    return proc


def test_feed_fails_closed(ternd, ternctl, tmp):
    """The feed withdraws when ternd freezes (no reply within an interval) and announces again when
    it thaws; it outlives a restart of ternd (withdraws while it is away, announces once the new one
    answers) and stops only when its input closes. It refuses a socket served by another user and
    passes on nothing from a reply that is not what ternd writes; ternctl status against a frozen
    ternd whose backlog is full gives up instead of hanging."""
    sockdir = f"/run/tern-feed-{os.getpid()}"
    os.makedirs(sockdir, exist_ok=True)
    sock = os.path.join(sockdir, "ternd.sock")
    config = null_config(tmp, extra=f'[control]\nsocket = "{sock}"\n')
    cmd = ternd_cmd(ternd, "net_null0", config)

    def start():
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log = StderrLog(proc)
        wait_until(lambda: "started:" in log.text(), 30, "ternd to start")
        return proc

    def stop(proc):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        remove_runtime_dirs(cmd)

    def announced():
        return [i for i, line in enumerate(feed.lines) if line.startswith("announce route 192.0.2.10/32")]

    def withdrawn():
        return [i for i, line in enumerate(feed.lines) if line.startswith("withdraw route 192.0.2.10/32")]
    proc = start()
    feed = None
    try:
        feed = FeedReader(ternctl, sock)
        wait_until(lambda: announced(), 10, "the announcement")
        os.kill(proc.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            wait_until(lambda: withdrawn(), 10, "the feed to withdraw from a frozen ternd")
            withdrew = feed.times[withdrawn()[0]] - frozen
            # Fill the frozen ternd's listen backlog: a client's connect itself must not block.
            fillers = []
            for _ in range(64):
                s = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(sock)
                except BlockingIOError:
                    s.close()
                    break
                fillers.append(s)
            started = time.monotonic()
            status = ctl(ternctl, sock, "status")
            status_took = time.monotonic() - started
            for s in fillers:
                s.close()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        wait_until(lambda: announced()[-1] > withdrawn()[0], 10, "the feed to announce again after ternd thawed")
        # A restart: withdrawn while ternd is away, announced again once the new one answers.
        stop(proc)
        wait_until(lambda: withdrawn()[-1] > announced()[-1], 10, "the feed to withdraw while ternd is stopped")
        away = time.monotonic()
        time.sleep(1)  # several intervals without ternd: the feed keeps asking
        check(feed.proc.poll() is None, f"feed: exited while ternd was away (exit {feed.proc.returncode})")
        proc = start()
        wait_until(lambda: announced()[-1] > withdrawn()[-1], 10, "the feed to announce after ternd restarted")
        back = time.monotonic() - away
        rc, err = feed.finish()
        feed = None
        check(withdrew < 3 * 0.3 + 0.5, f"feed: withdrew {withdrew:.2f} s after ternd froze (interval 0.3 s)")
        check(rc == 0 and "no reply within" in err and "answers again" in err, f"feed: exit {rc}, {err[-300:]}")
        check(status.returncode == 69 and status_took < 10, f"status against a frozen ternd: exit {status.returncode} after "
              f"{status_took:.1f} s: {status.stderr[-200:]}")
    finally:
        if feed:
            feed.finish()
        stop(proc)
    # A socket someone else serves: nothing believed, everything withdrawn.
    shared = tempfile.mkdtemp(prefix="tern-squat-")
    os.chmod(shared, 0o1777)
    squatted = os.path.join(shared, "ternd.sock")
    lie = '{"ok":true,"prefixes":[{"prefix":"0.0.0.0/0","up":true,"communities":[]}]}\n'
    squatter = lying_socket(squatted, lie, user="nobody")
    try:
        feed = FeedReader(ternctl, squatted)
        rc, err = feed.finish()
    finally:
        squatter.kill()
        shutil.rmtree(shared, ignore_errors=True)
    check(rc == 0 and not any(line.startswith("announce") for line in feed.lines) and "not trusted" in err,
          f"squatted socket: exit {rc}, lines {feed.lines}, {err[-300:]}")
    # A root-owned liar: fields that are not VIP prefixes or communities never reach ExaBGP.
    liar_path = os.path.join(sockdir, "liar.sock")
    lie = ('{"ok":true,"prefixes":[{"prefix":"0.0.0.0/0","up":true,"communities":[]},'
           '{"prefix":"192.0.2.10/32\\nannounce route 198.51.100.0/24 next-hop self","up":true,"communities":[]},'
           '{"prefix":"192.0.2.20/32","up":true,"communities":["65000:1]\\nannounce route 203.0.113.0/24 next-hop self"]},'
           '{"prefix":"192.0.2.30/32","up":true,"communities":["65000:1"]}]}\n')
    liar = lying_socket(liar_path, lie)
    try:
        feed = FeedReader(ternctl, liar_path)
        wait_until(lambda: len(feed.lines) >= 1, 10, "the feed's first line")
        time.sleep(0.7)  # two more rounds of asking: what it writes must not change
        rc, err = feed.finish()
    finally:
        liar.kill()
        os.unlink(liar_path)
    check(feed.lines == ["announce route 192.0.2.30/32 next-hop self community [65000:1]", "withdraw route 192.0.2.30/32 next-hop self"],
          f"lying socket: the feed wrote {feed.lines}")
    check(err.count("refused from the control socket") >= 3, f"lying socket: refusals not logged: {err[-400:]}")
    shutil.rmtree(sockdir, ignore_errors=True)
    print(f"ok: bgp-feed fails closed: withdrew {withdrew:.2f} s after ternd froze (interval 0.3 s) and announced again when "
          f"it thawed; outlived a restart (announced {back:.2f} s after ternd stopped, 1 s of it waiting); status gave up after "
          f"{status_took:.1f} s (backlog full); a socket served by nobody and a lying one announced nothing but well-formed VIP prefixes",
          flush=True)


def test_flows_survive_a_restart(ternd, tmp):
    """[dataplane] flow_state: a ternd stopped with SIGTERM leaves its flow table; the next one (a
    backend added in between, so Maglev now places some of those flows elsewhere) re-attaches it
    and every established flow keeps its backend. Without the file, some flows move (the check
    can fail)."""
    state = f"/dev/shm/tern-test-flows-{os.getpid()}"  # tmpfs: flow state is kept only in memory

    def config(backends, flow_state):
        path = os.path.join(tmp, f"restart-{backends}-{bool(flow_state)}.toml")
        with open(path, "w") as f:
            f.write('[node]\nname = "restart"\ntunnel_source_v4 = "10.0.0.10"\n[dataplane]\nflow_table_entries = 4096\n'
                    f'flow_state = "{flow_state}"\n[maglev]\ntable_size = 251\n'
                    '[[port]]\ndevice = "net_pcap0"\ngateway_mac = "02:00:00:00:00:fe"\nmac = "02:00:00:00:00:01"\n'
                    '[[vip]]\naddress = "192.0.2.1"\nport = 80\nprotocol = "tcp"\n'
                    + "".join(f'[[vip.backend]]\naddress = "10.1.0.{b}"\n' for b in range(1, backends + 1)))
        return path

    def flows(flags):
        return [bytes(make_pcap.eth() / make_pcap.IP(src=f"198.51.{100 + i // 250}.{1 + i % 250}", dst="192.0.2.1") /
                      make_pcap.TCP(sport=1024 + i, dport=80, flags=flags)) for i in range(300)]

    def run(config_path, frames, name):
        """ternd over net_pcap until SIGTERM (not --stop-when-idle, which drops the state): each
        flow's backend (the outer destination) by its source port, and ternd's stderr."""
        inp, out = os.path.join(tmp, f"{name}-in.pcap"), os.path.join(tmp, f"{name}-out.pcap")
        make_pcap.write_frames(inp, frames)
        cmd = ternd_cmd(ternd, f"net_pcap0,rx_pcap={inp},tx_pcap={out}", config_path)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        log = StderrLog(proc)
        try:
            wait_until(lambda: "started:" in log.text(), 30, "ternd to start")
            time.sleep(1.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            remove_runtime_dirs(cmd)
        placed = {struct.unpack(">H", f[54:56])[0]: f[30:34] for f in read_pcap(out) if len(f) >= 56}
        return placed, log.text()
    before, _ = run(config(4, state), flows("S"), "syn")
    kept, err = run(config(5, state), flows("A"), "kept")
    fresh, _ = run(config(5, ""), flows("A"), "fresh")
    if os.path.exists(state):
        os.remove(state)
    _, on_disk = run(config(4, os.path.join(tmp, "flows.state")), flows("S"), "disk")
    check("is not on tmpfs: flows are not kept" in on_disk and not os.path.exists(os.path.join(tmp, "flows.state")),
          f"flow state on a disk filesystem: {on_disk[-300:]}")
    moved_without = sum(1 for port, backend in before.items() if fresh.get(port) != backend)
    moved_with = sum(1 for port, backend in before.items() if kept.get(port) != backend)
    check(len(before) == 300 and len(kept) == 300 and moved_with == 0 and "re-attached" in err and "300 flow entries" in err,
          f"flow state: {len(before)} placed, {len(kept)} after the restart, {moved_with} moved; {err[-400:]}")
    check(moved_without > 0, f"flow state: without it no flow moved ({len(fresh)} seen): the check could not fail")
    print(f"ok: flow state across a restart (a backend added meanwhile): 0 of 300 established flows moved with "
          f"flow_state, {moved_without} of 300 without it", flush=True)


def test_persistent_host_interface(ternd, tmp):
    """host_interface naming a persistent multi-queue TAP: ternd attaches to it and, when it
    stops, leaves it up with its address and routes (a BGP session over it outlives a restart);
    the next ternd attaches again. Any other existing interface of that name is refused (78)."""
    failures = len(FAILURES)
    name = f"terntap{os.getpid() % 10000}"
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    subprocess.run(["ip", "tuntap", "add", "dev", name, "mode", "tap", "multi_queue"], check=True)
    subprocess.run(["ip", "addr", "add", "10.77.0.2/24", "dev", name], check=True)
    config = null_config(tmp, extra=f'host_interface = "{name}"\n')

    def state():
        link = subprocess.run(["ip", "-br", "link", "show", name], capture_output=True, text=True).stdout
        addr = subprocess.run(["ip", "-br", "addr", "show", name], capture_output=True, text=True).stdout
        route = subprocess.run(["ip", "route", "show", "10.78.0.0/24"], capture_output=True, text=True).stdout
        return link, addr, route
    try:
        for run in (1, 2):
            cmd = ternd_cmd(ternd, "net_null0", config)
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            log = StderrLog(proc)
            try:
                wait_until(lambda: "started:" in log.text() or proc.poll() is not None, 30, "ternd to start")
                if run == 1:
                    subprocess.run(["ip", "route", "add", "10.78.0.0/24", "via", "10.77.0.1", "dev", name], check=True)
                up = state()
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
                remove_runtime_dirs(cmd)
            after = state()
            check(proc.returncode == 0, f"persistent TAP, run {run}: exit {proc.returncode}: {log.text()[-300:]}")
            check("started:" in log.text() and "LOWER_UP" in up[0], f"persistent TAP, run {run}: not attached or not up: "
                  f"{up} {log.text()[-300:]}")
            # net_tap's I/O signals (SIGRTMIN+1 on its queues) are consumed, never logged as sent signals;
            # its multiq and secondary-process lines are logged at info with the reason, not as errors.
            check(" ignored" not in log.text() and "error:" not in log.text(),
                  f"persistent TAP, run {run}: signals or errors logged: {log.text()[-400:]}")
            # Administratively up (no carrier while no process holds a queue), address and route kept.
            check(",UP" in after[0] and "10.77.0.2/24" in after[1] and "via 10.77.0.1" in after[2],
                  f"persistent TAP, run {run}: after SIGTERM: {after}")
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    # Not a TAP (a veth of that name): refused naming the key and the way to make one.
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
    try:
        rc, _, err = run_ternd(ternd_cmd(ternd, "net_null0", config))
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    check(rc == 78 and "port[0].host_interface" in err and "ip tuntap add dev" in err, f"existing veth: exit {rc}: {err[-300:]}")
    if len(FAILURES) == failures:
        print("ok: host_interface on a persistent TAP: attached twice; after each SIGTERM it stayed up with its address and "
              "route; an existing non-TAP interface is refused naming the key", flush=True)


def main(ternd, ternctl):
    tmp = tempfile.mkdtemp(prefix="tern-ternd-")
    try:
        test_startup_errors(ternd, tmp)
        test_startup_causes(ternd, tmp)
        test_replay_and_jumbo(ternd, tmp)
        test_sigterm_stops_a_long_reload(ternd, tmp)
        test_control_socket(ternd, ternctl, tmp)
        test_feed_fails_closed(ternd, ternctl, tmp)
        test_flows_survive_a_restart(ternd, tmp)
        test_persistent_host_interface(ternd, tmp)
        test_same_bytes_as_simulate(ternd, ternctl, tmp)
        test_held_fragments(ternd, ternctl, tmp)
        test_two_workers_same_multiset(ternd, ternctl, tmp)
        test_separate_ports(ternd, ternctl, tmp)
        test_reload_under_load(ternd, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
