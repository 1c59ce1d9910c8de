#!/usr/bin/python3
"""Real clients and servers talk through ternd across network namespaces (L3 DSR end to end).

    client ── router ─┬─ lb1 (ternd on net_af_packet)      backends decapsulate with Tern's backend program,
      (tn-cl)  (tn-rt) ├─ lb2 (ternd, the same config)     hold the VIPs on lo and answer the
                       ├─ b1  (ternctl backend, servers)    client directly through the router
                       └─ b2  (ternctl backend, servers)

The router sends the VIP prefixes to an LB node; ternd (one-armed) tunnels each packet back to the
router toward the chosen backend; the backend's kernel sees the inner packet and replies straight
to the client. lb1's kernel never sees its link (an nftables ingress drop; ternd's AF_PACKET
socket taps frames before it): its addresses live on ternd's host interface (a TAP), so ARP, ND,
pings and TCP to the node itself go through ternd's host path, as on a NIC only DPDK sees. Checked from outside, with the kernel's own TCP/UDP/ICMP:
0. Host path: the router resolves lb1's IPv4 and IPv6 address and pings them; TCP to them reaches
   a service on lb1 itself; BIRD on lb1 holds a BGP session with BIRD on the router over it and
   announces the VIP prefixes `ternctl bgp-feed --bird-include` gives it. lb1 learns the router's MAC (`gateway`) from its kernel and follows a
   change of it under live connections; a flood of datagrams to lb1 itself leaves a VIP transfer
   beside it intact; at the end every host-bound frame is accounted for (to the kernel or
   host_dropped).
1. TCP to an IPv4 VIP (4in4), an IPv6 VIP (6in6), an IPv4 VIP with IPv6 backends (4in6) and an
   IPv6 VIP with IPv4 backends (6in4); UDP to a port-0 VIP over GUE. Every exchange is answered,
   each connection by one backend, and the flows spread over both backends.
2. Every link has MTU 1500: a 1 MiB transfer (4in4, 6in6, 4in6) starts with full-size segments
   that do not fit the tunnel; ternd answers them with ICMP "fragmentation needed" / ICMPv6
   "packet too big", the client's kernel lowers its path MTU, and the data arrives whole.
   The way back from the router to the client carries 1400 bytes: a 1 MiB download (4in4, 6in6)
   completes only because ternd sends the router's ICMP errors, addressed to the VIP, on to the
   backend of the flow they quote, whose kernel then lowers its path MTU.
3. ping and ping6 to VIP addresses are answered by ternd itself (verdict `replied`). Over a path
   of 1,400 bytes, `ping -6 -s 4000` and 4,000-byte UDP datagrams to the IPv6 VIP leave the client
   in fragments; ternd sends each datagram's fragments to one backend, which reassembles and answers.
   With the router dropping ICMP too-big messages toward the client, a 1 MiB upload through lb2
   stalls although lb2 clamps the SYN's MSS (the client sizes its segments by the backend's
   SYN-ACK, which in DSR bypasses ternd); with the backends advertising the tunnel's MSS
   (route advmss) uploads complete (4in4, 6in6).
4. Scale-out: open connections through lb1, move the VIP routes to lb2 (as ECMP does when a node
   joins or leaves): every connection carries on, because lb2's Maglev table picks the same backend.
5. Drain on reload: SIGHUP with b1 at weight 0: connections on b1 carry on, new ones go to b2,
   also new connections from source ports whose previous connection (reset) was on b1 (SYN rule).
6. ExaBGP on lb1, fed by `ternctl bgp-feed`, announces the VIPs to BIRD on the router; when lb1's
   ternd stops, the feed withdraws them (fail closed) and the router drops the route.
7. On SIGTERM: RX equals the sum of verdicts, nothing malformed, nothing refused by TX, mbufs 0.
8. Jumbo frames: the client's, lb2's and the backends' links at MTU 9000, ternd at mtu 9000 on
   net_af_packet (framesz 9216), no clamp_mss: 1 MiB uploads (4in4, 6in6) cross the tunnel in
   9,014-byte frames after ternd's ICMP settles the client's path MTU at 8,980 / 8,960.

Needs root, iproute2, ethtool, ping, nftables, bird2, exabgp, libbpf-dev and the clang that ships beside swift.
Usage: test_netns.py PATH/TO/ternd   (or --serve NAME inside a backend namespace)
"""
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_ternd  # noqa: E402  (check, eal arguments, EAL runtime clean-up)
from test_ternd import check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NS = {n: f"tn-{n}" for n in ("cl", "rt", "lb1", "lb2", "b1", "b2")}
GUE_PORT = 6080
UDP_PORT = 5353
TCP_PORT = 80
# Per link: (namespace, interface, IPv4/24 prefix, IPv6/64 prefix); the router is .1 / ::1 on each.
LINKS = {"cl": ("cl", "10.99.1", "fd00:99:1::"), "lb1": ("lb1", "10.99.2", "fd00:99:2::"),
         "lb2": ("lb2", "10.99.5", "fd00:99:5::"), "b1": ("b1", "10.99.3", "fd00:99:3::"),
         "b2": ("b2", "10.99.4", "fd00:99:4::")}
VIPS = {"4in4": ("192.0.2.10", "v4"), "6in6": ("2001:db8::10", "v6"), "4in6": ("192.0.2.30", "v6"),
        "6in4": ("2001:db8::30", "v4"), "gue": ("192.0.2.20", "v4")}
BACKENDS = {"b1": ("10.99.3.2", "fd00:99:3::2"), "b2": ("10.99.4.2", "fd00:99:4::2")}
# The LB node whose kernel never sees its link: its host stack talks through ternd's TAP.
HOST_PATH_NODE = "lb1"
# The VIP whose backends ternd health-checks (TCP to port 80, every 200 ms).
HEALTH_CHECKED = "4in4"
HOST_INTERFACE = "tern0"


