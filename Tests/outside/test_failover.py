#!/usr/bin/python3
"""Failures end to end, with the software operators run: nginx and unbound backends, two Tern
nodes announcing through ExaBGP (`ternctl bgp-feed`), a BIRD router that spreads traffic over both
with ECMP (`merge paths`), curl, dig and wrk as clients. The topology is test_netns.py's (lb1's
kernel sees its link only through ternd's host path, so its health checks and its BGP session go
through ternd too); here nothing routes the VIPs but BGP.

Checked, with the kernel's own clients:
1. Both nodes announce both VIPs: the router holds two next hops; HTTP and DNS reach both backends.
2. b2's nginx killed, frozen (SIGSTOP) and its link cut (the router drops everything toward it):
   each time both nodes take b2 out (logged DOWN), new requests all reach b1, and keep-alive
   connections to b1 never notice; restarted / resumed / reconnected, b2 serves again after `rise`.
3. b2's unbound killed: the DNS VIP's queries all reach b1's unbound.
4. Every backend of the HTTP VIP down: both nodes withdraw it and the router forgets the prefix
   (the DNS VIP stays); one backend back: announced again.
5. SIGTERM to lb1 under a wrk load of new connections (shutdown_drain_s = 3): lb1 withdraws first,
   the router moves the traffic to lb2, and wrk sees no error; keep-alive connections carry on
   through lb2 (same Maglev table, same backend).
6. SIGKILL to lb2's ternd: its feed withdraws lb2's prefixes (the BGP session stays up: the
   withdrawal came from the feed) and the router drops them.

Needs root, nginx, unbound, dnsutils (dig), wrk, bird2, exabgp, curl, and what test_netns.py needs.
Usage: test_failover.py PATH/TO/ternd
"""
import contextlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_netns as net  # noqa: E402  (topology, nodes, namespaces)
import test_ternd  # noqa: E402
from test_ternd import check  # noqa: E402

WEB, DNS = "192.0.2.10", "192.0.2.53"
WEB_NAME, DNS_NAME = f"{WEB}:80/tcp", f"{DNS}:53/udp"
BACKENDS = {b: v4 for b, (v4, _) in net.BACKENDS.items()}
INTERVAL_MS, FALL, RISE = 200, 2, 2
AS_ROUTER, AS_NODES = 65000, 65001


def config_text(lb):
    _, v4, _ = net.LINKS[lb]
    text = (f'[control]\nsocket = "/run/tern/failover-{os.getpid()}-{lb}.sock"\nshutdown_drain_s = 3\n'
            f'[node]\nname = "{lb}"\ntunnel_source_v4 = "{v4}.2"\n'
            '[dataplane]\nflow_table_entries = 4096\n'
            '[[port]]\ndevice = "net_af_packet0"\nmtu = 1500\n'
            + (f'host_interface = "{net.HOST_INTERFACE}"\ngateway = "{v4}.1"\n' if lb == net.HOST_PATH_NODE
               else f'gateway_mac = "{net.mac_of(net.NS["rt"], "rt-" + lb)}"\n')
            + '[maglev]\ntable_size = 1009\n')
    timing = f"interval_ms = {INTERVAL_MS}\ntimeout_ms = 150\nrise = {RISE}\nfall = {FALL}\n"
    for address, port, proto, check_ in ((WEB, 80, "tcp", 'check = "http"\npath = "/health"\n'),
                                         (DNS, 53, "udp", 'check = "dns"\n')):
        text += f'[[vip]]\naddress = "{address}"\nport = {port}\nprotocol = "{proto}"\n[vip.health]\n{check_}{timing}'
        if proto == "tcp":
            text += '[vip.bgp]\nmed = 10\ncommunities = "65001:80"\n'
        for b in BACKENDS.values():
            text += f'[[vip.backend]]\naddress = "{b}"\n'
    return text


