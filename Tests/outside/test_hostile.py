#!/usr/bin/python3
"""Hostile clients against a running ternd (net_null: no traffic needed), judged from outside.
Each case fails on a ternd whose control thread can be held by a client:

1. 3,000 idle connections to [metrics] listen under a 256-descriptor limit, with a health-checked
   backend: the backend stays up, `ternctl status` answers within 1 s, a scrape still works after;
2. 20 control-socket clients that send show-backends and never read, at 2,000 backends:
   `ternctl status` answers within 1 s and a SIGHUP is handled;
3. a scrape at 10,000 backends (100 VIPs x 100) answers 200 within 1 s, and `status` during
   pipelined scrapes stays under 1 s;
4. HTTP oddities: a 400 closes its connection, an HTTP/0.9 request line gets 400 at once;
5. keepalived imports: an include glob that matches its own files (refused within 1 s, under
   100 MB), an include of a FIFO (refused at once), includes of /etc/shadow and
   /proc/self/environ (no content echoed);
6. a control socket in a directory others can write: `ternctl check` refuses it, and ternd exits
   78 naming it when another user has bound the name first;
7. [metrics] listen on an address that exists only after ternd started answers once it exists; a
   port already taken stops ternd with 78 naming metrics.listen.

Usage: test_hostile.py PATH/TO/ternd PATH/TO/ternctl
"""
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reload_soak import remove_flow_state  # noqa: E402

FAILURES = []
# The health-checked backend: an address on a veth made for the test (loopback is no backend).
CHECKED = "198.18.0.1"


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL", message, flush=True)


def passed(failures_before, text):
    """Prints the test's figures: as `ok:` when it added no failure."""
    print(("ok: " if len(FAILURES) == failures_before else "measured: ") + text, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(sock, metrics_port, vips, backends, health_port=None):
    lines = ['[node]', 'name = "hostile"', 'tunnel_source_v4 = "10.0.0.10"', '[dataplane]', 'flow_table_entries = 4096',
             '[maglev]', 'table_size = 1031', '[control]', f'socket = "{sock}"', '[metrics]', f'listen = "127.0.0.1:{metrics_port}"',
             '[[port]]', 'device = "net_null0"', 'gateway_mac = "02:00:00:00:00:fe"']
    for v in range(vips):
        lines += ['[[vip]]', f'address = "192.0.{2 + v // 250}.{1 + v % 250}"', 'port = 80', 'protocol = "tcp"']
        if health_port and v == 0:
            lines += ['[vip.health]', 'check = "tcp"', f'port = {health_port}', 'interval_ms = 200', 'timeout_ms = 100',
                      'rise = 1', 'fall = 2']
        for b in range(backends):
            n = v * backends + b
            address = CHECKED if health_port and v == 0 and b == 0 else f"10.{1 + n // 65536}.{n // 256 % 256}.{n % 256}"
            lines += ['[[vip.backend]]', f'address = "{address}"']
            if health_port and v == 0 and b > 0:
                lines += ['[vip.backend.health]', 'check = "none"']
    return "\n".join(lines) + "\n"


def ternd_command(ternd, prefix, config):
    return [ternd, "-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix", prefix,
            "--vdev", "net_null0", "--log-level", "lib.eal:error", "--", "--config", config, "--idle-sleep-us", "200"]


class Ternd:
    """ternd on net_null0 with a config, its stderr collected; stopped with SIGTERM."""

    def __init__(self, ternd, tmp, name, text, nofile=None, env=None):
        self.config = os.path.join(tmp, f"{name}.toml")
        with open(self.config, "w") as f:
            f.write(text)
        self.prefix = f"tern-hostile-{os.getpid()}-{name}"
        cmd = ternd_command(ternd, self.prefix, self.config)

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=limit,
                                     env=env)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 60
        while not any("started:" in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ternd did not start: {self.lines[-5:]}")
            time.sleep(0.05)

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)
        remove_flow_state(self.prefix)


def timed(ternctl, sock, *args):
    started = time.monotonic()
    p = subprocess.run([ternctl, *args, "--socket", sock], capture_output=True, text=True, timeout=60)
    return time.monotonic() - started, p


def scrape(port, timeout=10):
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            return time.monotonic() - started, r.status, r.read()
    except OSError as e:
        return time.monotonic() - started, getattr(e, "code", 0), str(e).encode()


