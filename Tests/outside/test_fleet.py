#!/usr/bin/python3
"""A fleet run from etcd: a three-member etcd cluster (Debian's etcd-server, on this host) and three
ternd nodes, each in its own network namespace (reaching etcd over a veth), each with a backend
address of its own on lo that its health checks reach.

Checked:
1. `ternctl fleet put` reaches every node: equal site revision, generation-independent table
   fingerprints (measured: how long until every node runs it).
2. `ternctl fleet drain` reaches every node; `fleet undrain` ends it.
3. An invalid document is refused by `fleet put` (exit 78, nothing written); written around it
   with etcdctl, every node refuses it, keeps running and says why (status, fleet status).
4. One etcd member frozen (SIGSTOP: it never answers), then killed: puts still reach every node.
5. etcd's quorum lost: the nodes keep forwarding (lb1 replays a capture: its forwarded counter
   keeps rising), status and metrics (promtool-clean) say etcd is unreachable; a node started meanwhile runs the
   cached document and says so; quorum back: a change made then arrives everywhere.
6. A node killed (SIGKILL): its PREFIX/nodes/ entry goes when its lease ends.
7. Health by quorum: one node's checks failing alone change no node's table; two of three take the
   backend out on every node.
8. TLS: an etcd member that requires client certificates (--client-cert-auth; certificates made
   with openssl): ternctl fleet put with them works and without them is refused; a node with
   https endpoints and its certificate files runs the document.

Needs root, etcd-server, etcd-client, openssl, iproute2, nftables, curl, prometheus (promtool), python3.
Usage: test_fleet.py PATH/TO/ternd
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_pcap  # noqa: E402
import test_ternd  # noqa: E402
from test_netns import sh  # noqa: E402
from test_ternd import check  # noqa: E402

NODES = ("lb1", "lb2", "lb3")
PREFIX = "/tern/test-site"
BACKEND = "10.1.0.1"          # every node's lo has it; a TCP listener there answers health checks
SECOND = "10.1.0.2"           # a second backend, also on lo
VIP = "192.0.2.10:80/tcp"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Etcd:
    """Three members on this host: peers on loopback, clients on every address (the nodes reach it over veths)."""

    def __init__(self, tmp):
        self.tmp = tmp
        ports = free_ports(6)
        self.client = dict(zip(("e1", "e2", "e3"), ports[:3]))
        self.peer = dict(zip(("e1", "e2", "e3"), ports[3:]))
        self.procs = {}
        for name in self.client:
            self.start(name)

    def start(self, name):
        cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in self.peer.items())
        log = open(os.path.join(self.tmp, f"{name}.log"), "a")
        self.procs[name] = subprocess.Popen(
            ["etcd", "--name", name, "--data-dir", os.path.join(self.tmp, name),
             "--listen-client-urls", f"http://0.0.0.0:{self.client[name]}",
             "--advertise-client-urls", f"http://127.0.0.1:{self.client[name]}",
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer[name]}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer[name]}",
             "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "tern-test",
             "--heartbeat-interval", "50", "--election-timeout", "500"],
            stdout=log, stderr=subprocess.STDOUT)

    def kill(self, name):
        self.procs[name].kill()
        self.procs[name].wait()

    def endpoints(self, host="127.0.0.1"):
        return ",".join(f"http://{host}:{p}" for p in self.client.values())

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def site(backends=(BACKEND,), extra="", port=80):
    text = "[maglev]\ntable_size = 1009\n"
    text += (f'[[vip]]\naddress = "192.0.2.10"\nport = {port}\nprotocol = "tcp"\n{extra}'
             '[vip.health]\ncheck = "tcp"\ninterval_ms = 200\ntimeout_ms = 150\nrise = 2\nfall = 2\nquorum = "fleet"\n')
    for b in backends:
        text += f'[[vip.backend]]\naddress = "{b}"\n'
    return text


class Node:
    def __init__(self, name, index, ternd, etcd, tmp, replay=None):
        self.name, self.ns, self.tmp = name, f"tf-{name}", tmp
        self.link = f"10.79.{index}"
        self.sock = f"/run/tern/fleet-test-{os.getpid()}-{name}.sock"
        self.config = os.path.join(tmp, f"{name}.toml")
        self.cache = os.path.join(tmp, f"{name}-cache.toml")
        endpoints = ", ".join(f'"http://{self.link}.1:{p}"' for p in etcd.client.values())
        with open(self.config, "w") as f:
            f.write(f'[node]\nname = "{name}"\ntunnel_source_v4 = "10.0.0.{index + 10}"\n'
                    f'[control]\nsocket = "{self.sock}"\n[metrics]\nlisten = "{self.link}.2:9108"\n[dataplane]\nflow_table_entries = 4096\nflow_state = ""\n'
                    f'[[port]]\ndevice = "{"net_pcap0" if replay else "net_null0"}"\ngateway_mac = "02:00:00:00:00:fe"\n'
                    f'[fleet]\nendpoints = [{endpoints}]\nprefix = "{PREFIX}"\nnode = "{name}"\ncache = "{self.cache}"\n'
                    'poll_ms = 100\nlease_s = 2\n'
                    # The file's own VIP: used only if neither etcd nor the cache gives a document.
                    '[[vip]]\naddress = "192.0.2.99"\nport = 80\nprotocol = "tcp"\n[[vip.backend]]\naddress = "10.9.9.9"\n')
        self.vdev = f"net_pcap0,rx_pcap={replay},tx_pcap=/dev/null,infinite_rx=1" if replay else "net_null0"
        self.proc = None
        self.start(ternd)

    def start(self, ternd):
        self.log = os.path.join(self.tmp, f"{self.name}.log")
        self.offset = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        test_ternd.RUN += 1
        self.prefix = f"tern-fleet-{os.getpid()}-{self.name}-{test_ternd.RUN}"
        cmd = ["ip", "netns", "exec", self.ns, ternd, "-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf",
               "--file-prefix", self.prefix, "--vdev", self.vdev, "--log-level", "lib.eal:error",
               "--", "--config", self.config, "--idle-sleep-us", "200"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "started:" not in self.text():
            time.sleep(0.1)
        check("started:" in self.text(), f"{self.name}: ternd did not start: {self.text()[-800:]}")

    def text(self):
        """What this run of ternd logged."""
        with open(self.log) as f:
            f.seek(self.offset)
            return f.read()

    def status(self):
        p = subprocess.run([TERNCTL, "status", "--json", "--socket", self.sock], capture_output=True, text=True)
        return json.loads(p.stdout) if p.returncode == 0 else {}

    def metrics(self):
        p = subprocess.run(["ip", "netns", "exec", self.ns, "curl", "-s", "--max-time", "5", f"http://{self.link}.2:9108/metrics"],
                           capture_output=True, text=True)
        return p.stdout

    def backends(self):
        p = subprocess.run([TERNCTL, "show", "backends", "--json", "--socket", self.sock], capture_output=True, text=True)
        if p.returncode != 0:
            return {}
        return {b["address"]: b for v in json.loads(p.stdout)["vips"] for b in v["backends"]}

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)


TERNCTL = None


def fleet(etcd, *args):
    return subprocess.run([TERNCTL, "fleet", *args, "--endpoints", etcd.endpoints(), "--prefix", PREFIX],
                          capture_output=True, text=True, timeout=60)


def wait(condition, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def fingerprints(nodes):
    return {n.name: n.status().get("table_fingerprints", {}).get(VIP) for n in nodes}


def agree(nodes, revision):
    statuses = [n.status() for n in nodes]
    return (all(s.get("fleet", {}).get("revision") == revision for s in statuses)
            and len({json.dumps(s.get("table_fingerprints"), sort_keys=True) for s in statuses}) == 1)


def put(etcd, tmp, text):
    path = os.path.join(tmp, "site.toml")
    get = fleet(etcd, "get")
    with open(path, "w") as f:
        f.write((get.stdout.splitlines()[0] + "\n" if get.returncode == 0 else "") + text)
    p = fleet(etcd, "put", path)
    check(p.returncode == 0, f"fleet put: exit {p.returncode}: {p.stdout} {p.stderr}")
    return int(p.stdout.split("revision")[-1]) if p.returncode == 0 else 0


def setup_namespaces():
    for i, name in enumerate(NODES, start=1):
        ns = f"tf-{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"tf{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "addr", "add", f"10.79.{i}.1/24", "dev", f"tf{i}")
        sh("ip", "link", "set", f"tf{i}", "up")
        sh("ip", "addr", "add", f"10.79.{i}.2/24", "dev", "eth0", ns=ns)
        sh("ip", "link", "set", "eth0", "up", ns=ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        for b in (BACKEND, SECOND):
            sh("ip", "addr", "add", f"{b}/32", "dev", "lo", ns=ns)


def teardown_namespaces():
    for name in NODES:
        ns = f"tf-{name}"
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for i in range(1, len(NODES) + 1):
        subprocess.run(["ip", "link", "del", f"tf{i}"], capture_output=True)


def listeners():
    """A TCP listener on each backend address in each node's namespace (health checks connect)."""
    code = ("import socket,sys,threading\n"
            "def serve(a):\n s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind((a,80)); s.listen(64)\n"
            " while True:\n  c,_=s.accept(); c.close()\n"
            "for a in sys.argv[1:]: threading.Thread(target=serve,args=(a,),daemon=True).start()\n"
            "threading.Event().wait()\n")
    return [subprocess.Popen(["ip", "netns", "exec", f"tf-{n}", sys.executable, "-c", code, BACKEND, SECOND]) for n in NODES]