class Backend:
    """nginx (one process: master_process off) and unbound in a backend namespace."""

    def __init__(self, name, tmp):
        self.name, self.tmp = name, os.path.join(tmp, name)
        os.makedirs(self.tmp, exist_ok=True)
        self.nginx = self.unbound = None

    def start_nginx(self):
        conf = os.path.join(self.tmp, "nginx.conf")
        temps = "".join(f"{k}_temp_path {self.tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(conf, "w") as f:
            f.write(f"daemon off;\nmaster_process off;\npid {self.tmp}/nginx.pid;\nerror_log {self.tmp}/nginx.log;\n"
                    "events { worker_connections 1024; }\n"
                    f"http {{\n access_log off;\n {temps} keepalive_timeout 300s;\n keepalive_requests 100000;\n"
                    f" server {{\n  listen 80 backlog=1024;\n  location /health {{ return 200 \"ok\\n\"; }}\n"
                    f"  location / {{ return 200 \"{self.name}\\n\"; }}\n }}\n}}\n")
        self.nginx = subprocess.Popen(["ip", "netns", "exec", net.NS[self.name], "nginx", "-c", conf, "-p", self.tmp],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: listening(self.name, "tcp", 80), 10, f"{self.name}: nginx did not listen")

    def start_unbound(self):
        conf = os.path.join(self.tmp, "unbound.conf")
        with open(conf, "w") as f:
            # Answers from local data only: "." is a static zone, so the health check's ". NS"
            # and the clients' who.tern.test TXT are answered at once, without any upstream.
            f.write(f'server:\n interface: {DNS}\n interface: {BACKENDS[self.name]}\n port: 53\n do-daemonize: no\n'
                    f' username: ""\n chroot: ""\n directory: "{self.tmp}"\n pidfile: ""\n use-syslog: no\n logfile: ""\n'
                    ' do-ip6: no\n access-control: 0.0.0.0/0 allow\n local-zone: "." static\n'
                    f' local-data: "who.tern.test. 0 IN TXT {self.name}"\n'
                    'remote-control:\n control-enable: no\n')
        self.unbound = subprocess.Popen(["ip", "netns", "exec", net.NS[self.name], "unbound", "-d", "-c", conf],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: listening(self.name, "udp", 53), 10, f"{self.name}: unbound did not listen")

    def stop(self):
        for p in (self.nginx, self.unbound):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def listening(ns, proto, port):
    out = net.sh("ss", "-Hln" + ("t" if proto == "tcp" else "u"), f"sport = :{port}", ns=net.NS[ns])
    return bool(out.strip())


def server_pid(popen, program):
    """The server's own pid (`ip netns exec` execs it, so it is the Popen's)."""
    with open(f"/proc/{popen.pid}/comm") as f:
        check(f.read().strip().startswith(program), f"{program} is not pid {popen.pid}")
    return popen.pid


def wait_until(condition, timeout, message):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    check(False, message)
    return False


def curl(path="/"):
    p = subprocess.run(["ip", "netns", "exec", net.NS["cl"], "curl", "-s", "-m", "2", f"http://{WEB}{path}"],
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else f"error {p.returncode}"


def dig():
    p = subprocess.run(["ip", "netns", "exec", net.NS["cl"], "dig", f"@{DNS}", "who.tern.test", "TXT", "+short", "+time=1",
                        "+tries=1"], capture_output=True, text=True)
    return p.stdout.strip().strip('"') if p.returncode == 0 and p.stdout.strip() else f"error {p.returncode}"


def answers(ask, count):
    return [ask() for _ in range(count)]


class KeepAlive:
    """HTTP/1.1 keep-alive connections from the client; each request returns the backend's name."""

    def __init__(self, count):
        self.conns = []
        for _ in range(count):
            c = http.client.HTTPConnection(WEB, 80, timeout=3)
            with net.in_netns(net.NS["cl"]):
                c.connect()
            self.conns.append(c)
        self.backends = self.ask()

    def ask(self):
        names = []
        for c in self.conns:
            try:
                c.request("GET", "/")
                names.append(c.getresponse().read().decode().strip())
            except (OSError, http.client.HTTPException) as e:
                names.append(f"error {e}")
        return names

    def check_on_b1(self, when):
        """The connections on b1 still answer, from b1."""
        now = self.ask()
        kept = [now[i] for i, b in enumerate(self.backends) if b == "b1"]
        check(kept and set(kept) == {"b1"}, f"keep-alive to b1 {when}: {self.backends} -> {now}")
        return len(kept)


class Router:
    """BIRD on the router: a BGP session with each node's ExaBGP, ECMP into the kernel."""

    def __init__(self, tmp):
        self.ctl = os.path.join(tmp, "router.ctl")
        conf = os.path.join(tmp, "router.conf")
        peers = "".join(
            f"protocol bgp {lb} {{ local {v4}.1 as {AS_ROUTER}; neighbor {v4}.2 as {AS_NODES}; hold time 6; "
            "ipv4 { import all; export none; }; }\n" for lb, (_, v4, _) in net.LINKS.items() if lb in ("lb1", "lb2"))
        with open(conf, "w") as f:
            f.write(f"router id {net.LINKS['lb1'][1]}.1;\nprotocol device {{}}\n"
                    "protocol kernel { ipv4 { export all; }; merge paths on; }\n" + peers)
        net.sh("bird", "-c", conf, "-s", self.ctl, "-P", os.path.join(tmp, "router.pid"), ns=net.NS["rt"])

    def next_hops(self, address):
        """The kernel's next hops for a VIP (set by BIRD)."""
        out = net.sh("ip", "route", "show", f"{address}/32", ns=net.NS["rt"])
        return sorted(set(re.findall(r"via (\S+)", out)))

    def birdc(self, *args):
        return subprocess.run(["ip", "netns", "exec", net.NS["rt"], "birdc", "-s", self.ctl, *args],
                              capture_output=True, text=True).stdout


def start_exabgp(lb, tmp, ternctl):
    _, v4, _ = net.LINKS[lb]
    conf = os.path.join(tmp, f"exabgp-{lb}.conf")
    with open(conf, "w") as f:
        f.write(f"process tern {{\n run {ternctl} bgp-feed --socket /run/tern/failover-{os.getpid()}-{lb}.sock "
                f"--interval 0.2;\n encoder text;\n}}\n"
                f"neighbor {v4}.1 {{\n router-id {v4}.2;\n local-address {v4}.2;\n local-as {AS_NODES};\n peer-as {AS_ROUTER};\n"
                f" hold-time 6;\n family {{ ipv4 unicast; }}\n api {{ processes [ tern ]; }}\n}}\n")
    log = open(os.path.join(tmp, f"exabgp-{lb}.log"), "w")
    return subprocess.Popen(["ip", "netns", "exec", net.NS[lb], "env", "exabgp.daemon.user=root", "exabgp.log.destination=stdout",
                             "exabgp", conf], stdout=log, stderr=subprocess.STDOUT, cwd=tmp)


def downs(node, backend, vip, word):
    return sum(f"{backend}" in line and vip in line and word in line for line in node.log)


def take_out_and_back(nodes, keep, what, fail, restore, vip=WEB_NAME, ask=curl, backend="b2"):
    """`fail` b2 (a server or its link): both nodes log it DOWN, new requests reach b1 only and the
    keep-alive connections to b1 carry on; `restore`: both log it up and it serves again."""
    address = BACKENDS[backend]
    before = {lb: downs(n, address, vip, "is DOWN") for lb, n in nodes.items()}
    ups = {lb: downs(n, address, vip, "is up") for lb, n in nodes.items()}
    start = time.monotonic()
    fail()
    took = {}
    for lb, n in nodes.items():
        ok = n.wait_for(f"{address} of {vip} is DOWN", before[lb] + 1, timeout=15)
        took[lb] = time.monotonic() - start
        check(ok, f"{what}: {lb} did not take {backend} out: {''.join(n.log)[-600:]}")
    during = answers(ask, 16)
    kept = keep.check_on_b1(f"while {what}")
    restore()
    for lb, n in nodes.items():
        check(n.wait_for(f"{address} of {vip} is up", ups[lb] + 1, timeout=15), f"{what}: {lb} did not bring {backend} back")
    after = answers(ask, 24)
    check(set(during) == {"b1"}, f"{what}: new requests while {backend} was out: {during}")
    check(set(after) == {"b1", "b2"}, f"{what}: requests after {backend} came back: {after}")
    bound = INTERVAL_MS * FALL / 1000
    print(f"ok: {what}: out on lb1 after {took['lb1']:.1f} s, on lb2 after {took['lb2']:.1f} s (interval x fall = {bound:.1f} s "
          f"plus the timeout); 16 new requests all to b1, {kept} keep-alive connections to b1 untouched; back after rise",
          flush=True)


def main(ternd):
    tmp = tempfile.mkdtemp(prefix="tern-failover-")
    ternctl = os.path.abspath(os.path.join(os.path.dirname(ternd), "ternctl"))
    net.teardown()
    nodes, backends, speakers = {}, {}, []
    try:
        net.setup(ternctl)
        rt = net.NS["rt"]
        # Only BGP routes the VIPs here; the router hashes flows on ports too (as ECMP routers do).
        net.sh("ip", "route", "del", "192.0.2.0/24", ns=rt)
        net.sh("sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1", ns=rt)
        for b in BACKENDS:
            net.sh("ip", "addr", "add", f"{DNS}/32", "dev", "lo", ns=net.NS[b])  # the web VIP is one of test_netns's
            net.attach_backend(ternctl, net.NS[b], b)  # again: the DNS VIP is a local address now
            backends[b] = Backend(b, tmp)
            backends[b].start_nginx()
            backends[b].start_unbound()
        for lb in ("lb1", "lb2"):
            nodes[lb] = net.Node(ternd, lb, tmp, text=config_text(lb))
        router = Router(tmp)
        for lb in nodes:
            speakers.append(start_exabgp(lb, tmp, ternctl))
        gateways = sorted(f"{net.LINKS[lb][1]}.2" for lb in nodes)
        wait_until(lambda: router.next_hops(WEB) == gateways and router.next_hops(DNS) == gateways, 60,
                   f"router: next hops {router.next_hops(WEB)} / {router.next_hops(DNS)}, expected {gateways}: "
                   f"{router.birdc('show', 'protocols')}")
        attrs = router.birdc("show", "route", f"{WEB}/32", "all")
        check("BGP.med: 10" in attrs and "(65001,80)" in attrs, f"router: {WEB}/32 without the configured med/community: {attrs}")
        web, dns = answers(curl, 24), answers(dig, 16)
        check(set(web) == {"b1", "b2"} and set(dns) == {"b1", "b2"}, f"start: HTTP answers {web}, DNS answers {dns}")
        print(f"ok: ECMP: the router holds {WEB}/32 and {DNS}/32 via both nodes (med 10, community 65001:80 from the "
              "config); curl and dig reach both backends", flush=True)

        keep = KeepAlive(12)
        check("b1" in keep.backends, f"keep-alive connections: {keep.backends}")
        b2 = backends["b2"]

        def kill_nginx():
            b2.nginx.kill()
            b2.nginx.wait()
        take_out_and_back(nodes, keep, "b2's nginx killed", kill_nginx, b2.start_nginx)
        take_out_and_back(nodes, keep, "b2's nginx frozen (SIGSTOP)", lambda: os.kill(server_pid(b2.nginx, "nginx"), signal.SIGSTOP),
                          lambda: os.kill(b2.nginx.pid, signal.SIGCONT))
        cut = ('table inet tern_cut {\n chain cut { type filter hook forward priority 0; oifname "rt-b2" drop; '
               'iifname "rt-b2" drop; }\n}\n')
        take_out_and_back(nodes, keep, "b2's link cut", lambda: subprocess.run(
            ["ip", "netns", "exec", rt, "nft", "-f", "-"], input=cut, text=True, check=True),
            lambda: net.sh("nft", "delete", "table", "inet", "tern_cut", ns=rt))

        def kill_unbound():
            b2.unbound.kill()
            b2.unbound.wait()
        take_out_and_back(nodes, keep, "b2's unbound killed", kill_unbound, b2.start_unbound, vip=DNS_NAME, ask=dig)

        # Every backend of the HTTP VIP down: withdrawn by both nodes; the DNS VIP stays.
        for b in backends.values():
            b.nginx.kill()
            b.nginx.wait()
        gone = wait_until(lambda: router.next_hops(WEB) == [], 15, f"all down: router still routes {WEB}: {router.next_hops(WEB)}")
        check(router.next_hops(DNS) == gateways, f"all down: the DNS VIP lost its routes too: {router.next_hops(DNS)}")
        # A VIP that is down does not answer pings either (the router reaches lb2 over a route of its own).
        lb2_address = f"{net.LINKS['lb2'][1]}.2"
        net.sh("ip", "route", "add", f"{WEB}/32", "via", lb2_address, "metric", "1000", ns=rt)
        silent = subprocess.run(["ip", "netns", "exec", rt, "ping", "-c", "2", "-W", "1", WEB], capture_output=True).returncode
        backends["b1"].start_nginx()
        back = wait_until(lambda: router.next_hops(WEB) == gateways, 15, f"one up: {WEB} not announced again")
        answered = subprocess.run(["ip", "netns", "exec", rt, "ping", "-c", "1", "-W", "2", WEB], capture_output=True).returncode
        net.sh("ip", "route", "del", f"{WEB}/32", "via", lb2_address, "metric", "1000", ns=rt)
        check(silent != 0 and answered == 0, f"ping to {WEB}: while down exit {silent} (want no answer), once up exit {answered}")
        if gone and back and silent != 0 and answered == 0:
            print(f"ok: all down: both nodes withdrew {WEB}/32 and the router dropped it ({DNS}/32 stayed), and {WEB} "
                  "answered no ping; b1's nginx back: announced again and answering pings", flush=True)
        ups = {lb: downs(n, BACKENDS["b2"], WEB_NAME, "is up") for lb, n in nodes.items()}
        backends["b2"].start_nginx()
        for lb, n in nodes.items():
            check(n.wait_for(f"{BACKENDS['b2']} of {WEB_NAME} is up", ups[lb] + 1, timeout=15), f"{lb}: b2 did not come back")
        # New keep-alive connections (the old ones went with b1's nginx), placed while both
        # backends are up: a node that never saw them picks the same backend (a connection placed
        # while b2 was down may move to b2 on another node: the drain caveat in the README).
        keep = KeepAlive(12)
        check({"b1", "b2"} == set(keep.backends), f"keep-alive connections: {keep.backends}")

        # SIGTERM to lb1 under load: it withdraws, keeps forwarding 3 s, then stops.
        wrk = subprocess.Popen(["ip", "netns", "exec", net.NS["cl"], "wrk", "-t2", "-c16", "-d8s", "-H", "Connection: close",
                                f"http://{WEB}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(2.5)
        nodes["lb1"].proc.send_signal(signal.SIGTERM)
        moved = wait_until(lambda: router.next_hops(WEB) == [f"{net.LINKS['lb2'][1]}.2"], 3,
                           f"SIGTERM: the router did not move {WEB} to lb2 within the drain: {router.next_hops(WEB)}")
        stats, err = nodes.pop("lb1").stop()
        out, _ = wrk.communicate(timeout=60)
        requests = int(m.group(1)) if (m := re.search(r"(\d+) requests in", out)) else 0
        clean = requests > 0 and "Socket errors" not in out and "Non-2xx" not in out
        check(clean, f"SIGTERM under wrk: {out}")
        check(stats.get("forwarded", 0) > 0 and stats.get("tx_failed") == 0 and stats.get("mbufs_in_use") == 0, f"lb1: {stats}")
        kept = keep.check_on_b1("after lb1 stopped (now through lb2)")
        if moved and clean:
            print(f"ok: SIGTERM to lb1 under wrk: withdrawn within the 3 s drain, the router moved the traffic to lb2; "
                  f"{requests} requests, no socket error, no non-2xx; {kept} keep-alive connections to b1 carried on "
                  "through lb2", flush=True)

        # SIGKILL to lb2's ternd: its feed withdraws; the BGP session itself stays up.
        lb2 = nodes.pop("lb2")
        lb2.proc.kill()
        lb2.proc.wait()
        test_ternd.remove_runtime_dirs(lb2.cmd)
        withdrawn = wait_until(lambda: router.next_hops(WEB) == [] and router.next_hops(DNS) == [], 10,
                               f"SIGKILL: the router still routes via lb2: {router.next_hops(WEB)} {router.next_hops(DNS)}")
        session = router.birdc("show", "protocols", "lb2")
        check("Established" in session, f"SIGKILL: lb2's BGP session: {session}")
        if withdrawn and "Established" in session:
            print("ok: SIGKILL to lb2's ternd: its feed withdrew both prefixes (the BGP session stayed up) and the router "
                  "dropped them", flush=True)
    finally:
        for n in nodes.values():
            if n.proc.poll() is None:
                n.proc.kill()
            test_ternd.remove_runtime_dirs(n.cmd)
        for p in speakers:
            p.kill()
        for b in backends.values():
            b.stop()
        net.teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    if test_ternd.FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1])