def test_idle_metrics_connections(ternd, ternctl, tmp):
    start = len(FAILURES)
    subprocess.run(["ip", "link", "del", "tern-hb0"], capture_output=True)
    subprocess.run(["ip", "link", "add", "tern-hb0", "type", "veth", "peer", "name", "tern-hb1"], check=True)
    subprocess.run(["ip", "addr", "add", f"{CHECKED}/32", "dev", "tern-hb0"], check=True)
    subprocess.run(["ip", "link", "set", "tern-hb0", "up"], check=True)
    listener = socket.socket()
    listener.bind((CHECKED, 0))
    listener.listen(1024)
    health_port = listener.getsockname()[1]
    accepting = threading.Event()

    def accept_all():  # the health-checked backend: accepts and closes, as long as the test runs
        listener.settimeout(0.2)
        while not accepting.is_set():
            try:
                c, _ = listener.accept()
                c.close()
            except OSError:
                pass
    threading.Thread(target=accept_all, daemon=True).start()
    sock = os.path.join(tmp, "idle.sock")
    port = free_port()
    d = Ternd(ternd, tmp, "idle", config_text(sock, port, 1, 3, health_port=health_port), nofile=256)
    idle = []
    try:
        time.sleep(1)
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
        for _ in range(3000):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            idle.append(s)
        time.sleep(3)  # 15 health-check intervals with every connection open
        took, status = timed(ternctl, sock, "status")
        _, show = timed(ternctl, sock, "show", "backends")
        up = [line for line in show.stdout.splitlines() if CHECKED in line]
        check(status.returncode == 0 and took < 1, f"idle metrics connections: status exit {status.returncode} after {took:.2f} s")
        check(up and "state=active" in up[0] and 'health="connected"' in up[0],
              f"idle metrics connections: the checked backend: {up} {show.stderr}")
        errors = [line for line in d.lines if "Too many open files" in line or "DOWN" in line]
        check(not errors, f"idle metrics connections: {errors[:3]}")
        for s in idle:
            s.close()
        idle = []
        time.sleep(0.5)
        took_scrape, code, body = scrape(port)
        check(code == 200 and b"tern_backend_up" in body, f"idle metrics connections: scrape after: {code} {body[:200]}")
        passed(start, f"3,000 idle metrics connections under a 256-descriptor limit: status in {took:.2f} s, "
              f"the checked backend stayed up, a scrape afterwards answered in {took_scrape:.2f} s")
    finally:
        for s in idle:
            s.close()
        accepting.set()
        d.stop()
        listener.close()
        subprocess.run(["ip", "link", "del", "tern-hb0"], capture_output=True)


def test_never_reading_clients(ternd, ternctl, tmp):
    start = len(FAILURES)
    sock = os.path.join(tmp, "slow.sock")
    port = free_port()
    d = Ternd(ternd, tmp, "slow", config_text(sock, port, 20, 100))
    clients = []
    try:
        for _ in range(20):
            c = socket.socket(socket.AF_UNIX)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.connect(sock)
            c.sendall(b'{"command":"show-backends"}\n')
            clients.append(c)
        time.sleep(0.5)
        took, status = timed(ternctl, sock, "status")
        check(status.returncode == 0 and took < 1, f"never-reading clients: status exit {status.returncode} after {took:.2f} s")
        before = sum("reload" in line for line in d.lines)
        sent = time.monotonic()
        d.proc.send_signal(signal.SIGHUP)
        while sum("reload" in line for line in d.lines) == before and time.monotonic() - sent < 10:
            time.sleep(0.02)
        reloaded = time.monotonic() - sent
        check(reloaded < 2, f"never-reading clients: SIGHUP handled after {reloaded:.2f} s: {d.lines[-3:]}")
        time.sleep(5.5)  # the reply timeout (5 s) passes: all twenty are dropped and counted
        _, code, body = scrape(port)
        dropped = b'tern_control_clients_dropped_total{reason="slow_reader"} 20' in body
        check(code == 200 and dropped, f"never-reading clients: not counted as dropped: {code} "
              f"{[line for line in body.splitlines() if b'dropped_total' in line]}")
        passed(start, f"20 show-backends clients that never read (2,000 backends): status in {took:.2f} s, "
              f"SIGHUP handled in {reloaded:.2f} s; all twenty dropped 5 s later and counted")
    finally:
        for c in clients:
            c.close()
        d.stop()