def cut(node, on):
    """Health checks from this node to BACKEND fail (nftables drops them) or pass again."""
    if on:
        subprocess.run(["ip", "netns", "exec", node.ns, "nft", "-f", "-"], check=True, text=True,
                       input=f"table inet tf_cut {{\n chain out {{ type filter hook output priority 0; ip daddr {BACKEND} tcp dport 80 drop; }}\n}}\n")
    else:
        sh("nft", "delete", "table", "inet", "tf_cut", ns=node.ns)


def certificates(tmp):
    """A CA, a server certificate for etcd (IP SANs: loopback and every node's side of its veth) and a client one.
    etcd 3.4's JSON gateway dials etcd's own gRPC port with the server certificate, so with
    --client-cert-auth that certificate must be good for client authentication too (else every
    gateway request answers 503)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=tern-test-ca")
    sans = ",".join(["IP:127.0.0.1"] + [f"IP:10.79.{i}.1" for i in range(1, len(NODES) + 1)])
    for name, ext in (("server", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth,clientAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        with open(os.path.join(tmp, f"{name}.ext"), "w") as f:
            f.write(ext)
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=tern-{name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", f"{name}.pem",
            "-days", "1", "-extfile", f"{name}.ext")
    return {k: os.path.join(tmp, f) for k, f in (("ca", "ca.pem"), ("cert", "client.pem"), ("key", "client.key"),
                                                  ("server", "server.pem"), ("server_key", "server.key"))}


def test_tls(ternd, tmp, node):
    """8: etcd with --client-cert-auth; ternctl and a node speak to it over TLS."""
    certs = certificates(tmp)
    client, peer = free_ports(2)
    etcd = subprocess.Popen(
        ["etcd", "--name", "tls", "--data-dir", os.path.join(tmp, "tls"),
         "--listen-client-urls", f"https://0.0.0.0:{client}", "--advertise-client-urls", f"https://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"tls=http://127.0.0.1:{peer}", "--cert-file", certs["server"], "--key-file", certs["server_key"],
         "--client-cert-auth", "--trusted-ca-file", certs["ca"]],
        stdout=open(os.path.join(tmp, "tls.log"), "w"), stderr=subprocess.STDOUT)
    try:
        args = ["--endpoints", f"https://127.0.0.1:{client}", "--prefix", PREFIX, "--cacert", certs["ca"]]
        with open(os.path.join(tmp, "tls-site.toml"), "w") as f:
            f.write(site())
        put = lambda extra: subprocess.run([TERNCTL, "fleet", "put", os.path.join(tmp, "tls-site.toml"), *args, *extra],
                                           capture_output=True, text=True, timeout=60)
        p = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            p = put(["--cert", certs["cert"], "--key", certs["key"]])
            if p.returncode == 0:
                break
            time.sleep(0.5)
        check(p.returncode == 0, f"TLS: fleet put with a client certificate: exit {p.returncode}: {p.stdout} {p.stderr}")
        revision = int(p.stdout.split("revision")[-1]) if p.returncode == 0 else -1
        anonymous = subprocess.run([TERNCTL, "fleet", "get", *args], capture_output=True, text=True, timeout=60)
        check(anonymous.returncode == 69, f"TLS: fleet get without a client certificate: exit {anonymous.returncode}")
        node.stop()
        with open(node.config) as f:
            text = f.read()
        start = text.index("[fleet]")
        end = text.index("[[vip]]")
        text = (text[:start] + f'[fleet]\nendpoints = ["https://{node.link}.1:{client}"]\nprefix = "{PREFIX}"\nnode = "{node.name}"\n'
                f'cache = "{node.cache}-tls"\nca_file = "{certs["ca"]}"\ncert_file = "{certs["cert"]}"\nkey_file = "{certs["key"]}"\n'
                + text[end:])
        with open(node.config, "w") as f:
            f.write(text)
        node.start(ternd)
        check(wait(lambda: node.status().get("fleet", {}).get("revision") == revision, 10) and
              f"fleet: site VIPs from etcd, revision {revision}" in node.text(),
              f"TLS: the node did not run revision {revision}: {node.status().get('fleet')} {node.text()[-500:]}")
        if p.returncode == 0 and anonymous.returncode == 69:
            print(f"ok: TLS with client certificates (openssl-made, etcd --client-cert-auth): fleet put with them wrote "
                  f"revision {revision}, without them etcd refused; {node.name} over https runs it", flush=True)
    finally:
        etcd.kill()
        etcd.wait()


def main(ternd):
    global TERNCTL
    TERNCTL = os.path.abspath(os.path.join(os.path.dirname(ternd), "ternctl"))
    tmp = tempfile.mkdtemp(prefix="tern-fleet-")
    os.makedirs("/run/tern", exist_ok=True)
    teardown_namespaces()
    etcd, nodes, servers = None, {}, []
    try:
        setup_namespaces()
        servers = listeners()
        etcd = Etcd(tmp)
        check(wait(lambda: fleet(etcd, "status").returncode in (0, 1), 30, 0.3), "etcd cluster did not come up")
        revision = put(etcd, tmp, site())
        replay = os.path.join(tmp, "in.pcap")
        make_pcap.write_frames(replay, [bytes(f) for f in make_pcap.demo_frames()])
        for i, name in enumerate(NODES, start=1):
            nodes[name] = Node(name, i, ternd, etcd, tmp, replay=replay if name == "lb1" else None)
        all_nodes = list(nodes.values())
        check(all("fleet: site VIPs from etcd" in n.text() for n in all_nodes), "a node did not start from etcd")
        check(wait(lambda: agree(all_nodes, revision), 10), f"start: nodes disagree: {fingerprints(all_nodes)}")

        # 1. A put reaches every node.
        started = time.monotonic()
        revision = put(etcd, tmp, site(backends=(BACKEND, SECOND)))
        reached = wait(lambda: agree(all_nodes, revision), 5)
        took = time.monotonic() - started
        check(reached and len(nodes["lb1"].backends()) == 2, f"put: not on every node after 5 s: {[n.status().get('fleet') for n in all_nodes]}")
        st = fleet(etcd, "status")
        check(st.returncode == 0 and f"vip {VIP}: fingerprint" in st.stdout and "3 live node(s)" in st.stdout,
              f"fleet status: exit {st.returncode}: {st.stdout} {st.stderr}")
        # A put from a copy edited at an older revision is refused: it would overwrite a change unseen.
        stale = os.path.join(tmp, "stale.toml")
        with open(stale, "w") as f:
            f.write(f"# tern fleet revision {revision - 1}\n" + site())
        p = fleet(etcd, "put", stale)
        check(p.returncode == 1 and f"changed since revision {revision - 1} (now {revision})" in p.stderr
              and agree(all_nodes, revision), f"stale put: exit {p.returncode}: {p.stderr}")
        print(f"ok: fleet put of revision {revision} ran on all three nodes {took:.2f} s after the put (equal fingerprints); "
              "fleet status agrees", flush=True)

        # 2. A fleet drain reaches every node, and its end too.
        started = time.monotonic()
        check(fleet(etcd, "drain", SECOND).returncode == 0, "fleet drain failed")
        drained = wait(lambda: all(n.backends().get(SECOND, {}).get("state") == "draining" for n in all_nodes), 5)
        took = time.monotonic() - started
        check(drained, f"fleet drain: {[n.backends().get(SECOND, {}).get('state') for n in all_nodes]}")
        check(fleet(etcd, "undrain", SECOND).returncode == 0, "fleet undrain failed")
        check(wait(lambda: all(n.backends().get(SECOND, {}).get("state") == "active" for n in all_nodes), 5),
              "fleet undrain did not reach every node")
        print(f"ok: fleet drain reached every node in {took:.2f} s; fleet undrain ended it everywhere", flush=True)

        # 3. Invalid documents.
        bad = os.path.join(tmp, "bad.toml")
        with open(bad, "w") as f:
            f.write(site().replace("port = 80", "port = 99999"))
        p = fleet(etcd, "put", bad)
        check(p.returncode == 78 and "vip[0].port: must be in 0...65535, got 99999" in p.stderr,
              f"fleet put of an invalid document: exit {p.returncode}: {p.stderr}")
        subprocess.run(["etcdctl", "--endpoints", etcd.endpoints(), "put", f"{PREFIX}/config", site().replace("port = 80", "port = 99999")],
                       check=True, capture_output=True, env=dict(os.environ, ETCDCTL_API="3"))
        refused = wait(lambda: all("99999" in n.status().get("fleet", {}).get("refused", "") for n in all_nodes), 5)
        check(refused and all(n.proc.poll() is None for n in all_nodes) and agree(all_nodes, revision),
              f"written around: {[n.status().get('fleet') for n in all_nodes]}")
        st = fleet(etcd, "status")
        check(st.returncode == 1 and "BEHIND" in st.stdout and "refused the newest document" in st.stdout,
              f"fleet status after a refused document: exit {st.returncode}: {st.stdout}")
        revision = put(etcd, tmp, site(backends=(BACKEND, SECOND)))
        check(wait(lambda: agree(all_nodes, revision), 5), "a good document after a refused one did not arrive")
        print("ok: an invalid document: fleet put refused it (78, the key and line named); written around it with "
              "etcdctl, every node refused it, kept running its revision and said why; the next good put arrived", flush=True)

        # 4. One member frozen (it takes connections and never answers: calls to it time out), then
        # killed: nothing changes.
        os.kill(etcd.procs["e3"].pid, signal.SIGSTOP)
        revision = put(etcd, tmp, site(backends=(BACKEND, SECOND), extra='hash = "source"\n'))
        check(wait(lambda: agree(all_nodes, revision), 10), f"one member frozen: {[n.status().get('fleet') for n in all_nodes]}")
        etcd.kill("e3")
        revision = put(etcd, tmp, site(backends=(BACKEND, SECOND)))
        check(wait(lambda: agree(all_nodes, revision), 8), f"one member down: {[n.status().get('fleet') for n in all_nodes]}")
        print("ok: one etcd member frozen (SIGSTOP), then killed: puts still reached every node", flush=True)

        # 5. Quorum lost: forwarding goes on, status says so; a node started meanwhile uses its cache.
        etcd.kill("e2")
        check(wait(lambda: all(n.status().get("fleet", {}).get("reachable") is False for n in all_nodes), 10),
              f"quorum lost: status {[n.status().get('fleet') for n in all_nodes]}")
        before = nodes["lb1"].status()
        forwarded = lambda: sum(int(v) for k, v in json.loads(subprocess.run(
            [TERNCTL, "stats", "--json", "--socket", nodes["lb1"].sock], capture_output=True, text=True).stdout).items()
            if k == "forwarded")
        f0 = forwarded()
        time.sleep(1)
        f1 = forwarded()
        text = subprocess.run([TERNCTL, "status", "--socket", nodes["lb3"].sock], capture_output=True, text=True).stdout
        check(f1 > f0 and "etcd UNREACHABLE" in text and before.get("table_fingerprints"),
              f"quorum lost: forwarded {f0} -> {f1}; status: {text}")
        body = nodes["lb1"].metrics()
        p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
        check("tern_fleet_reachable 0" in body and f"tern_fleet_revision {revision}" in body and p.returncode == 0,
              f"quorum lost: metrics: promtool exit {p.returncode} {p.stdout[-300:]}; fleet lines: "
              f"{[line for line in body.splitlines() if line.startswith('tern_fleet')]}")
        nodes["lb3"].stop(signal.SIGKILL)
        nodes["lb3"].start(ternd)
        check(f"fleet: site VIPs from the cache {nodes['lb3'].cache}, revision {revision}" in nodes["lb3"].text(),
              f"lb3 started while etcd had no quorum: {nodes['lb3'].text()[-600:]}")
        check(wait(lambda: len(set(fingerprints(all_nodes).values())) == 1, 5), f"cache start: {fingerprints(all_nodes)}")
        print(f"ok: etcd quorum lost: lb1 kept forwarding ({f1 - f0} packets in a second), status said etcd UNREACHABLE; "
              "lb3 restarted meanwhile ran the cached document and said so", flush=True)
        etcd.start("e2")
        etcd.start("e3")
        check(wait(lambda: fleet(etcd, "status").returncode in (0, 1), 30, 0.3), "etcd quorum did not come back")
        revision = put(etcd, tmp, site(backends=(BACKEND, SECOND), extra='hash = "source"\n'))
        check(wait(lambda: agree(all_nodes, revision), 10), f"quorum back: {[n.status().get('fleet') for n in all_nodes]}")
        check(all(n.status().get("fleet", {}).get("reachable") for n in all_nodes), "quorum back: a node still says unreachable")
        check("tern_fleet_reachable 1" in nodes["lb1"].metrics(), "quorum back: tern_fleet_reachable is not 1")
        print("ok: quorum back: every node reachable again, and a change made then arrived everywhere", flush=True)

        # 7. Health by quorum (before 6: it needs all three nodes).
        cut(nodes["lb3"], True)
        check(wait(lambda: f"{BACKEND} of {VIP} is DOWN here" in nodes["lb3"].text(), 5), "lb3's checks did not see the cut")
        time.sleep(1)
        one = [n.backends().get(BACKEND, {}).get("state") for n in all_nodes]
        check(all(s == "active" for s in one) and len(set(fingerprints(all_nodes).values())) == 1,
              f"one node's checks failing changed a table: {one} {fingerprints(all_nodes)}")
        cut(nodes["lb2"], True)
        check(wait(lambda: all(n.backends().get(BACKEND, {}).get("state") == "down" for n in all_nodes), 8),
              f"two of three down: {[n.backends().get(BACKEND, {}).get('state') for n in all_nodes]}")
        check(len(set(fingerprints(all_nodes).values())) == 1, f"two of three down: tables differ {fingerprints(all_nodes)}")
        for n in (nodes["lb2"], nodes["lb3"]):
            cut(n, False)
        check(wait(lambda: all(n.backends().get(BACKEND, {}).get("state") == "active" for n in all_nodes), 8), "checks back: not up")
        print("ok: health by quorum: lb3's checks failing alone changed no table; lb2 and lb3 together took the backend "
              "out on all three nodes (equal fingerprints); checks passing again brought it back", flush=True)

        # 6. A killed node leaves PREFIX/nodes/ when its lease ends.
        nodes["lb2"].stop(signal.SIGKILL)
        started = time.monotonic()
        gone = wait(lambda: "2 live node(s)" in fleet(etcd, "status").stdout, 10, 0.2)
        check(gone, f"lb2 killed: {fleet(etcd, 'status').stdout}")
        print(f"ok: lb2 killed: its nodes/ entry went {time.monotonic() - started:.1f} s later (lease 2 s)", flush=True)

        # 8. TLS.
        test_tls(ternd, tmp, nodes["lb1"])
    finally:
        for n in nodes.values():
            n.stop()
        for s in servers:
            s.kill()
        if etcd:
            etcd.stop()
        teardown_namespaces()
        shutil.rmtree(tmp, ignore_errors=True)
    if test_ternd.FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