def sh(*args, ns=None, check_rc=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check_rc and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def teardown():
    for name in NS.values():
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def attach_backend(ternctl, ns, interface):
    """Tern's backend program on a backend's link (`ternctl backend attach`): it strips the tunnels
    for the addresses the namespace has now (the VIPs on lo: add them first)."""
    sh(ternctl, "backend", "attach", "--interface", interface, "--gue-port", str(GUE_PORT), ns=ns)


def mac_of(ns, ifname):
    return json.loads(sh("ip", "-j", "link", "show", ifname, ns=ns))[0]["address"]


def setup(ternctl):
    for name in NS.values():
        sh("ip", "netns", "add", name)
        for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad", "net.ipv4.conf.all.rp_filter",
                    "net.ipv4.conf.default.rp_filter"):
            sh("sysctl", "-qw", f"{key}=0", ns=name)
        sh("ip", "link", "set", "lo", "up", ns=name)
    # test_drain binds these source ports itself; an ephemeral connection on one of them made
    # bind fail (EADDRINUSE) in CI.
    sh("sysctl", "-qw", f"net.ipv4.ip_local_reserved_ports={DRAIN_PORTS.start}-{DRAIN_PORTS.stop - 1}", ns=NS["cl"])
    rt = NS["rt"]
    for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
        sh("sysctl", "-qw", f"{key}=1", ns=rt)
    for link, (ns, v4, v6) in LINKS.items():
        # MTU 1500 everywhere, as in most networks: full-size client packets do not fit the tunnel,
        # and only ternd's ICMP "too big" replies let the clients' path MTU discovery adapt.
        sh("ip", "link", "add", link, "netns", NS[ns], "type", "veth", "peer", "name", f"rt-{link}", "netns", rt)
        sh("ip", "addr", "add", f"{v4}.1/24", "dev", f"rt-{link}", ns=rt)
        sh("ip", "addr", "add", f"{v6}1/64", "dev", f"rt-{link}", "nodad", ns=rt)
        sh("ip", "link", "set", f"rt-{link}", "up", ns=rt)
        # Like a router that is replaced, announce a new MAC (gratuitous ARP, unsolicited NA).
        sh("sysctl", "-qw", f"net.ipv4.conf.rt-{link}.arp_notify=1", f"net.ipv6.conf.rt-{link}.ndisc_notify=1", ns=rt)
        sh("ip", "link", "set", link, "up", ns=NS[ns])
        if link == HOST_PATH_NODE:
            # Only ternd sees this link: AF_PACKET taps frames before the nftables ingress hook,
            # which drops them for the kernel. The node's addresses live on ternd's TAP.
            subprocess.run(["ip", "netns", "exec", NS[ns], "nft", "-f", "-"], check=True, text=True, input=(
                f'table netdev tern_test {{\n chain in {{\n  type filter hook ingress device "{link}" priority 0; policy drop;\n }}\n}}\n'))
            continue
        address_interface(NS[ns], link, v4, v6)
    # The way back to the client carries only 1400 bytes: the router answers the backends' bigger
    # replies with ICMP "fragmentation needed" / "packet too big" addressed to the VIP, which only
    # reach the right backend if ternd steers them by the flow they quote.
    sh("ip", "route", "replace", f"{LINKS['cl'][1]}.0/24", "dev", "rt-cl", "mtu", "lock", "1400", ns=rt)
    sh("ip", "-6", "route", "replace", f"{LINKS['cl'][2]}/64", "dev", "rt-cl", "metric", "256", "mtu", "lock", "1400", ns=rt)
    # veth leaves TCP checksums to "offload"; AF_PACKET (ternd) would see them unfinished: the
    # client's, and the router's own (BGP) toward the host-path node, whose kernel checks them.
    sh("ethtool", "-K", "cl", "tx", "off", ns=NS["cl"])
    sh("ethtool", "-K", f"rt-{HOST_PATH_NODE}", "tx", "off", ns=NS["rt"])
    for b in ("b1", "b2"):
        for address, _ in VIPS.values():
            sh("ip", "addr", "add", f"{address}/{128 if ':' in address else 32}", "dev", "lo", ns=NS[b])
        attach_backend(ternctl, NS[b], b)
    route_vips_via("lb1")


def address_interface(ns, ifname, v4, v6):
    """The node's addresses and default routes toward the router, on `ifname`."""
    sh("ip", "addr", "add", f"{v4}.2/24", "dev", ifname, ns=ns)
    sh("ip", "addr", "add", f"{v6}2/64", "dev", ifname, "nodad", ns=ns)
    sh("ip", "link", "set", ifname, "up", ns=ns)
    sh("ip", "route", "add", "default", "via", f"{v4}.1", ns=ns)
    sh("ip", "-6", "route", "add", "default", "via", f"{v6}1", ns=ns)


def route_vips_via(lb):
    _, v4, v6 = LINKS[lb]
    sh("ip", "route", "replace", "192.0.2.0/24", "via", f"{v4}.2", ns=NS["rt"])
    sh("ip", "-6", "route", "replace", "2001:db8::/64", "via", f"{v6}2", ns=NS["rt"])


def config_text(lb, drained=()):
    _, v4, v6 = LINKS[lb]
    text = (f'[control]\nsocket = "{control_socket(lb)}"\n'
            f'[node]\nname = "{lb}"\ntunnel_source_v4 = "{v4}.2"\ntunnel_source_v6 = "{v6}2"\n'
            '[dataplane]\nflow_table_entries = 4096\n'
            '[[port]]\ndevice = "net_af_packet0"\nmtu = 1500\n'
            # lb2 lowers the MSS of SYNs to what the tunnel carries; lb1 relies on path MTU discovery.
            + ("clamp_mss = true\n" if lb == "lb2" else "")
            # The host-path node learns the router's MAC from its kernel; the other is told it.
            + (f'host_interface = "{HOST_INTERFACE}"\ngateway = "{v4}.1"\n' if lb == HOST_PATH_NODE
               else f'gateway_mac = "{mac_of(NS["rt"], "rt-" + lb)}"\n')
            + '[maglev]\ntable_size = 1009\n')
    for kind, (address, family) in VIPS.items():
        udp = kind == "gue"
        text += (f'[[vip]]\naddress = "{address}"\nport = {0 if udp else TCP_PORT}\nprotocol = "{"udp" if udp else "tcp"}"\n'
                 + (f'encap = "gue"\ngue_port = {GUE_PORT}\n' if udp else ""))
        if kind == HEALTH_CHECKED:
            text += '[vip.health]\ncheck = "tcp"\ninterval_ms = 200\ntimeout_ms = 150\nrise = 2\nfall = 2\n'
        for b, addresses in BACKENDS.items():
            weight = 0 if b in drained else 100
            text += f'[[vip.backend]]\naddress = "{addresses[0 if family == "v4" else 1]}"\nweight = {weight}\n'
    # UDP on the IPv6 VIP's address too: datagrams too big for the client's path arrive in fragments.
    text += f'[[vip]]\naddress = "{VIPS["6in6"][0]}"\nport = {UDP_PORT}\nprotocol = "udp"\n'
    for b, addresses in BACKENDS.items():
        text += f'[[vip.backend]]\naddress = "{addresses[1]}"\nweight = {0 if b in drained else 100}\n'
    return text


