#!/usr/bin/python3
"""Packet fixtures for the outside checks: a table of (description, frame, expected outcome, what
the transmitted frame must look like), written as a pcap for `ternctl simulate`.

`--demo FILE` writes a demo pcap for the example config (README's `make run`).
`--cases FILE` writes the outside-test cases for Tests/outside/outside.toml.
"""
import random
import struct
import sys
from dataclasses import dataclass, field

import logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import (ARP, DNS, DNSQR, ICMPv6ND_NS, ICMPv6PacketTooBig, Dot1Q, Ether, ICMP, ICMPv6EchoRequest, ICMPv6DestUnreach, IP, IPv6,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                       IPOption_RR, GRE, Raw, TCP, UDP, wrpcap)

ROUTER = "02:00:00:00:00:fe"
US = "02:00:00:00:00:01"

# Backends of each VIP in outside.toml, by (vip address, port, protocol); port 0 = any port.
V4, V6 = "192.0.2.10", "2001:db8::10"
BACKENDS = {
    (V4, 80, "tcp"): ("ipip", {"10.1.0.1", "10.1.0.2"}),
    (V4, 443, "tcp"): ("ipip", {"fc00:1::1", "fc00:1::2"}),
    (V6, 80, "tcp"): ("ipip", {"10.2.0.1", "10.2.0.2"}),
    (V6, 443, "tcp"): ("ipip", {"fc00:2::1", "fc00:2::2"}),
    (V4, 0, "udp"): ("gue", {"10.3.0.1", "10.3.0.2"}),
    (V6, 0, "udp"): ("gue", {"fc00:3::1"}),
    ("192.0.2.20", 0, "tcp"): ("gue", {"fc00:4::1"}),
    ("2001:db8::20", 0, "tcp"): ("gue", {"10.4.0.1"}),
}


@dataclass
class Case:
    description: str
    frame: object  # a scapy packet or bytes
    outcome: str   # forwarded, host, replied, or a drop reason
    vip: tuple = None  # for forwarded: key into BACKENDS
    extra: dict = field(default_factory=dict)


def eth(vlan=None):
    e = Ether(dst=US, src=ROUTER)
    return e / Dot1Q(vlan=vlan) if vlan is not None else e