def test_large_scrape(ternd, ternctl, tmp):
    start = len(FAILURES)
    sock = os.path.join(tmp, "large.sock")
    port = free_port()
    d = Ternd(ternd, tmp, "large", config_text(sock, port, 100, 100))
    try:
        took, code, body = scrape(port)
        series = sum(1 for line in body.splitlines() if line.startswith(b"tern_backend_forwarded_packets_total{"))
        check(code == 200 and took < 1 and series == 10000,
              f"10,000-backend scrape: {code} after {took:.2f} s, {series} backend series")
        stop = threading.Event()

        def scraper():
            while not stop.is_set():
                scrape(port)
        threads = [threading.Thread(target=scraper, daemon=True) for _ in range(10)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        worst = 0.0
        for _ in range(5):
            status_took, status = timed(ternctl, sock, "status")
            check(status.returncode == 0, f"status during scrapes: exit {status.returncode}")
            worst = max(worst, status_took)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        check(worst < 1, f"status during ten scrapers at 10,000 backends: {worst:.2f} s")
        passed(start, f"a scrape at 10,000 backends answered 200 in {took:.2f} s ({len(body)} bytes); status with ten scrapers "
              f"running: at most {worst:.2f} s")
    finally:
        d.stop()


def test_http_oddities(ternd, tmp):
    start = len(FAILURES)
    sock = os.path.join(tmp, "http.sock")
    port = free_port()
    d = Ternd(ternd, tmp, "http", config_text(sock, port, 1, 1))

    def exchange(request):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request)
            data = b""
            started = time.monotonic()
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        return data, True, time.monotonic() - started
                    data += chunk
            except socket.timeout:
                return data, False, time.monotonic() - started
    try:
        data, closed, _ = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        check(data.startswith(b"HTTP/1.1 400") and closed, f"a 400 keeps its connection: closed={closed} {data[:120]}")
        data, closed, took = exchange(b"GET /metrics\r\n")
        check(data.startswith(b"HTTP/1.1 400") and closed and took < 2,
              f"HTTP/0.9 request: closed={closed} after {took:.1f} s: {data[:120]}")
        passed(start, "a malformed request gets 400 and its connection closed; an HTTP/0.9 request line gets 400 at once")
    finally:
        d.stop()


def run_measured(cmd, env=None, timeout=30):
    """Runs `cmd`; returns (exit code, stderr, seconds, peak RSS in MB) read from wait4's rusage."""
    started = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    err = p.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(p.pid, 0)
    timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, err, time.monotonic() - started, usage.ru_maxrss / 1024


def test_import_bombs(ternctl, tmp):
    start = len(FAILURES)
    top = os.path.join(tmp, "bomb")
    os.makedirs(os.path.join(top, "conf.d"))
    for i in range(6):
        with open(os.path.join(top, "conf.d", f"{i}.conf"), "w") as f:
            f.write("include *.conf\n")
    with open(os.path.join(top, "keepalived.conf"), "w") as f:
        f.write("include conf.d/*.conf\n")
    rc, err, took, rss = run_measured([ternctl, "import", "keepalived", os.path.join(top, "keepalived.conf")])
    check(rc == 78 and took < 1 and rss < 100 and err.count("\n") <= 2 and "nested deeper than 8" in err,
          f"include glob bomb: exit {rc} after {took:.2f} s, {rss:.0f} MB, {err[:300]}")
    os.mkfifo(os.path.join(top, "pipe.conf"))
    with open(os.path.join(top, "fifo.conf"), "w") as f:
        f.write("include pipe.conf\n")
    rc, err, fifo_took, _ = run_measured([ternctl, "import", "keepalived", os.path.join(top, "fifo.conf")], timeout=10)
    check(rc == 78 and fifo_took < 1 and "cannot read" in err, f"FIFO include: exit {rc} after {fifo_took:.2f} s: {err[:300]}")
    with open(os.path.join(top, "secrets.conf"), "w") as f:
        f.write("include /etc/shadow\ninclude /proc/self/environ\n")
    env = dict(os.environ, TERN_TEST_SECRET="s3cret-value-never-printed")
    rc, err, _, _ = run_measured([ternctl, "import", "keepalived", os.path.join(top, "secrets.conf")], env=env)
    leaked = [w for w in ("root:", "s3cret-value", "TERN_TEST_SECRET", "PATH=") if w in err]
    check(rc == 78 and not leaked and "/etc/shadow:1: not understood" in err,
          f"shadow and environ includes: exit {rc}, leaked {leaked}: {err[:400]}")
    passed(start, f"imports: an include glob bomb refused in {took:.2f} s ({rss:.0f} MB peak), a FIFO include in "
           f"{fifo_took:.2f} s; /etc/shadow and /proc/self/environ included: nothing of them printed")