class Node:
    """ternd in an LB namespace, one-armed on net_af_packet over the veth toward the router."""

    def __init__(self, ternd, lb, tmp, text=None, devargs="", persistent=False):
        """`persistent`: lb1's host interface is a persistent TAP that has its addresses already."""
        self.lb, self.config = lb, os.path.join(tmp, f"{lb}.toml")
        with open(self.config, "w") as f:
            f.write(text or config_text(lb))
        test_ternd.RUN += 1
        eal = test_ternd.eal(f"tern-netns-{os.getpid()}-{lb}-{test_ternd.RUN}", f"net_af_packet0,iface={lb}{devargs}")
        self.cmd = ["ip", "netns", "exec", NS[lb], ternd, *eal, "--", "--config", self.config, "--idle-sleep-us", "200"]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log, self.logged, self.closed = [], threading.Condition(), False
        self.reader = threading.Thread(target=self.read_log, daemon=True)
        self.reader.start()
        check(self.wait_for("started:", 1), f"{lb}: ternd did not start: {''.join(self.log)[-800:]}")
        if lb == HOST_PATH_NODE and not persistent:
            address_interface(NS[lb], HOST_INTERFACE, LINKS[lb][1], LINKS[lb][2])

    def read_log(self):
        for line in self.proc.stderr:
            with self.logged:
                self.log.append(line)
                self.logged.notify_all()
        with self.logged:
            self.closed = True
            self.logged.notify_all()

    def wait_for(self, text, count, timeout=30):
        """Until ternd has logged `count` lines containing `text` (its workers run once "started:" is out)."""
        with self.logged:
            self.logged.wait_for(lambda: self.closed or sum(text in line for line in self.log) >= count, timeout)
            return sum(text in line for line in self.log) >= count

    def reload(self, text):
        with open(self.config, "w") as f:
            f.write(text)
        self.proc.send_signal(signal.SIGHUP)
        check(self.wait_for("reload ok:", 1), f"{self.lb}: no 'reload ok' line: {''.join(self.log)[-800:]}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            test_ternd.remove_runtime_dirs(self.cmd)
        self.reader.join(timeout=10)
        err = "".join(self.log)
        check(self.proc.returncode == 0, f"{self.lb}: ternd exited {self.proc.returncode}: {err[-800:]}")
        lines = out.strip().splitlines()
        return (json.loads(lines[-1]) if lines else {}), err


@contextlib.contextmanager
def in_netns(name):
    """Sockets made inside stay in that namespace; setns only moves this thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as home, open(f"/var/run/netns/{name}") as target:
        if libc.setns(target.fileno(), 0) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            libc.setns(home.fileno(), 0)


# Source ports test_drain binds; reserved in the client namespace (no ephemeral use).
DRAIN_PORTS = range(40000, 40064)


class Connection:
    """One TCP connection from the client to a VIP; every exchange returns the answering backend."""

    def __init__(self, address, source_port=0):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with in_netns(NS["cl"]):
            self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        if source_port:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("", source_port))
        self.sock.connect((address, TCP_PORT))
        self.file = self.sock.makefile("rwb")

    def download(self, size):
        """Asks the backend for `size` bytes; returns the backend's name once all have arrived."""
        self.file.write(f"get {size}\n".encode())
        self.file.flush()
        name, announced = self.file.readline().decode().split()
        data = self.file.read(int(announced))
        if len(data) != size:
            raise RuntimeError(f"{name} sent {len(data)} of {size} bytes")
        return name

    def exchange(self, payload=b""):
        self.file.write(f"{len(payload)}\n".encode() + payload)
        self.file.flush()
        name, size = self.file.readline().decode().split()
        if int(size) != len(payload):
            raise RuntimeError(f"{name} received {size} of {len(payload)} bytes")
        return name

    def close(self):
        self.sock.close()

    def reset(self):
        """Closes with RST (linger 0): no TIME_WAIT, so the same source port can connect again."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def try_exchange(conn, payload=b""):
    try:
        return conn.exchange(payload)
    except (OSError, RuntimeError, ValueError) as e:
        return f"error: {e}"


def udp_exchange(address, port, payload=b"query"):
    """Sends `payload`; returns the answering backend and the size it received ("b1 5")."""
    with in_netns(NS["cl"]):
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(2)
        sock.connect((address, port))
        for _ in range(3):  # the first datagram may wait for the router's neighbour resolution
            sock.send(payload)
            try:
                return sock.recv(100).decode()
            except socket.timeout:
                continue
    return "timeout"


def test_protocols():
    """Each kind opens 12 flows, and more (up to 40) while one backend has answered them all: with
    a fair hash, 12 flows all on one of two backends happens once in 2,048 runs; 40, never."""
    for kind, (address, _) in VIPS.items():
        if kind == "gue":
            answers = []
            while len(answers) < 16 or (len(set(answers)) == 1 and len(answers) < 40):
                answers.append(udp_exchange(address, UDP_PORT + len(answers) % 16).split()[0])
            spread = set(answers) == {"b1", "b2"}
            check(spread, f"gue: UDP answers {answers}")
            if spread:
                print(f"ok: gue: {len(answers)} UDP flows to {address}:port-0 VIP answered by {sorted(set(answers))}",
                      flush=True)
            continue
        conns, names, failed = [], [], len(test_ternd.FAILURES)
        while len(conns) < 12 or (len(set(names)) == 1 and len(conns) < 40):
            try:
                conn = Connection(address)
            except OSError as e:
                check(False, f"{kind}: connect to {address}: {e}")
                break
            conns.append(conn)
            answers = {try_exchange(conn, b"x" * n) for n in (1, 100, 1000)}
            check(len(answers) == 1 and answers <= {"b1", "b2"}, f"{kind}: one connection answered by {answers}")
            names.append(answers.pop())
        ports = [conn.sock.getsockname()[1] for conn in conns]
        check(set(names) == {"b1", "b2"}, f"{kind}: connections from ports {ports} answered by {names}")
        for conn in conns:
            conn.close()
        if len(test_ternd.FAILURES) == failed:
            print(f"ok: {kind}: {len(conns)} TCP connections to {address}, 3 exchanges each, spread over {sorted(set(names))}",
                  flush=True)


def transfer_1mib(kinds, label, move, detail):
    """One connection per VIP kind moves 1 MiB; `move(conn)` returns the answering backend."""
    for kind in kinds:
        conn = Connection(VIPS[kind][0])
        try:
            name = move(conn)
        except (OSError, RuntimeError, ValueError) as e:
            name = f"error: {e}"
        conn.close()
        check(name in ("b1", "b2"), f"{label} {kind}: {name}")
        if name in ("b1", "b2"):
            print(f"ok: {label} {kind}: 1 MiB {detail.format(name=name)}", flush=True)


def test_bulk_with_path_mtu_discovery():
    payload = bytes(range(256)) * 4096  # the client starts with full-size segments
    transfer_1mib(("4in4", "6in6", "4in6"), "bulk", lambda conn: conn.exchange(payload),
                  "through the tunnel to {name} arrived whole (path MTU lowered by ternd's ICMP)")


def test_download_with_icmp_steering():
    transfer_1mib(("4in4", "6in6"), "download", lambda conn: conn.download(1 << 20),
                  "from {name} over a 1400-byte return path (router's ICMP steered to the backend)")


def test_ping():
    for address in ("192.0.2.10", "2001:db8::10"):
        p = subprocess.run(["ip", "netns", "exec", NS["cl"], "ping", "-c", "3", "-i", "0.2", "-W", "2", address],
                           capture_output=True, text=True)
        check(p.returncode == 0 and " 0% packet loss" in p.stdout, f"ping {address}: {p.stdout[-300:]}")
    print("ok: ping and ping6 to VIP addresses are answered", flush=True)


def test_fragmented_ping_and_udp():
    """The client's path to the IPv6 VIP carries 1,400 bytes, so its kernel fragments what is
    bigger: `ping -6 -s 4000` and 4,000-byte UDP datagrams. ternd sends every fragment of a
    datagram to one backend (the echo requests to a backend of the address's first VIP), whose
    kernel reassembles it and answers from the VIP; the router's "packet too big" about that reply
    reaches the same backend. IPv6 only: net_af_packet joins its socket to
    a fanout group with the defrag flag (DPDK 22.11), so the kernel reassembles IPv4 datagrams
    before ternd sees them; IPv4 fragments are checked on simulate (scapy) and ternd over net_pcap."""
    address = VIPS["6in6"][0]
    sh("ip", "-6", "route", "add", f"{address}/128", "via", f"{LINKS['cl'][2]}1", "mtu", "1400", ns=NS["cl"])
    try:
        # The backend's 4,048-byte reply meets the router's 1,400-byte way back: the first may be
        # lost while ternd steers the router's "packet too big" (quoting the reply) to that backend.
        subprocess.run(["ip", "netns", "exec", NS["cl"], "ping", "-6", "-c", "1", "-W", "1", "-s", "4000", address], capture_output=True)
        p = subprocess.run(["ip", "netns", "exec", NS["cl"], "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "-s", "4000", address],
                           capture_output=True, text=True)
        pinged = p.returncode == 0 and " 0% packet loss" in p.stdout and "4008 bytes from" in p.stdout
        check(pinged, f"ping -6 -s 4000 {address}: {p.stdout[-300:]}")
        answers = [udp_exchange(address, UDP_PORT, bytes(4000)) for _ in range(8)]
        whole = all(a.split()[1:] == ["4000"] for a in answers)
        check(whole, f"4000-byte UDP datagrams to [{address}]:{UDP_PORT}: answers {answers}")
    finally:
        sh("ip", "-6", "route", "del", f"{address}/128", ns=NS["cl"])
    if pinged and whole:
        print(f"ok: fragments: ping -6 -s 4000 to {address} answered over a 1,400-byte path (the backend reassembled); "
              f"8 UDP datagrams of 4,000 bytes in 3 fragments each reached {sorted(set(a.split()[0] for a in answers))} whole",
              flush=True)


BLACKHOLE = ('table inet tern_blackhole {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n'
             '  oifname "rt-cl" icmp type destination-unreachable icmp code frag-needed drop\n'
             '  oifname "rt-cl" icmpv6 type packet-too-big drop\n }\n}\n')


@contextlib.contextmanager
def too_big_dropped():
    """The router drops ICMP "fragmentation needed" and ICMPv6 "packet too big" toward the client,
    as firewalls do, so path MTU discovery cannot work; the client reaches the two VIPs by routes
    of their own (metric 7: new next hops, without the path MTUs earlier tests taught it)."""
    subprocess.run(["ip", "netns", "exec", NS["rt"], "nft", "-f", "-"], check=True, text=True, input=BLACKHOLE)
    routes = [("-4", f"{VIPS['4in4'][0]}/32", f"{LINKS['cl'][1]}.1"), ("-6", f"{VIPS['6in6'][0]}/128", f"{LINKS['cl'][2]}1")]
    for family, prefix, via in routes:
        sh("ip", family, "route", "add", prefix, "via", via, "metric", "7", ns=NS["cl"])
    try:
        yield
    finally:
        for family, prefix, _ in routes:
            sh("ip", family, "route", "del", prefix, "metric", "7", ns=NS["cl"])
        sh("nft", "delete", "table", "inet", "tern_blackhole", ns=NS["rt"])


def set_backend_advmss(v4, v6):
    """The MSS the backends advertise in their SYN-ACKs (route advmss; None: the default, from the
    path MTU). In DSR this is what sizes the client's segments toward the VIP."""
    for b in BACKENDS:
        _, prefix4, prefix6 = LINKS[b]
        sh("ip", "-4", "route", "change", "default", "via", f"{prefix4}.1", *(("advmss", str(v4)) if v4 else ()), ns=NS[b])
        sh("ip", "-6", "route", "change", "default", "via", f"{prefix6}1", *(("advmss", str(v6)) if v6 else ()), ns=NS[b])


def forget_path_mtus(ns):
    for family in ("-4", "-6"):
        sh("ip", family, "route", "flush", "cache", ns=NS[ns])


def upload_1mib(kind, timeout):
    conn = Connection(VIPS[kind][0])
    conn.sock.settimeout(timeout)
    try:
        return conn.exchange(bytes(range(256)) * 4096)
    except (OSError, RuntimeError, ValueError) as e:
        return f"error: {e}"
    finally:
        conn.close()


def test_mss_with_icmp_dropped():
    """With too-big messages dropped on the way to the client, path MTU discovery cannot shrink
    the client's segments. Through lb2, which clamps the MSS of the client's SYN (clamp_mss), a
    1 MiB upload still stalls: the client sizes its segments by the MSS in the backend's SYN-ACK,
    which in DSR never passes ternd. With the backends advertising the MSS the tunnel carries
    (route advmss 1440 / 1400, README), the same uploads complete."""
    with too_big_dropped():
        # What backends advertise on a 1,500-byte link (set explicitly: a new route also forgets
        # the path MTUs earlier tests taught them, which would lower their MSS).
        set_backend_advmss(1460, 1440)
        stalled = upload_1mib("4in4", 4)
        set_backend_advmss(1440, 1400)
        try:
            got = {kind: upload_1mib(kind, 10) for kind in ("4in4", "6in6")}
        finally:
            set_backend_advmss(None, None)
    check(stalled.startswith("error"), f"ICMP too-big dropped, default backend MSS: the upload should stall, got {stalled}")
    check(set(got.values()) <= {"b1", "b2"}, f"ICMP too-big dropped, backends' advmss set: uploads {got}")
    if stalled.startswith("error") and set(got.values()) <= {"b1", "b2"}:
        print(f"ok: ICMP too-big dropped on the way: a 1 MiB upload stalls although lb2 clamps the SYN's MSS ({stalled}); "
              "with the backends advertising the tunnel's MSS (advmss), uploads (4in4, 6in6) complete", flush=True)


def test_jumbo(ternd, tmp):
    """Jumbo frames end to end: every link of the client, lb2 and the backends at MTU 9000, ternd
    at mtu 9000 on net_af_packet (framesz 9216: a 9,014-byte frame and af_packet's header), no
    clamp_mss. The client's 9,000-byte packets do not fit the tunnel; ternd tells it (ICMP),
    its kernel settles on 8,980 (4in4) and 8,960 (6in6), and 1 MiB uploads arrive whole."""
    ternctl = os.path.join(os.path.dirname(ternd), "ternctl")
    for b in BACKENDS:
        sh(ternctl, "backend", "detach", "--interface", b, ns=NS[b])
    for ns, link in [("cl", "cl"), ("lb2", "lb2"), ("b1", "b1"), ("b2", "b2")]:
        sh("ip", "link", "set", "dev", link, "mtu", "9000", ns=NS[ns])
        sh("ip", "link", "set", "dev", f"rt-{link}", "mtu", "9000", ns=NS["rt"])
    # Forget the path MTUs earlier tests taught the client and the backends (the backends would
    # advertise a smaller MSS from them).
    for ns in ("cl", "b1", "b2"):
        forget_path_mtus(ns)
    for b in BACKENDS:
        # Above a page, veth runs only XDP programs that take multi-buffer frames: attach picks
        # that variant by the MTU.
        attach_backend(ternctl, NS[b], b)
    text = config_text("lb2").replace("mtu = 1500\n", "mtu = 9000\n").replace("clamp_mss = true\n", "")
    node = Node(ternd, "lb2", tmp, text=text, devargs=",framesz=9216,blocksz=36864")
    try:
        route_vips_via("lb2")
        got, mtus = {}, {}
        for kind in ("4in4", "6in6"):
            got[kind] = upload_1mib(kind, 15)
            route = sh("ip", "route", "get", VIPS[kind][0], ns=NS["cl"])
            mtus[kind] = route.split(" mtu ")[1].split()[0] if " mtu " in route else "?"
        stats, err = node.stop()
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
            test_ternd.remove_runtime_dirs(node.cmd)
    check_counters("lb2", stats, err)
    ok = set(got.values()) <= {"b1", "b2"} and mtus == {"4in4": "8980", "6in6": "8960"}
    check(ok, f"jumbo: uploads {got}, client's path MTUs {mtus}")
    if ok:
        print(f"ok: jumbo: links at MTU 9000, ternd mtu 9000 on net_af_packet: 1 MiB uploads (4in4, 6in6) arrived whole; "
              f"the client's path MTUs toward the VIPs settled at {mtus['4in4']} and {mtus['6in6']} (ternd's ICMP); "
              f"too-big replies {stats.get('replies', {}).get('too_big')}", flush=True)


def test_host_interface_taken(ternd, tmp):
    """A host_interface name that exists already (here: the node's own veth) stops ternd at start
    with exit 78 naming the key, and leaves nothing behind."""
    config = os.path.join(tmp, "taken.toml")
    with open(config, "w") as f:
        f.write(config_text(HOST_PATH_NODE).replace(f'host_interface = "{HOST_INTERFACE}"', f'host_interface = "{HOST_PATH_NODE}"'))
    test_ternd.RUN += 1
    cmd = ["ip", "netns", "exec", NS[HOST_PATH_NODE], ternd,
           *test_ternd.eal(f"tern-netns-{os.getpid()}-taken", f"net_af_packet0,iface={HOST_PATH_NODE}"), "--", "--config", config]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    test_ternd.remove_runtime_dirs(cmd)
    message = f"port[0].host_interface: an interface named {HOST_PATH_NODE} exists already"
    check(p.returncode == 78 and message in p.stderr, f"host_interface taken: exit {p.returncode}, {p.stderr[-400:]}")
    if p.returncode == 78:
        print(f"ok: a host_interface that exists ({HOST_PATH_NODE}) stops ternd: exit 78, {message}", flush=True)


def test_host_path():
    """The host-path node's addresses live only on ternd's TAP and its kernel never sees the link:
    the router resolves them (ARP, ND) and pings them, and a TCP service on the node answers a
    client, all through ternd."""
    _, v4, v6 = LINKS[HOST_PATH_NODE]
    for address in (f"{v4}.2", f"{v6}2"):
        p = subprocess.run(["ip", "netns", "exec", NS["rt"], "ping", "-c", "3", "-i", "0.2", "-W", "2", address],
                           capture_output=True, text=True)
        check(p.returncode == 0 and " 0% packet loss" in p.stdout, f"host path: ping {address}: {p.stdout[-300:]}")
    neighbours = sh("ip", "neigh", "show", "dev", f"rt-{HOST_PATH_NODE}", ns=NS["rt"])
    mac = mac_of(NS[HOST_PATH_NODE], HOST_PATH_NODE)
    check(f"{v4}.2 lladdr {mac}" in neighbours and f"{v6}2 lladdr {mac}" in neighbours,
          f"host path: the router's neighbours {neighbours!r}, expected the node's addresses at {mac}")
    answers = []
    for address in (f"{v4}.2", f"{v6}2"):
        try:
            conn = Connection(address)
            answers.append(conn.exchange(b"hello"))
            conn.close()
        except (OSError, RuntimeError, ValueError) as e:
            answers.append(f"error: {e}")
    check(answers == [HOST_PATH_NODE] * 2, f"host path: TCP to the node's addresses answered by {answers}")
    if answers == [HOST_PATH_NODE] * 2:
        print(f"ok: host path: the router resolved and pinged {v4}.2 and {v6}2 (only on ternd's TAP), and TCP to "
              "both reached the node's own service", flush=True)


def test_router_mac_change(node):
    """The router's MAC changes under live connections: ternd learns the new one from its
    kernel's neighbour table (fed by the router's gratuitous ARP through the host path) and the
    connections carry on; `no_neighbor` drops, if any, happen only in between."""
    conns, before = open_spread(VIPS["4in4"][0], 8)
    old = mac_of(NS["rt"], f"rt-{HOST_PATH_NODE}")
    new = "02:99:00:00:00:01" if old != "02:99:00:00:00:01" else "02:99:00:00:00:02"
    changed = time.monotonic()
    sh("ip", "link", "set", f"rt-{HOST_PATH_NODE}", "address", new, ns=NS["rt"])
    learned = node.wait_for(f"is at {new}", 1, timeout=20)
    took = time.monotonic() - changed
    after = [try_exchange(c, b"z" * 300) for c in conns]
    for c in conns:
        c.close()
    check(learned, f"router MAC change: ternd did not learn {new}: {''.join(node.log)[-600:]}")
    ternctl = os.path.join(os.path.dirname(node.cmd[4]), "ternctl")
    p = subprocess.run([ternctl, "status", "--json", "--socket", control_socket(node.lb)],
                       capture_output=True, text=True)
    gateways = json.loads(p.stdout).get("gateways", []) if p.returncode == 0 else []
    check([(g.get("gateway"), g.get("mac")) for g in gateways] == [(f"{LINKS[node.lb][1]}.1", new)],
          f"router MAC change: ternctl status shows gateways {gateways} ({p.stderr.strip()})")
    check(after == before, f"router MAC change: connections answered by {before} before, {after} after")
    if learned and after == before:
        print(f"ok: router MAC change: ternd followed {old} -> {new} in {took:.1f} s; {len(conns)} connections carried on",
              flush=True)


def test_host_flood(node):
    """A bounded flood of UDP to the node's own address (the kernel's business) while a VIP bulk
    transfer runs: the transfer completes, and every host-bound frame is accounted for (handed
    to the kernel or counted host_dropped)."""
    _, v4, _ = LINKS[HOST_PATH_NODE]
    flood = subprocess.Popen(["ip", "netns", "exec", NS["cl"], sys.executable, "-c", (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for i in range(200000): s.sendto(b'x' * 64, ('{v4}.2', 9999))\n")])
    conn = Connection(VIPS["4in4"][0])
    try:
        name = conn.exchange(bytes(range(256)) * 2048)
    except (OSError, RuntimeError, ValueError) as e:
        name = f"error: {e}"
    conn.close()
    flood.wait(timeout=120)
    check(name in ("b1", "b2"), f"host flood: a 512 KiB VIP transfer during the flood: {name}")
    if name in ("b1", "b2"):
        print("ok: host flood: 200000 datagrams to the node's address; a 512 KiB VIP transfer beside them completed", flush=True)


def start_bgp_over_host_path(node, tmp, bfd=False):
    """BIRD on the router and on lb1 (peering over lb1's host interface; with `bfd`, BFD at 300 ms
    x 3 on the session) and `ternctl bgp-feed --bird-include` feeding lb1's BIRD. Returns the
    sides, their control sockets and the feed process."""
    _, v4, _ = LINKS[HOST_PATH_NODE]
    include = os.path.join(tmp, "tern-vips.conf")
    with open(include, "w") as f:
        f.write("protocol static tern_vips4 { ipv4; }\n")  # until the feed's first write
    sides = {
        "rt": (f"{v4}.1", 65000, f"{v4}.2", 65001, "ipv4 { import all; export none; };"),
        HOST_PATH_NODE: (f"{v4}.2", 65001, f"{v4}.1", 65000, 'ipv4 { import none; export where proto ~ "tern_vips*"; };'),
    }
    # Detection after 3 x 300 ms: longer than a planned restart leaves the TAP without carrier, short
    # enough that a crashed node's routes go within about a second.
    # Multihop sessions resolve their next hop through the table: the connected networks go in.
    detection = ('protocol bfd { interface "*" { min rx interval 300 ms; min tx interval 300 ms; multiplier 3; }; }\n'
                 'protocol direct { ipv4; ipv6; }\n' if bfd else "")
    sockets = {}
    for side, (me, my_as, peer, peer_as, channel) in sides.items():
        conf, sockets[side] = os.path.join(tmp, f"bird-{side}.conf"), os.path.join(tmp, f"bird-{side}.ctl")
        with open(conf, "w") as f:
            f.write(f"router id {me};\nprotocol device {{}}\n" + detection
                    + (f'include "{include}";\n' if side == HOST_PATH_NODE else "")
                    + f"protocol bgp peer {{ local {me} as {my_as}; neighbor {peer} as {peer_as}; "
                    # lb1 with BFD: multihop, so its session is not tied to the TAP's carrier (gone while
                    # ternd restarts); BFD watches the path instead.
                    + ("bfd on; multihop 1; " if bfd else "")
                    + f"{channel} }}\n")
        sh("bird", "-c", conf, "-s", sockets[side], "-P", os.path.join(tmp, f"bird-{side}.pid"), ns=NS[side])
    feed = subprocess.Popen(["ip", "netns", "exec", NS[HOST_PATH_NODE], ternctl_of(node), "bgp-feed", "--socket",
                             control_socket(node.lb), "--interval", "0.2", "--bird-include", include, "--bird-socket",
                             sockets[HOST_PATH_NODE]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return sides, sockets, feed


def test_bgp_survives_restart(ternd, tmp):
    """lb1's host_interface is a persistent TAP (addresses and routes given once): a planned
    restart of ternd leaves the router's BGP session up (same state-change time: no flap) and the
    VIP routes come back once the new ternd answers the feed; a SIGKILL is seen by BFD, and the
    router drops lb1's routes within about a second."""
    _, v4, v6 = LINKS[HOST_PATH_NODE]
    sh("ip", "tuntap", "add", "dev", HOST_INTERFACE, "mode", "tap", "multi_queue", ns=NS[HOST_PATH_NODE])
    address_interface(NS[HOST_PATH_NODE], HOST_INTERFACE, v4, v6)
    node = Node(ternd, HOST_PATH_NODE, tmp, persistent=True)
    sides, sockets, feed = start_bgp_over_host_path(node, tmp, bfd=True)
    prefix = f"{VIPS['4in4'][0]}/32"

    def router():
        routes = router_routes(sockets["rt"], prefix)
        state = subprocess.run(["ip", "netns", "exec", NS["rt"], "birdc", "-s", sockets["rt"], "show", "protocols", "peer"],
                               capture_output=True, text=True).stdout
        line = next((ln for ln in state.splitlines() if ln.startswith("peer")), "")
        return "via" in routes, line

    def wait(condition, timeout, step=0.05):
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if condition():
                return time.monotonic() - started
            time.sleep(step)
        return None
    try:
        learned = wait(lambda: router()[0] and "Established" in router()[1], 60, 0.5)
        _, before = router()
        stopping = time.monotonic()
        node.stop()
        node = Node(ternd, HOST_PATH_NODE, tmp, persistent=True)
        gap = time.monotonic() - stopping  # SIGTERM until the new ternd's "started:" (its TAP attached before)
        back = wait(lambda: router()[0], 30)
        _, after = router()
        check(learned is not None and back is not None and "Established" in after and after == before,
              f"planned restart over a persistent TAP ({gap:.2f} s): session {before!r} -> {after!r}, routes back after {back}; "
              f"router: {router_routes(sockets['rt'], prefix)!r}; lb1: "
              + subprocess.run(["ip", "netns", "exec", NS[HOST_PATH_NODE], "birdc", "-s", sockets[HOST_PATH_NODE], "show",
                                "route"], capture_output=True, text=True).stdout)
        node.proc.kill()
        killed = time.monotonic()
        gone = wait(lambda: not router()[0], 10)
        node.proc.wait()
        test_ternd.remove_runtime_dirs(node.cmd)
        check(gone is not None and gone < 1.5, f"SIGKILL over a persistent TAP: the router kept lb1's route "
              f"{'for ' + format(time.monotonic() - killed, '.1f') + ' s' if gone is None else f'{gone:.2f} s'}")
        if gone is not None and gone < 1.5 and back is not None and after == before:
            print(f"ok: persistent TAP: a planned restart ({gap:.2f} s from SIGTERM to started) kept the router's BGP "
                  f"session ({' '.join(after.split()[3:5])}), "
                  f"routes back {back:.2f} s after the new ternd started; SIGKILL: BFD took the route down in {gone:.2f} s",
                  flush=True)
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()
            test_ternd.remove_runtime_dirs(node.cmd)
        feed.kill()
        feed.wait()
        for side in sides:
            subprocess.run(["ip", "netns", "exec", NS[side], "birdc", "-s", sockets[side], "down"], capture_output=True)
        subprocess.run(["ip", "netns", "exec", NS[HOST_PATH_NODE], "ip", "link", "del", HOST_INTERFACE], capture_output=True)


def test_bgp_over_host_path(node, tmp):
    """BIRD on the router and on lb1's host side: the BGP session runs over ternd's host path (TCP
    179 to the address on the TAP). lb1's BIRD announces what `ternctl bgp-feed --bird-include`
    writes (the BIRD variant of the feed), and the router learns the VIP prefixes from it."""
    _, v4, _ = LINKS[HOST_PATH_NODE]
    sides, sockets, feed = start_bgp_over_host_path(node, tmp)
    deadline, routes = time.monotonic() + 60, ""
    while time.monotonic() < deadline:
        routes = subprocess.run(["ip", "netns", "exec", NS["rt"], "birdc", "-s", sockets["rt"], "show", "route"],
                                capture_output=True, text=True).stdout
        if all(f"{VIPS[k][0]}/32" in routes for k in ("4in4", "gue")) and f"via {v4}.2" in routes:
            break
        time.sleep(0.5)
    state = subprocess.run(["ip", "netns", "exec", NS[HOST_PATH_NODE], "birdc", "-s", sockets[HOST_PATH_NODE], "show",
                            "protocols", "peer"], capture_output=True, text=True).stdout
    feed.kill()
    feed_output = feed.communicate()[0]
    for side in sides:
        subprocess.run(["ip", "netns", "exec", NS[side], "birdc", "-s", sockets[side], "down"], capture_output=True)
    learned = f"via {v4}.2" in routes and f"{VIPS['4in4'][0]}/32" in routes
    check(learned and "Established" in state,
          f"BGP over the host path: router's routes {routes!r}, lb1's session {state!r}, feed: {feed_output[-500:]}")
    if learned:
        print(f"ok: BGP over the host path: BIRD on lb1 (on the TAP's {v4}.2), fed by ternctl bgp-feed --bird-include, "
              f"established a session with the router's BIRD, which learned the VIP prefixes from it", flush=True)


def ternctl_of(node):
    return os.path.abspath(os.path.join(os.path.dirname(node.cmd[4]), "ternctl"))  # ExaBGP wants it absolute


def control_socket(lb):
    return f"/run/tern/netns-test-{os.getpid()}-{lb}.sock"


def router_routes(socket_path, prefix):
    return subprocess.run(["ip", "netns", "exec", NS["rt"], "birdc", "-s", socket_path, "show", "route", prefix],
                          capture_output=True, text=True).stdout


def start_bgp_feed(node, tmp):
    """ExaBGP on lb1's host side, fed by `ternctl bgp-feed`, peers with BIRD on the router: the
    router learns lb1's VIP prefixes. Returns the router's BIRD socket (for the withdrawal check)."""
    _, v4, _ = LINKS[HOST_PATH_NODE]
    ternctl = ternctl_of(node)
    rt_conf, rt_ctl = os.path.join(tmp, "feed-rt.conf"), os.path.join(tmp, "feed-rt.ctl")
    with open(rt_conf, "w") as f:
        f.write(f"router id {v4}.1;\nprotocol device {{}}\nprotocol bgp lb1 {{ local {v4}.1 as 65000; "
                f"neighbor {v4}.2 as 65001; ipv4 {{ import all; export none; }}; }}\n")
    sh("bird", "-c", rt_conf, "-s", rt_ctl, "-P", os.path.join(tmp, "feed-rt.pid"), ns=NS["rt"])
    exa_conf = os.path.join(tmp, "exabgp.conf")
    with open(exa_conf, "w") as f:
        f.write(f"process tern {{\n run {ternctl} bgp-feed --socket {control_socket(node.lb)} "
                f"--interval 0.2;\n encoder text;\n}}\n"
                f"neighbor {v4}.1 {{\n router-id {v4}.2;\n local-address {v4}.2;\n local-as 65001;\n peer-as 65000;\n"
                f" family {{ ipv4 unicast; }}\n api {{ processes [ tern ]; }}\n}}\n")
    log = open(os.path.join(tmp, "exabgp.log"), "w")
    subprocess.Popen(["ip", "netns", "exec", NS[node.lb], "env", "exabgp.daemon.user=root", "exabgp.log.destination=stdout",
                      "exabgp", exa_conf], stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    prefix = f"{VIPS['4in4'][0]}/32"
    deadline, routes = time.monotonic() + 60, ""
    while time.monotonic() < deadline and f"via {v4}.2" not in routes:
        time.sleep(0.5)
        routes = router_routes(rt_ctl, prefix)
    log.flush()
    with open(os.path.join(tmp, "exabgp.log")) as f:
        tail = f.read()[-1500:]
    check(f"via {v4}.2" in routes, f"bgp-feed: the router did not learn {prefix} from ExaBGP: {routes!r}; ExaBGP: {tail}")
    if f"via {v4}.2" not in routes:
        return None
    print(f"ok: bgp-feed: ExaBGP on lb1, fed by ternctl bgp-feed, announced {prefix} to the router's BIRD", flush=True)
    return rt_ctl


def check_withdrawn_after_stop(rt_ctl):
    """lb1's ternd stopped: the feed withdraws everything (fail closed) and the router forgets it."""
    prefix = f"{VIPS['4in4'][0]}/32"
    deadline, routes = time.monotonic() + 20, "x"
    while time.monotonic() < deadline and "via" in routes:
        time.sleep(0.5)
        routes = router_routes(rt_ctl, prefix)
    check("via" not in routes, f"bgp-feed: {prefix} still routed after lb1's ternd stopped: {routes!r}")
    if "via" not in routes:
        print(f"ok: bgp-feed: lb1's ternd stopped, the feed withdrew {prefix} and the router dropped it", flush=True)


def start_servers(b):
    p = subprocess.Popen(["ip", "netns", "exec", NS[b], sys.executable, os.path.abspath(__file__), "--serve", b],
                         stdout=subprocess.PIPE, text=True)
    check(p.stdout.readline().strip() == "ready", f"{b}: servers did not start")
    return p


def test_health_checks(node, servers):
    """b2's servers die: within interval x fall lb1's TCP checks take b2 out, and new connections
    all go to b1; they come back: b2 takes new connections again after rise checks."""
    address = VIPS[HEALTH_CHECKED][0]
    before = sum("is DOWN" in line for line in node.log)
    servers["b2"].kill()
    servers["b2"].wait()
    killed = time.monotonic()
    down = node.wait_for("is DOWN", before + 1, timeout=10)
    took = time.monotonic() - killed
    names = []
    for _ in range(12):
        try:
            conn = Connection(address)
            names.append(try_exchange(conn))
            conn.close()
        except OSError as e:
            names.append(f"error: {e}")
    check(down and set(names) == {"b1"}, f"health: after b2's server died ({took:.1f} s): DOWN logged {down}, answers {names}")
    ups = sum("is up" in line for line in node.log)
    servers["b2"] = start_servers("b2")
    up = node.wait_for("is up", ups + 1, timeout=10)
    conns, again = open_spread(address, 16)
    for c in conns:
        c.close()
    check(up and set(again) == {"b1", "b2"}, f"health: after b2's server came back: up logged {up}, answers {again}")
    if down and up and set(names) == {"b1"}:
        print(f"ok: health: b2's server killed, lb1's TCP checks took it out in {took:.1f} s (12 new connections all to b1); "
              "restarted, it took new connections again", flush=True)


def open_spread(address, count=16):
    conns = [Connection(address) for _ in range(count)]
    return conns, [try_exchange(c) for c in conns]


def test_scale_out(ternd, tmp):
    lb2 = Node(ternd, "lb2", tmp)
    conns, before = open_spread(VIPS["4in4"][0])
    route_vips_via("lb2")
    after = [try_exchange(c, b"y" * 500) for c in conns]
    for c in conns:
        c.close()
    check(after == before and set(before) == {"b1", "b2"}, f"scale-out: backends before {before}, after the move {after}")
    print(f"ok: scale-out: {len(conns)} connections moved from lb1 to lb2 mid-flow, each kept its backend", flush=True)
    return lb2


def test_drain(node):
    conns, before = open_spread(VIPS["4in4"][0])
    # Source ports whose connection went to b1, reset (RST, no TIME_WAIT) to be used again below.
    reused = []
    for port in DRAIN_PORTS:
        if len(reused) == 4:
            break
        c = Connection(VIPS["4in4"][0], source_port=port)
        if try_exchange(c) == "b1":
            reused.append(port)
        c.reset()
    node.reload(config_text(node.lb, drained=("b1",)))
    after = [try_exchange(c) for c in conns]
    fresh, names = open_spread(VIPS["4in4"][0], 8)
    for c in conns + fresh:
        c.close()
    # A client reusing a source port opens a new connection (SYN): it must not follow the flow
    # table to drained b1.
    again = []
    for port in reused:
        c = Connection(VIPS["4in4"][0], source_port=port)
        again.append(try_exchange(c))
        c.close()
    check(after == before and "b1" in before, f"drain: established connections before {before}, after {after}")
    check(set(names) == {"b2"}, f"drain: new connections went to {names}")
    check(len(reused) == 4 and set(again) == {"b2"}, f"drain: reused source ports {reused} answered by {again}, expected b2")
    print(f"ok: drain: after the reload {before.count('b1')} connections stayed on drained b1; new ones all to b2, also "
          f"from {len(reused)} source ports whose previous connection had been on b1", flush=True)


def check_counters(lb, stats, err):
    if not stats:
        check(False, f"{lb}: no final counters; stderr {err[-500:]}")
        return
    verdicts = stats["forwarded"] + stats["host"] + stats["replied"] + sum(stats["dropped"].values())
    check(stats["rx"] == verdicts, f"{lb}: rx {stats['rx']} != sum of verdicts {verdicts}")
    check(stats["forwarded"] > 0 and stats["tx_failed"] == 0 and stats["mbufs_in_use"] == 0, f"{lb}: {stats}")
    # The learned-gateway node may drop while the router's MAC changes (no_neighbor); nothing else.
    unexpected = {k: v for k, v in stats["dropped"].items() if v and not (lb == HOST_PATH_NODE and k == "no_neighbor")}
    check(not unexpected, f"{lb}: dropped {stats['dropped']}")
    if lb == HOST_PATH_NODE:
        check(stats.get("host_tx", 0) + stats.get("host_dropped", 0) == stats["host"] and stats.get("host_rx", 0) > 0,
              f"{lb}: host path: host {stats['host']}, host_tx {stats.get('host_tx')}, host_rx {stats.get('host_rx')}, "
              f"host_dropped {stats.get('host_dropped')}")
        print(f"ok: {lb}: host path: {stats['host']} host-bound frames = {stats.get('host_tx')} to the kernel + "
              f"{stats.get('host_dropped')} host_dropped; {stats.get('host_rx')} from the kernel sent; no_neighbor drops "
              f"{stats['dropped'].get('no_neighbor', 0)}", flush=True)
    print(f"ok: {lb}: rx {stats['rx']} = forwarded {stats['forwarded']} + host {stats['host']} + replied "
          f"{stats['replied']} + dropped {sum(stats['dropped'].values())}; tx_failed 0, mbufs in use 0", flush=True)


def serve(name, udp=True):
    """Backend servers: TCP on every address (length-prefixed echo of sizes), UDP per VIP address
    (bound to it, so the reply's source is the VIP). The host-path node runs the TCP one only: a
    service on the node's own address (an ssh stand-in)."""
    def tcp_client(conn):
        with contextlib.suppress(ConnectionResetError), conn, conn.makefile("rwb") as f:  # the drain test resets
            while line := f.readline():
                if line.startswith(b"get "):
                    size = int(line[4:])
                    f.write(f"{name} {size}\n".encode() + bytes(size))
                else:
                    size = int(line)
                    got = len(f.read(size)) if size else 0
                    f.write(f"{name} {got}\n".encode())
                f.flush()

    def tcp_server():
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", TCP_PORT))
        s.listen(64)
        while True:
            conn, _ = s.accept()
            threading.Thread(target=tcp_client, args=(conn,), daemon=True).start()

    def udp_server(address, port):
        s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, port))
        while True:
            data, peer = s.recvfrom(65535)
            s.sendto(f"{name} {len(data)}".encode(), peer)

    threading.Thread(target=tcp_server, daemon=True).start()
    for port in range(UDP_PORT, UDP_PORT + 16 if udp else UDP_PORT):
        threading.Thread(target=udp_server, args=(VIPS["gue"][0], port), daemon=True).start()
    if udp:
        threading.Thread(target=udp_server, args=(VIPS["6in6"][0], UDP_PORT), daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def main(ternd):
    tmp = tempfile.mkdtemp(prefix="tern-netns-")
    teardown()
    servers, nodes = {}, {}
    try:
        setup(os.path.join(os.path.dirname(ternd), "ternctl"))
        for b in ("b1", "b2"):
            servers[b] = start_servers(b)
        servers[HOST_PATH_NODE] = subprocess.Popen(
            ["ip", "netns", "exec", NS[HOST_PATH_NODE], sys.executable, os.path.abspath(__file__), "--serve-tcp", HOST_PATH_NODE],
            stdout=subprocess.PIPE, text=True)
        check(servers[HOST_PATH_NODE].stdout.readline().strip() == "ready", f"{HOST_PATH_NODE}: server did not start")
        test_host_interface_taken(ternd, tmp)
        nodes["lb1"] = Node(ternd, "lb1", tmp)
        test_host_path()
        test_bgp_over_host_path(nodes["lb1"], tmp)
        test_protocols()
        test_bulk_with_path_mtu_discovery()
        test_download_with_icmp_steering()
        test_ping()
        test_fragmented_ping_and_udp()
        test_router_mac_change(nodes["lb1"])
        test_host_flood(nodes["lb1"])
        test_health_checks(nodes["lb1"], servers)
        nodes["lb2"] = test_scale_out(ternd, tmp)
        test_mss_with_icmp_dropped()
        test_drain(nodes["lb2"])
        feed_router = start_bgp_feed(nodes["lb1"], tmp)
        for lb, node in nodes.items():
            stats, err = node.stop()
            if lb == HOST_PATH_NODE and feed_router:
                check_withdrawn_after_stop(feed_router)
            check_counters(lb, stats, err)
            if lb == "lb1":
                check(stats.get("fragments_followed", 0) >= 4 * 2 + 8 * 2, f"lb1: fragments_followed {stats.get('fragments_followed')}")
                replies = stats.get("replies", {})
                check(replies.get("echo") == 6 and replies.get("too_big", 0) >= 3,
                      f"lb1: replies {replies}, expected the 6 echo requests and too-big replies for each bulk transfer")
            if lb == "lb2":
                check(stats.get("mss_clamped", 0) >= 2, f"lb2: mss_clamped {stats.get('mss_clamped')}")
                check(stats.get("reloads") == {"ok": 1, "failed": 0} and "reload ok:" in err, f"lb2: reloads {stats.get('reloads')}")
        test_jumbo(ternd, tmp)
        # ExaBGP's test is over: its router BIRD would hold port 179 in the router's namespace.
        if feed_router:
            subprocess.run(["ip", "netns", "exec", NS["rt"], "birdc", "-s", feed_router, "down"], capture_output=True)
        subprocess.run(["pkill", "-f", os.path.join(tmp, "exabgp.conf")], capture_output=True)
        time.sleep(1)
        test_bgp_survives_restart(ternd, tmp)
    finally:
        for node in nodes.values():
            if node.proc.poll() is None:
                node.proc.kill()
                test_ternd.remove_runtime_dirs(node.cmd)
        for p in servers.values():
            p.kill()
        teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    if test_ternd.FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] in ("--serve", "--serve-tcp"):
        serve(sys.argv[2], udp=sys.argv[1] == "--serve")
    else:
        main(sys.argv[1])