def outside_cases(seed=7):
    rnd = random.Random(seed)
    c = []
    c4, c6 = "198.51.100.7", "2001:db8:1::7"
    # Forwarded: every encapsulation and family combination, with variations of the inner packet.
    for i in range(6):
        c.append(Case(f"4in4 tcp flow {i}", eth() / IP(src=f"198.51.100.{i+1}", dst=V4, tos=4 * i) /
                      TCP(sport=1000 + i, dport=80, flags="S"), "forwarded", (V4, 80, "tcp")))
    c.append(Case("4in4 without DF keeps the inner id", eth() / IP(src=c4, dst=V4, flags=0, id=4321) / TCP(dport=80),
                  "forwarded", (V4, 80, "tcp")))
    c.append(Case("4in4 ECN and DSCP copied", eth() / IP(src=c4, dst=V4, tos=0xB9, flags="DF") / TCP(dport=80) / Raw(b"x" * 100),
                  "forwarded", (V4, 80, "tcp")))
    c.append(Case("4in4 IPv4 options carried", eth() / IP(src=c4, dst=V4, options=[IPOption_RR()]) / TCP(dport=80, sport=7),
                  "forwarded", (V4, 80, "tcp")))
    c.append(Case("4in4 802.1Q tagged", eth(vlan=42) / IP(src=c4, dst=V4) / TCP(dport=80, sport=8), "forwarded", (V4, 80, "tcp")))
    c.append(Case("4in4 Ethernet padding not carried", bytes(eth() / IP(src=c4, dst=V4) / TCP(dport=80, sport=9)) + b"\0" * 6,
                  "forwarded", (V4, 80, "tcp")))
    c.append(Case("4in4 data packet of a known flow", eth() / IP(src="198.51.100.1", dst=V4) / TCP(sport=1000, dport=80, flags="A"),
                  "forwarded", (V4, 80, "tcp")))
    c.append(Case("4in6", eth() / IP(src=c4, dst=V4, tos=0x10) / TCP(sport=5, dport=443), "forwarded", (V4, 443, "tcp")))
    c.append(Case("6in4", eth() / IPv6(src=c6, dst=V6, tc=0x20) / TCP(sport=6, dport=80), "forwarded", (V6, 80, "tcp")))
    c.append(Case("6in4 with hop-by-hop and destination options",
                  eth() / IPv6(src=c6, dst=V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(sport=7, dport=80),
                  "forwarded", (V6, 80, "tcp")))
    c.append(Case("6in4 with a routing header (segments left 0)",
                  eth() / IPv6(src=c6, dst=V6) / IPv6ExtHdrRouting(addresses=["2001:db8::99"], segleft=0) / TCP(sport=8, dport=80),
                  "forwarded", (V6, 80, "tcp")))
    c.append(Case("6in6", eth() / IPv6(src=c6, dst=V6, tc=0xB8, fl=12345) / TCP(sport=9, dport=443) / Raw(b"y" * 200),
                  "forwarded", (V6, 443, "tcp")))
    for i in range(3):
        c.append(Case(f"GUE 4in4 udp any port {i}", eth() / IP(src=c4, dst=V4) / UDP(sport=2000 + i, dport=53 + i) / Raw(b"q" * i),
                      "forwarded", (V4, 0, "udp")))
    c.append(Case("GUE 6in6 udp any port", eth() / IPv6(src=c6, dst=V6) / UDP(sport=3000, dport=5353) / Raw(b"dns?"),
                  "forwarded", (V6, 0, "udp")))
    c.append(Case("GUE 6in6 odd length (checksum padding)", eth() / IPv6(src=c6, dst=V6) / UDP(sport=3001, dport=9) / Raw(b"abc"),
                  "forwarded", (V6, 0, "udp")))
    c.append(Case("GUE 4in6 any TCP port", eth() / IP(src=c4, dst="192.0.2.20") / TCP(sport=10, dport=8443),
                  "forwarded", ("192.0.2.20", 0, "tcp")))
    c.append(Case("GUE 6in4 any TCP port", eth() / IPv6(src=c6, dst="2001:db8::20") / TCP(sport=11, dport=22),
                  "forwarded", ("2001:db8::20", 0, "tcp")))
    c.append(Case("largest 4in4 that fits the MTU", eth() / IP(src=c4, dst=V4) / TCP(dport=80, sport=12) / Raw(b"m" * 1440),
                  "forwarded", (V4, 80, "tcp")))
    # To the host: not IP, or not a VIP address.
    c.append(Case("ARP", Ether(dst="ff:ff:ff:ff:ff:ff", src=ROUTER) / ARP(pdst="10.0.0.10"), "host"))
    c.append(Case("IPv4 to a non-VIP address (BGP)", eth() / IP(src="10.0.0.1", dst="10.0.0.10") / TCP(sport=179, dport=40000), "host"))
    c.append(Case("IPv6 neighbour traffic to a non-VIP", eth() / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6EchoRequest(), "host"))
    c.append(Case("stacked VLANs (QinQ)", Ether(dst=US, src=ROUTER, type=0x88A8) / Dot1Q(vlan=1) / IP(dst=V4) / TCP(dport=80), "host"))
    c.append(Case("ICMPv6 neighbour solicitation to a VIP address", eth() / IPv6(src=c6, dst=V6, hlim=255) /
                  ICMPv6ND_NS(tgt=V6), "host"))
    c.append(Case("LLDP", Ether(dst="01:80:c2:00:00:0e", src=ROUTER, type=0x88CC) / Raw(b"\x02\x07\x04" + b"\0" * 40), "host"))
    # Replies.
    c.append(Case("ICMP echo to a VIP", eth() / IP(src=c4, dst=V4) / ICMP(id=7, seq=1) / Raw(b"ping"), "replied"))
    c.append(Case("ICMP echo, all-zero message", eth() / IP(src=c4, dst=V4) / ICMP(id=0, seq=0), "replied"))
    c.append(Case("ICMPv6 echo to a VIP", eth() / IPv6(src=c6, dst=V6) / ICMPv6EchoRequest(id=9, seq=2, data=b"ping6"), "replied"))
    # Too big for the tunnel: ICMP "fragmentation needed" / ICMPv6 "packet too big" to the client.
    c.append(Case("too big after encapsulation, IPv4 with DF (4in4)", eth() / IP(src=c4, dst=V4, flags="DF") /
                  TCP(dport=80, sport=15) / Raw(b"d" * 1460), "replied", vip=(V4, 80, "tcp")))
    c.append(Case("too big after encapsulation, IPv6 (6in6)", eth() / IPv6(src=c6, dst=V6) / TCP(dport=443, sport=16) /
                  Raw(b"e" * 1440), "replied", vip=(V6, 443, "tcp")))
    c.append(Case("too big after encapsulation, IPv4 with DF (4in6 GUE, VLAN)", eth(vlan=7) /
                  IP(src=c4, dst="192.0.2.20", flags="DF") / TCP(dport=8443, sport=17) / Raw(b"f" * 1460), "replied",
                  vip=("192.0.2.20", 0, "tcp")))
    # ICMP errors from routers about packets a VIP sent (a backend's DSR replies): to that flow's backend.
    c.append(Case("ICMP fragmentation needed about a VIP's TCP packet", eth() / IP(src="203.0.113.1", dst=V4) /
                  ICMP(type=3, code=4, nexthopmtu=1400) / IP(src=V4, dst=c4, flags="DF") / TCP(sport=80, dport=4001),
                  "forwarded", vip=(V4, 80, "tcp")))
    c.append(Case("ICMPv6 packet too big about a VIP's TCP packet", eth() / IPv6(src="2001:db8:ff::1", dst=V6) /
                  ICMPv6PacketTooBig(mtu=1400) / IPv6(src=V6, dst=c6) / TCP(sport=443, dport=4002) / Raw(b"r" * 100),
                  "forwarded", vip=(V6, 443, "tcp")))
    c.append(Case("ICMP time exceeded about a port-0 VIP's UDP packet (GUE)", eth() / IP(src="203.0.113.2", dst=V4) /
                  ICMP(type=11, code=0) / IP(src=V4, dst=c4) / UDP(sport=5353, dport=4003), "forwarded", vip=(V4, 0, "udp")))
    # Drops.
    # A first fragment carries the ports: its flow's backend; a later one whose first never comes is
    # held, then given up (when simulate or ternd finishes, if not after two seconds).
    c.append(Case("IPv4 first fragment", eth() / IP(src=c4, dst=V4, flags="MF", id=4242) / TCP(dport=80), "forwarded",
                  (V4, 80, "tcp")))
    c.append(Case("IPv4 later fragment without its first", eth() / IP(src=c4, dst=V4, frag=100, proto=6, id=999) / Raw(b"z" * 16),
                  "fragment_timeout"))
    c.append(Case("IPv6 first fragment", eth() / IPv6(src=c6, dst=V6) / IPv6ExtHdrFragment(m=1, id=77) / TCP(dport=80), "forwarded",
                  (V6, 80, "tcp")))
    c.append(Case("IPv6 later fragment without its first", eth() / IPv6(src=c6, dst=V6) / IPv6ExtHdrFragment(offset=10, id=78, nh=6) /
                  Raw(b"z" * 16), "fragment_timeout"))
    c.append(Case("no VIP on that port", eth() / IP(src=c4, dst=V4) / TCP(dport=8080), "no_service"))
    c.append(Case("GRE to a VIP address", eth() / IP(src=c4, dst=V4) / GRE(), "no_service"))
    c.append(Case("UDP to a TCP-only VIP address", eth() / IP(src=c4, dst="192.0.2.20") / UDP(dport=53), "no_service"))
    c.append(Case("every backend drained", eth() / IP(src=c4, dst="192.0.2.30") / TCP(dport=80), "no_backend"))
    # No ICMP answer to a source that is not one host (RFC 1122 3.2.2, RFC 4443 2.4) or is a VIP.
    for src in ("255.255.255.255", "224.0.0.1", "0.0.0.0", "127.0.0.1", "240.0.0.1", V4):
        c.append(Case(f"echo request from {src}", eth() / IP(src=src, dst=V4) / ICMP(type=8) / Raw(b"ping"), "bad_source"))
    for src in ("ff02::1", "::1", "::"):
        c.append(Case(f"echo request from {src}", eth() / IPv6(src=src, dst=V6) / ICMPv6EchoRequest(), "bad_source"))
    c.append(Case("too big with DF from a broadcast source", eth() / IP(src="255.255.255.255", dst=V4, flags="DF") /
                  TCP(dport=80, sport=15) / Raw(b"m" * 1460), "bad_source"))
    # UDP to a GUE VIP's own gue_port would be GUE inside GUE at the backend.
    c.append(Case("UDP to the GUE port of a GUE VIP", eth() / IP(src=c4, dst=V4) / UDP(sport=4000, dport=6080) / Raw(b"g" * 8),
                  "gue_in_gue"))
    c.append(Case("UDP to the GUE port of an IPv6 GUE VIP", eth() / IPv6(src=c6, dst=V6) / UDP(sport=4000, dport=6080), "gue_in_gue"))
    # Toward an IPv4 tunnel it would leave as outer fragments (test_simulate's check_outer_fragments).
    c.append(Case("too big after encapsulation, IPv4 without DF, IPv6 tunnel (4in6)", eth() / IP(src=c4, dst=V4) /
                  TCP(dport=443, sport=13) / Raw(b"m" * 1460), "too_big"))
    c.append(Case("ICMP unreachable to a VIP quoting nothing", eth() / IP(src=c4, dst=V4) / ICMP(type=3, code=4) / Raw(b"\0" * 28),
                  "icmp_unsupported"))
    c.append(Case("ICMP unreachable quoting another address's packet", eth() / IP(src="203.0.113.1", dst=V4) /
                  ICMP(type=3, code=4, nexthopmtu=1400) / IP(src="192.0.2.99", dst=c4) / TCP(sport=80, dport=4000),
                  "icmp_unsupported"))
    good = bytes(eth() / IP(src=c4, dst=V4) / TCP(dport=80, sport=14))
    c.append(Case("truncated Ethernet header", good[:10], "malformed"))
    c.append(Case("truncated IPv4 header", good[:30], "malformed"))
    c.append(Case("IPv4 total length longer than the frame",
                  bytes(eth() / IP(src=c4, dst=V4, len=200) / TCP(dport=80)), "malformed"))
    c.append(Case("IPv4 header length below 5 words", bytes(eth() / IP(src=c4, dst=V4, ihl=4) / TCP(dport=80)), "malformed"))
    c.append(Case("IPv4 version field 6 in an IPv4 frame", bytes(eth() / IP(src=c4, dst=V4, version=6) / TCP(dport=80)), "malformed"))
    c.append(Case("TCP data offset below 5 words", eth() / IP(src=c4, dst=V4) / TCP(dport=80, dataofs=3), "malformed"))
    c.append(Case("TCP header cut short", eth() / IP(src=c4, dst=V4, proto=6) / Raw(b"\x00\x50\x00\x50\0\0"), "malformed"))
    c.append(Case("UDP length longer than the packet", eth() / IP(src=c4, dst=V4) / UDP(dport=53, len=300), "malformed"))
    c.append(Case("IPv6 payload length longer than the frame", eth() / IPv6(src=c6, dst=V6, plen=500) / TCP(dport=80), "malformed"))
    c.append(Case("IPv6 extension header running past the packet",
                  bytes(eth() / IPv6(src=c6, dst=V6, nh=0, plen=8) / Raw(b"\x06\x05" + b"\0" * 6)), "malformed"))
    # A few random flows to every VIP, in a shuffled order.
    random_cases = []
    for i in range(40):
        key = rnd.choice(list(BACKENDS))
        addr, port, proto = key
        dport = port or rnd.randrange(1, 65536)
        src = f"198.51.100.{rnd.randrange(1, 255)}" if ":" not in addr else f"2001:db8:1::{rnd.randrange(1, 65535):x}"
        ip = IP(src=src, dst=addr, tos=rnd.randrange(256)) if ":" not in addr else IPv6(src=src, dst=addr, tc=rnd.randrange(256))
        l4 = TCP(sport=rnd.randrange(1024, 65536), dport=dport) if proto == "tcp" else UDP(sport=rnd.randrange(1024, 65536), dport=dport)
        random_cases.append(Case(f"random flow {i}", eth() / ip / l4 / Raw(bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 300)))),
                                 "forwarded", key))
    c += random_cases
    return c