def test_socket_in_a_shared_directory(ternd, ternctl, tmp):
    start = len(FAILURES)
    shared = tempfile.mkdtemp(prefix="tern-shared-")
    os.chmod(shared, 0o1777)
    sock = os.path.join(shared, "ternd.sock")
    config = os.path.join(tmp, "shared.toml")
    with open(config, "w") as f:
        f.write(config_text(sock, free_port(), 1, 1))
    check_run = subprocess.run([ternctl, "check", config], capture_output=True, text=True, timeout=30)
    check(check_run.returncode == 78 and "control.socket" in check_run.stderr and "writable by others" in check_run.stderr,
          f"ternctl check, socket in a 1777 directory: exit {check_run.returncode}: {check_run.stderr[-300:]}")
    # Someone else binds the name first: ternd refuses (78, the reason) instead of exit 1.
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)\n"
            "while True:\n c,_=s.accept(); c.close()\n")
    squatter = subprocess.Popen([sys.executable, "-c", code, sock], user="nobody")  # killed directly, not via runuser
    prefix = f"tern-hostile-{os.getpid()}-shared"
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        p = subprocess.run(ternd_command(ternd, prefix, config), capture_output=True, text=True, timeout=60)
    finally:
        squatter.kill()
        squatter.wait()
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
        remove_flow_state(prefix)
    check(p.returncode == 78 and "writable by others" in p.stderr, f"ternd, squatted socket: exit {p.returncode}: {p.stderr[-300:]}")
    passed(start, "a control socket in a directory others can write: ternctl check and ternd (squatted) exit 78 naming it")


def test_metrics_listen_before_its_address_exists(ternd, tmp):
    """[metrics] listen may name an address that appears after ternd starts (its host interface's);
    one that cannot be bound at all (the port taken) stops ternd with 78 naming the key."""
    start = len(FAILURES)
    address = "198.18.0.7"
    port = free_port()
    text = config_text(os.path.join(tmp, "late.sock"), port, 1, 1).replace(f"127.0.0.1:{port}", f"{address}:{port}")
    subprocess.run(["ip", "link", "del", "tern-late0"], capture_output=True)
    d = Ternd(ternd, tmp, "late", text)
    try:
        subprocess.run(["ip", "link", "add", "tern-late0", "type", "veth", "peer", "name", "tern-late1"], check=True)
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "tern-late0"], check=True)
        subprocess.run(["ip", "link", "set", "tern-late0", "up"], check=True)
        time.sleep(0.5)
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=10) as r:
                code = r.status
        except OSError as e:
            code = str(e)
        check(code == 200, f"metrics on an address added after start: {code}")
    finally:
        d.stop()
        subprocess.run(["ip", "link", "del", "tern-late0"], capture_output=True)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    busy = taken.getsockname()[1]
    config = os.path.join(tmp, "busy.toml")
    with open(config, "w") as f:
        f.write(config_text(os.path.join(tmp, "busy.sock"), busy, 1, 1))
    prefix = f"tern-hostile-{os.getpid()}-busy"
    p = subprocess.run(ternd_command(ternd, prefix, config), capture_output=True, text=True, timeout=60)
    taken.close()
    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    remove_flow_state(prefix)
    check(p.returncode == 78 and "metrics.listen: cannot listen" in p.stderr, f"metrics port taken: exit {p.returncode}: "
          f"{p.stderr[-300:]}")
    passed(start, "[metrics] listen on an address added after ternd started answers once it exists; a port already "
           "taken stops ternd with 78 naming metrics.listen")


def test_systemd_readiness(ternd, tmp):
    """Type=notify: ternd sends READY=1 to $NOTIFY_SOCKET (here an abstract datagram socket, as
    systemd's) once it is up, STOPPING=1 when it stops."""
    start = len(FAILURES)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"tern-notify-{os.getpid()}"
    listener.bind("\0" + name)
    listener.settimeout(10)
    d = Ternd(ternd, tmp, "notify", config_text(os.path.join(tmp, "notify.sock"), free_port(), 1, 1),
              env=dict(os.environ, NOTIFY_SOCKET="@" + name))
    try:
        ready = listener.recv(4096).decode()
        d.stop()
        stopping = listener.recv(4096).decode()
    except socket.timeout:
        ready, stopping = "", ""
    finally:
        d.stop()
        listener.close()
    check(ready.startswith("READY=1\nSTATUS=forwarding: 1 VIPs") and stopping.startswith("STOPPING=1"),
          f"sd_notify: {ready!r} then {stopping!r}")
    passed(start, f"sd_notify: {ready.splitlines()[0] if ready else '-'} once started, STOPPING=1 at SIGTERM")


def main(ternd, ternctl):
    tmp = tempfile.mkdtemp(prefix="tern-hostile-")
    try:
        test_import_bombs(ternctl, tmp)
        test_socket_in_a_shared_directory(ternd, ternctl, tmp)
        test_http_oddities(ternd, tmp)
        test_metrics_listen_before_its_address_exists(ternd, tmp)
        test_systemd_readiness(ternd, tmp)
        test_never_reading_clients(ternd, ternctl, tmp)
        test_large_scrape(ternd, ternctl, tmp)
        test_idle_metrics_connections(ternd, ternctl, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