def demo_frames(count=2000, seed=1):
    """Mixed traffic for configs/example.toml: web flows (several packets each), DNS over IPv6,
    pings, ARP and a few bad packets."""
    rnd = random.Random(seed)
    frames = []
    for i in range(count):
        r = rnd.random()
        if r < 0.70:
            flow = rnd.randrange(200)
            frames.append(eth() / IP(src=f"198.51.{100 + flow // 250}.{flow % 250 + 1}", dst="192.0.2.10") /
                          TCP(sport=20000 + flow, dport=80, flags="A") / Raw(b"GET / HTTP/1.1\r\n"))
        elif r < 0.90:
            frames.append(eth() / IPv6(src=f"2001:db8:1::{rnd.randrange(1, 4000):x}", dst="2001:db8::53") /
                          UDP(sport=rnd.randrange(1024, 65536), dport=53) / DNS(id=i, qd=DNSQR(qname="www.example.com")))
        elif r < 0.95:
            frames.append(eth() / IP(src="198.51.100.200", dst="192.0.2.10") / ICMP(seq=i))
        elif r < 0.98:
            frames.append(Ether(dst="ff:ff:ff:ff:ff:ff", src=ROUTER) / ARP(pdst="10.0.0.10"))
        else:
            frames.append(eth() / IP(src="198.51.100.9", dst="192.0.2.10", flags="MF") / TCP(dport=80))
    for i, f in enumerate(frames):
        f.time = 1_700_000_000 + i * 0.001
    return frames


def frame_bytes(case):
    return case.frame if isinstance(case.frame, bytes) else bytes(case.frame)


def write_frames(path, frames):
    """Writes raw frames (bytes) as they are, 1 ms apart."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000 * 1000, len(frame), len(frame)))
            f.write(frame)


if __name__ == "__main__":
    if sys.argv[1] == "--demo":
        wrpcap(sys.argv[2], demo_frames())
        print(f"wrote {sys.argv[2]}: 2000 packets")
    elif sys.argv[1] == "--cases":
        write_frames(sys.argv[2], [frame_bytes(c) for c in outside_cases()])
    else:
        sys.exit(__doc__)
