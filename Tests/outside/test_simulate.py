#!/usr/bin/python3
"""Outside check of `ternctl simulate`: tshark and scapy, not Tern's own decoder, judge what Tern
emits for every case in make_pcap.outside_cases().

- the JSON counters match the expected outcome of every case (RX = sum of verdicts);
- every transmitted frame decodes in tshark as the expected stack (outer IPv4/IPv6, UDP + GUE when
  expected, inner IPv4/IPv6), every IPv4 header checksum (outer and inner) and the UDP checksum over
  IPv6 are valid, and tshark flags nothing as malformed;
- scapy: Ethernet to the gateway, outer header fields per DESIGN.md, the outer destination is one of
  the VIP's backends, and the inner packet is byte-identical to the input IP packet.

Usage: test_simulate.py PATH/TO/ternctl
"""
import ipaddress
import json
import os
import subprocess
import sys
import tempfile

import logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, IPv6, UDP, Dot1Q, rdpcap, raw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_pcap  # noqa: E402
import reference  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)


def inner_ip_bytes(frame):
    """The IP packet inside an input frame, without VLAN tag or Ethernet padding."""
    p = Ether(frame)
    layer = p.payload
    if isinstance(layer, Dot1Q):
        layer = layer.payload
    data = raw(layer)
    if isinstance(layer, IP):
        return data[:layer.len]
    return data[:40 + layer.plen]


def tshark_fields(path):
    out = subprocess.run(
        ["tshark", "-r", path, "-X", f"lua_script:{HERE}/gue.lua", "-o", "ip.check_checksum:TRUE",
         "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:FALSE", "-T", "fields", "-E", "separator=|",
         "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.protocols", "-e", "ip.checksum.status",
         "-e", "udp.checksum.status", "-e", "_ws.malformed", "-e", "_ws.expert.severity", "-e", "icmp.checksum.status",
         "-e", "icmpv6.checksum.status"],
        check=True, capture_output=True, text=True)
    return [line.split("|") for line in out.stdout.splitlines()]


def check_against_reference(ternctl, cases, sent, out_frames):
    """An independent implementation of the documented hash and Maglev builder (reference.py) must
    build the same tables as `ternctl table` and pick the same backend for every forwarded flow."""
    import tomllib
    tables = {}
    for config_path in [os.path.join(HERE, "outside.toml"), os.path.join(HERE, "../../configs/example.toml")]:
        with open(config_path, "rb") as f:
            config = tomllib.load(f)
        m = config["maglev"]["table_size"]
        for vip in config["vip"]:
            expected = reference.build([(b["address"], b.get("weight", 100)) for b in vip["backend"]], m)
            v6 = ":" in vip["address"]
            name = f"{'[%s]' % vip['address'] if v6 else vip['address']}:{vip['port']}/{vip['protocol']}"
            got = subprocess.run([ternctl, "table", "--config", config_path, "--vip", name], check=True,
                                 capture_output=True, text=True).stdout.split()
            check(got == [a or "-" for a in expected], f"{config_path} {name}: ternctl table differs from reference.py")
            if config_path.endswith("outside.toml"):
                tables[(vip["address"], vip["port"], vip["protocol"])] = expected
    for case, frame in zip(sent, out_frames):
        if case.outcome != "forwarded":
            continue
        inner = inner_ip_bytes(make_pcap.frame_bytes(case))
        p = IPv6(inner) if inner[0] >> 4 == 6 else IP(inner)
        quoted = next((p[n] for n in ("IPerror", "IPerror6") if n in p), None)
        if quoted is not None:  # an ICMP error: hashed as the flow it quotes, client to VIP
            l4 = quoted["UDPerror"] if "UDPerror" in quoted else quoted["TCPerror"]
            proto = 17 if "UDPerror" in quoted else 6
            h = reference.flow_hash(quoted.dst, quoted.src, l4.dport, l4.sport, proto)
        else:
            l4 = p[UDP] if UDP in p else p["TCP"]
            proto = 17 if UDP in p else 6
            h = reference.flow_hash(p.src, p.dst, l4.sport, l4.dport, proto)
        want = reference.pick(tables[case.vip], h)
        outer = Ether(frame).payload
        check(ipaddress.ip_address(outer.dst) == ipaddress.ip_address(want),
              f"{case.description}: went to {outer.dst}, reference.py picks {want}")


def check_too_big(name, case, o, input_ip, icmp_status, icmpv6_status):
    """A packet too big for its tunnel comes back as ICMP "fragmentation needed" (type 3 code 4) or
    ICMPv6 "packet too big" from the VIP, with the MTU the tunnel leaves and the packet quoted from
    its IP header; tshark verifies the checksums, scapy recomputes them."""
    from scapy.all import ICMP, ICMPv6PacketTooBig
    encap, backends = make_pcap.BACKENDS[case.vip]
    overhead = (40 if ":" in next(iter(backends)) else 20) + (12 if encap == "gue" else 0)
    ip = o.payload
    v6 = isinstance(ip, IPv6)
    orig = (IPv6 if v6 else IP)(input_ip)
    check(ip.src == orig.dst and ip.dst == orig.src, f"{name}: addresses {ip.src} -> {ip.dst}")
    data = raw(ip)
    if v6:
        check(ICMPv6PacketTooBig in ip and ip[ICMPv6PacketTooBig].mtu == 1500 - overhead,
              f"{name}: not ICMPv6 packet too big with MTU {1500 - overhead}: {ip.summary()}")
        check(icmpv6_status == "1", f"{name}: tshark ICMPv6 checksum status {icmpv6_status!r}")
        check(ip.hlim == 64 and len(data) == 1280 and data[48:] == input_ip[:1232], f"{name}: length or quote")
        recomputed = IPv6(data)
        del recomputed[ICMPv6PacketTooBig].cksum
        check(raw(IPv6(raw(recomputed))) == data, f"{name}: ICMPv6 checksum differs from scapy's")
    else:
        icmp = ip[ICMP]
        check(icmp.type == 3 and icmp.code == 4 and icmp.nexthopmtu == 1500 - overhead,
              f"{name}: ICMP type {icmp.type} code {icmp.code} MTU {icmp.nexthopmtu}, expected 3/4/{1500 - overhead}")
        check(icmp_status == "1", f"{name}: tshark ICMP checksum status {icmp_status!r}")
        check(ip.ttl == 64 and len(data) == 576 and data[28:] == input_ip[:548], f"{name}: length or quote")
        recomputed = IP(data)
        del recomputed.chksum
        del recomputed[ICMP].chksum
        check(raw(IP(raw(recomputed))) == data, f"{name}: checksums differ from scapy's")


def max_rss_kib(cmd):
    """Peak resident memory of a command, in KiB (GNU time's %M)."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return int(p.stderr.strip().splitlines()[-1])


def check_streaming(ternctl, tmp):
    """simulate streams: its peak memory does not grow with the capture, and a cut-off last
    record ends the capture (reported and counted) instead of failing the run."""
    config = os.path.join(HERE, "outside.toml")
    frames = [bytes(f) for f in make_pcap.demo_frames(2000)]
    small, large, out = (os.path.join(tmp, n) for n in ("small.pcap", "large.pcap", "stream-out.pcap"))
    make_pcap.write_frames(small, frames)
    make_pcap.write_frames(large, frames * 50)  # 100,000 frames
    rss = [max_rss_kib([ternctl, "simulate", "--config", config, "--in", p, "--out", out]) for p in (small, large)]
    check(rss[1] - rss[0] < 8 * 1024, f"streaming: peak RSS {rss[0]} KiB for 2,000 frames, {rss[1]} KiB for 100,000")
    with open(small, "rb") as f:
        data = f.read()
    cut = os.path.join(tmp, "cut.pcap")
    with open(cut, "wb") as f:
        f.write(data[:-5])
    p = subprocess.run([ternctl, "simulate", "--config", config, "--in", cut, "--out", out, "--json"], capture_output=True, text=True)
    counts = json.loads(p.stdout) if p.returncode == 0 else {}
    check(p.returncode == 0 and counts.get("rx") == len(frames) - 1 and counts.get("truncated_records") == 1
          and "record 1999 truncated" in p.stderr, f"truncated last record: exit {p.returncode}, {p.stdout[:200]} {p.stderr[-300:]}")
    print(f"ok: simulate streams (peak RSS {rss[0]} KiB for 2,000 frames, {rss[1]} KiB for 100,000) and reads past a cut-off "
          "last record", flush=True)


def check_mss_clamping(ternctl, tmp):
    """clamp_mss: tshark reads the inner SYNs' MSS after simulate: lowered to what the tunnel
    carries (IPv4 in IPIP 1440, IPv6 in IPv6 1400 at MTU 1500), other options intact, TCP checksum
    valid; a SYN under the limit and a non-SYN segment keep theirs. Set on the port (every VIP),
    then on the 4in4 VIP alone (the 6in6 VIP's SYN keeps 1460)."""
    with open(os.path.join(HERE, "outside.toml")) as f:
        text = f.read()
    check_mss_clamped(ternctl, tmp, "port", text.replace("mtu = 1500\n", "mtu = 1500\nclamp_mss = true\n", 1),
                      ["1440", "1400", "1200", "1460"], clamped=2)
    vip = 'address = "192.0.2.10"\nport = 80\nprotocol = "tcp"\n'
    check_mss_clamped(ternctl, tmp, "vip", text.replace(vip, vip + "clamp_mss = true\n", 1), ["1440", "1460", "1200", "1460"], clamped=1)


def check_mss_clamped(ternctl, tmp, where, config_text, expected, clamped):
    from scapy.all import TCP
    config = os.path.join(tmp, "clamp.toml")
    with open(config, "w") as f:
        f.write(config_text)
    options = [("NOP", None), ("MSS", 1460), ("SAckOK", b""), ("WScale", 7), ("Timestamp", (1, 0))]
    frames = [
        Ether(dst=make_pcap.US, src=make_pcap.ROUTER) / IP(src="198.51.100.1", dst="192.0.2.10") / TCP(sport=40000, dport=80, flags="S", options=options),
        Ether(dst=make_pcap.US, src=make_pcap.ROUTER) / IPv6(src="2001:db8:1::1", dst="2001:db8::10") / TCP(sport=40001, dport=443, flags="S", options=options),
        Ether(dst=make_pcap.US, src=make_pcap.ROUTER) / IP(src="198.51.100.1", dst="192.0.2.10") / TCP(sport=40002, dport=80, flags="S", options=[("MSS", 1200)]),
        Ether(dst=make_pcap.US, src=make_pcap.ROUTER) / IP(src="198.51.100.1", dst="192.0.2.10") / TCP(sport=40003, dport=80, flags="A", options=[("MSS", 1460)]),
    ]
    inp, outp = os.path.join(tmp, "clamp-in.pcap"), os.path.join(tmp, "clamp-out.pcap")
    make_pcap.write_frames(inp, [raw(f) for f in frames])
    p = subprocess.run([ternctl, "simulate", "--config", config, "--in", inp, "--out", outp, "--json"], capture_output=True, text=True)
    counts = json.loads(p.stdout) if p.returncode == 0 else {}
    out = subprocess.run(["tshark", "-r", outp, "-o", "tcp.check_checksum:TRUE", "-T", "fields", "-E", "separator=|",
                          "-e", "tcp.options.mss_val", "-e", "tcp.checksum.status", "-e", "tcp.options.wscale.shift",
                          "-e", "tcp.options.sack_perm"], capture_output=True, text=True).stdout.splitlines()
    rows = [line.split("|") for line in out]
    mss = [r[0] for r in rows]
    # tcp.checksum.status 1: verified good.
    good = (counts.get("forwarded") == 4 and counts.get("mss_clamped") == clamped and mss == expected
            and all(r[1] == "1" for r in rows) and rows[0][2] == "7" and rows[1][3] != "")
    check(good, f"clamp_mss on the {where}: counts {counts}, tshark {rows}")
    if good:
        print(f"ok: clamp_mss on the {where}: tshark reads the inner SYNs' MSS as {'/'.join(expected[:2])} (4in4/6in6), other "
              "options and the TCP checksum intact; a small MSS and a non-SYN left alone", flush=True)


def check_vlan(ternctl, tmp):
    """[[port]] vlan = 100: tshark decodes what simulate emits: encapsulated packets and echo
    replies tagged 100 with the outer and inner headers intact (IPv4 and IPv6 outer, GUE); a frame
    tagged 200 is the host's; untagged requests are answered tagged."""
    from scapy.all import ICMP, TCP, UDP, Dot1Q
    with open(os.path.join(HERE, "outside.toml")) as f:
        config_text = f.read().replace("mtu = 1500\n", "mtu = 1500\nvlan = 100\n", 1)
    config = os.path.join(tmp, "vlan.toml")
    with open(config, "w") as f:
        f.write(config_text)
    e = Ether(dst=make_pcap.US, src=make_pcap.ROUTER)
    frames = [
        e / Dot1Q(vlan=100) / IP(src="198.51.100.1", dst="192.0.2.10") / TCP(sport=40000, dport=80, flags="S"),
        e / IP(src="198.51.100.2", dst="192.0.2.10") / TCP(sport=40001, dport=80, flags="S"),
        e / Dot1Q(vlan=100) / IPv6(src="2001:db8:1::1", dst="2001:db8::10") / TCP(sport=40002, dport=443, flags="S"),
        e / Dot1Q(vlan=200) / IP(src="198.51.100.3", dst="192.0.2.10") / TCP(sport=40003, dport=80, flags="S"),
        e / IP(src="198.51.100.4", dst="192.0.2.10") / ICMP(type=8, id=1, seq=1),
        e / Dot1Q(vlan=200) / IP(src="198.51.100.5", dst="192.0.2.10") / ICMP(type=8, id=1, seq=2),
    ]
    inp, outp = os.path.join(tmp, "vlan-in.pcap"), os.path.join(tmp, "vlan-out.pcap")
    make_pcap.write_frames(inp, [raw(f) for f in frames])
    p = subprocess.run([ternctl, "simulate", "--config", config, "--in", inp, "--out", outp, "--json"], capture_output=True, text=True)
    counts = json.loads(p.stdout) if p.returncode == 0 else {}
    out = subprocess.run(["tshark", "-r", outp, "-o", "tcp.check_checksum:TRUE", "-T", "fields", "-E", "separator=|", "-E", "occurrence=l",
                          "-e", "vlan.id", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.srcport", "-e", "icmp.type"],
                         capture_output=True, text=True).stdout.splitlines()
    rows = [line.split("|") for line in out]
    good = (counts.get("forwarded") == 3 and counts.get("replied") == 1 and counts.get("host") == 2
            and [r[0] for r in rows] == ["100"] * 4
            and [r[3] for r in rows[:3]] == ["40000", "40001", "40002"] and rows[3][4] == "0"
            and rows[0][1] == "192.0.2.10" and rows[2][2] == "2001:db8::10")
    check(good, f"vlan: counts {counts}, tshark {rows}")
    if good:
        print("ok: vlan = 100: tshark decodes encapsulated SYNs (4in4, 6in6) and an echo reply tagged 100 with inner headers "
              "intact; frames tagged 200 go to the host", flush=True)


def check_quic(ternctl, tmp):
    """quic = true: scapy crafts Katran's QUIC fixture payloads (CID versions 1 and 2, long and
    short headers, unmapped and zero ids) and a client that migrates mid-connection; what
    simulate emits goes to the backend the connection ID names, or where Maglev puts it (as a
    VIP without quic would) when it names none."""
    from scapy.all import UDP
    backends = {"10.1.0.1": 1024, "10.1.0.2": 1026, "10.1.0.3": 197634, "10.1.0.4": 0x12345678}

    def config(quic):
        path = os.path.join(tmp, f"quic-{quic}.toml")
        with open(path, "w") as f:
            f.write('[node]\nname = "quic"\ntunnel_source_v4 = "10.0.0.10"\n[[port]]\ndevice = "net_pcap0"\n'
                    f'gateway_mac = "{make_pcap.ROUTER}"\nmac = "{make_pcap.US}"\n'
                    f'[[vip]]\naddress = "192.0.2.20"\nport = 443\nprotocol = "udp"\nquic = {"true" if quic else "false"}\n'
                    + "".join(f'[[vip.backend]]\naddress = "{a}"\n' + (f"quic_server_id = {i}\n" if quic else "")
                              for a, i in backends.items()))
        return path

    def run(quic, frames, name):
        inp, outp = os.path.join(tmp, f"{name}-in.pcap"), os.path.join(tmp, f"{name}-out.pcap")
        make_pcap.write_frames(inp, [raw(f) for f in frames])
        p = subprocess.run([ternctl, "simulate", "--config", config(quic), "--in", inp, "--out", outp, "--json"],
                           check=True, capture_output=True, text=True)
        return [fr[IP].dst for fr in rdpcap(outp)], json.loads(p.stdout)

    def packet(sport, payload, src="192.168.1.42"):
        return Ether(dst=make_pcap.US, src=make_pcap.ROUTER) / IP(src=src, dst="192.0.2.20") / UDP(sport=sport, dport=443) / payload

    data = b"quic data\x00@"
    katran = [  # (payload, the server id it names, or None), from Katran's fixture suite
        (b"\xcf\xfa\xce\xb0\x01\x08\x41\x02\x03\x04\x05\x06\x07\x00\x00\x01\x11\x01" + data, None),  # Initial
        (b"\xdf\xfa\xce\xb0\x01\x08\x43\xff\x33\x44\x55\x66\x77\x88\x00\x01\x11\x01" + data, None),  # 0-RTT
        (b"\xef\xfa\xce\xb0\x01\x08\x41\x00\x03\x04\x05\x06\x07\x00\x00\x01\x11\x01" + data, 1024),  # Handshake, v1
        (b"\xff\xfa\xce\xb0\x01\x08\x41\x00\x03\x04\x05\x06\x07\x00\x00\x01\x11\x01" + data, 1024),  # Retry, v1
        (b"\x00", None),  # short header, no connection ID
        (b"\x00\x41\x00\x83\x04\x05\x06\x07\x00@", 1026),  # short, v1
        (b"\x00\x41\x11\x00\x00\x00\x00\x00\x00@", None),  # short, v1 id 1092: no such backend
        (b"\x00\x40\x00\x03\x04\x05\x06\x07\x00@", None),  # short, v1 id 0
        (b"\x00\x80\x03\x04\x02\x05\x06\x07\x00@", 197634),  # short, v2
        (b"\x00\x80\x03\x04\x44\x00\x00\x00\x00@", None),  # short, v2 id 197700: no such backend
        (b"\x40\xc0\x12\x34\x56\x78\x00\x00\x00@", 0x12345678),  # short, v3
    ]
    frames = [packet(31337 + i, payload) for i, (payload, _) in enumerate(katran)]
    got, counts = run(True, frames, "quic-katran")
    plain, _ = run(False, frames, "quic-plain")
    by_id = {i: a for a, i in backends.items()}
    want = [by_id[i] if i else plain[k] for k, (_, i) in enumerate(katran)]
    ok = (got == want and counts.get("quic_by_server_id") == 5 and counts.get("quic_unknown_server_id") == 2
          and counts.get("quic_without_server_id") == 4)
    check(ok, f"quic: Katran's payloads went to {got}, expected {want}; counts {counts}")

    # Migration: the Initial from port 5000 lands where Maglev puts it; that backend's server id
    # in the connection ID then keeps the connection there from other ports and another address.
    first, _ = run(True, [packet(5000, katran[0][0], src="198.51.100.7")], "quic-first")
    chosen = first[0]
    cid = (0xC0).to_bytes(1, "big") + backends[chosen].to_bytes(4, "big") + b"\x01\x02\x03"
    short = b"\x40" + cid + b"payload"
    moves = [packet(5000, katran[0][0], src="198.51.100.7")] + [packet(5000, short, src="198.51.100.7")]
    moves += [packet(6000 + k, short, src="198.51.100.7") for k in range(8)] + [packet(7000, short, src="203.0.113.50")]
    got, _ = run(True, moves, "quic-migrate")
    elsewhere, _ = run(False, moves, "quic-migrate-plain")
    migrated_ok = got == [chosen] * len(moves) and any(d != chosen for d in elsewhere)
    check(migrated_ok, f"quic migration: {got} (plain VIP: {elsewhere}), chosen {chosen}")
    if ok and migrated_ok:
        print(f"ok: quic: scapy-crafted Katran payloads (v1, v2, v3 IDs; Handshake and Retry; unmapped and zero ids) go to the "
              f"backend their ID names or where Maglev puts them; a client moving across 9 ports and another address stays on "
              f"{chosen} (a VIP without quic spreads those over {len(set(elsewhere))} backends)", flush=True)


def check_outer_fragments(ternctl, tmp):
    """Too big for the tunnel, inner IPv4 without DF: simulate emits outer IPv4 fragments (IPIP
    and GUE) that scapy reassembles into the whole encapsulated packet, the inner packet byte for
    byte; with DF the client gets "fragmentation needed" instead."""
    from scapy.all import ICMP, UDP, TCP, Raw, defragment
    e = Ether(dst=make_pcap.US, src=make_pcap.ROUTER)
    datagrams = [
        e / IP(src="198.51.100.1", dst="192.0.2.10", id=777) / TCP(sport=4000, dport=80, flags="A") / Raw(bytes(range(256)) * 12),
        e / IP(src="198.51.100.2", dst="192.0.2.10", id=778) / UDP(sport=4001, dport=5353) / Raw(b"u" * 4000),
    ]
    with_df = e / IP(src="198.51.100.3", dst="192.0.2.10", flags="DF") / TCP(sport=4002, dport=80, flags="A") / Raw(b"d" * 3000)
    inp, outp = os.path.join(tmp, "ofrag-in.pcap"), os.path.join(tmp, "ofrag-out.pcap")
    make_pcap.write_frames(inp, [raw(f) for f in datagrams + [with_df]])
    p = subprocess.run([ternctl, "simulate", "--config", os.path.join(HERE, "outside.toml"), "--in", inp, "--out", outp, "--json"],
                       capture_output=True, text=True)
    counts = json.loads(p.stdout) if p.returncode == 0 else {}
    out = rdpcap(outp)
    fragments = [f for f in out if IP in f and f[IP].proto in (4, 17) and (f[IP].flags.MF or f[IP].frag > 0)]
    whole = defragment(fragments)
    inner = []
    for pkt in whole:
        if pkt[IP].flags.MF or pkt[IP].frag:
            continue
        payload = bytes(pkt[IP].payload)
        inner.append(payload if pkt[IP].proto == 4 else payload[8 + 4:])  # GUE: UDP and GUE headers first
    ok = (counts.get("forwarded") == 2 and counts.get("forwarded_in_fragments") == 2 and counts.get("replied") == 1
          and all(len(f) <= 14 + 1500 for f in out) and all(len(bytes(f[IP])) <= 1500 for f in fragments)
          and sorted(inner) == sorted(bytes(d[IP]) for d in datagrams)
          and any(ICMP in f and f[ICMP].type == 3 and f[ICMP].code == 4 for f in out))
    check(ok, f"outer fragments: counts {counts}, {len(fragments)} fragments, reassembled {len(inner)}")
    if ok:
        print(f"ok: outer fragments: a 3,092-byte TCP segment (IPIP) and a 4,028-byte UDP datagram (GUE) without DF leave as "
              f"{len(fragments)} outer IPv4 fragments of at most 1,500 bytes that scapy reassembles to the inner packets byte for "
              "byte; with DF the client is told the MTU", flush=True)


def check_fragments(ternctl, tmp):
    """IP fragments (scapy's fragment()): in order, interleaved between flows, duplicated, reversed
    and overlapping, every fragment of a datagram reaches the backend the datagram's unfragmented
    packets reach, and scapy reassembles what each backend got into the original datagrams;
    fragments ahead of their first are held and sent after it; those whose first was lost time out
    (`fragment_timeout`), all counted."""
    from scapy.all import ICMP, TCP, Raw, fragment, defragment
    e = Ether(dst=make_pcap.US, src=make_pcap.ROUTER)
    # A fragmented echo request, middle first: Tern does not answer it; one backend gets it all.
    ping = IP(src="198.51.100.30", dst="192.0.2.10", id=1030) / ICMP(id=30, seq=1) / Raw(b"p" * 3000)
    ping_frags = [e / f for f in fragment(ping, fragsize=1200)]

    def datagram(k):
        return IP(src=f"198.51.100.{k + 10}", dst="192.0.2.10", id=1000 + k) / TCP(sport=2000 + k, dport=80, flags="A") / Raw(
            bytes([k]) * (2600 + 100 * k))

    def frags(k):
        return [e / f for f in fragment(datagram(k), fragsize=1200)]

    a, b, c, d, r, lost, o = (frags(k) for k in range(7))
    # An extra fragment overlapping the first two of datagram 6 (the same bytes again).
    body = raw(datagram(6)[IP].payload)
    overlap = e / IP(src=datagram(6).src, dst="192.0.2.10", id=1006, proto=6, flags="MF", frag=75) / Raw(body[600:1800])
    stream = (a + [x for pair in zip(b, c) for x in pair] + [d[0], d[1], d[1], d[2]] + r[::-1] + lost[1:]
              + [o[0], overlap, o[1], o[2]] + [ping_frags[1], ping_frags[0], ping_frags[2]])
    # One unfragmented packet of each flow: where its datagram's fragments must go.
    probes = [e / IP(src=f"198.51.100.{k + 10}", dst="192.0.2.10") / TCP(sport=2000 + k, dport=80, flags="A") for k in range(7)]
    inp, outp = os.path.join(tmp, "frag-in.pcap"), os.path.join(tmp, "frag-out.pcap")
    make_pcap.write_frames(inp, [raw(f) for f in stream + probes])
    p = subprocess.run([ternctl, "simulate", "--config", os.path.join(HERE, "outside.toml"), "--in", inp, "--out", outp, "--json"],
                       capture_output=True, text=True)
    counts = json.loads(p.stdout) if p.returncode == 0 else {}
    out = rdpcap(outp)
    tunnelled = [(f[IP].dst, IP(raw(f[IP].payload))) for f in out if IP in f and f[IP].proto == 4]
    probe_backend = {inner.src: dst for dst, inner in tunnelled if not (inner.flags.MF or inner.frag)}
    same_backend = all(dst == probe_backend.get(inner.src) for dst, inner in tunnelled if inner.src != ping.src)
    ping_backends = {dst for dst, inner in tunnelled if inner.src == ping.src}
    reassembled = {}
    for dst in set(d for d, _ in tunnelled):
        # A duplicated fragment arrives twice (the kernel drops the copy; scapy's defragment needs it
        # gone); the overlapping one is left to the kernel's own policy.
        pieces = {raw(inner): inner for d2, inner in tunnelled
                  if d2 == dst and (inner.flags.MF or inner.frag) and raw(inner) != raw(overlap[IP])}
        for pkt in defragment(list(pieces.values())):
            if not (pkt.flags.MF or pkt.frag):
                reassembled[pkt.src] = raw(pkt)
    wanted = {datagram(k).src: raw(IP(raw(datagram(k)))) for k in (0, 1, 2, 3, 4, 6)}
    wanted[ping.src] = raw(IP(raw(ping)))
    # The reversed datagram leaves in the order it came once its first passed: first, then last, middle.
    reversed_order = [inner.frag for _, inner in tunnelled if inner.src == datagram(4).src and (inner.flags.MF or inner.frag)]
    ok = (same_backend and all(reassembled.get(s) == w for s, w in wanted.items()) and datagram(5).src not in reassembled
          and reversed_order == [0, 300, 150]
          and len(ping_backends) == 1
          and counts.get("fragments_followed") == 2 + 4 + 3 + 2 + 3 + 2 and counts.get("fragments_held") == 2 + 2 + 1
          and counts.get("dropped", {}).get("fragment_timeout") == 2 and counts.get("dropped", {}).get("fragment") == 0
          and len(probe_backend) == 7)
    check(ok, f"fragments: same backend {same_backend}, echo to {ping_backends}, reassembled {sorted(reassembled)}, reversed {reversed_order}, counts "
              f"{ {k: counts.get(k) for k in ('forwarded', 'fragments_followed', 'fragments_held', 'dropped')} }")
    if ok:
        print("ok: fragments: in order, interleaved between two flows, duplicated, reversed and overlapping, every fragment "
              "reached its flow's backend and scapy reassembled the datagrams there; reversed ones held and sent after their "
              "first; first-lost ones timed out `fragment_timeout`; a fragmented echo request (middle first) went whole to one "
              "backend", flush=True)


def check_source_hash(ternctl, tmp):
    """hash = "source": scapy reads the outer destination of what simulate emits; every
    connection of a client reaches one backend, and the clients spread over the backends."""
    from scapy.all import TCP
    with open(os.path.join(HERE, "outside.toml")) as f:
        text = f.read().replace('[[vip]]   # 4in4\naddress = "192.0.2.10"\nport = 80\nprotocol = "tcp"\n',
                                '[[vip]]   # 4in4\naddress = "192.0.2.10"\nport = 80\nprotocol = "tcp"\nhash = "source"\n', 1)
    check('hash = "source"' in text, "source hash: the 4in4 VIP of outside.toml was not found")
    config = os.path.join(tmp, "source-hash.toml")
    with open(config, "w") as f:
        f.write(text)
    clients = [f"198.51.100.{i}" for i in range(1, 41)]
    frames = [Ether(dst=make_pcap.US, src=make_pcap.ROUTER) / IP(src=c, dst="192.0.2.10") / TCP(sport=30000 + p, dport=80, flags="S")
              for c in clients for p in range(6)]
    inp, outp = os.path.join(tmp, "hash-in.pcap"), os.path.join(tmp, "hash-out.pcap")
    make_pcap.write_frames(inp, [raw(f) for f in frames])
    subprocess.run([ternctl, "simulate", "--config", config, "--in", inp, "--out", outp], check=True, capture_output=True)
    backends = {}
    for frame in rdpcap(outp):
        inner = IP(raw(frame[IP].payload))
        backends.setdefault(inner.src, set()).add(frame[IP].dst)
    one_each = len(backends) == len(clients) and all(len(b) == 1 for b in backends.values())
    spread = {next(iter(b)) for b in backends.values()}
    check(one_each and len(spread) == 2, f"source hash: backends per client {backends}")
    if one_each and len(spread) == 2:
        print(f"ok: hash = \"source\": scapy reads one outer destination per client over 6 connections each, "
              f"{len(clients)} clients spread over {sorted(spread)}", flush=True)


def check_cidr_vip(ternctl, tmp):
    """address = "198.51.100.0/28": scapy reads what simulate emits for SYNs and pings to every
    address of the prefix and to the first address past it: the 16 are tunnelled (inner
    destination kept) and answered, the 17th goes to the host; the hash spreads over both backends."""
    from scapy.all import ICMP, TCP
    config = os.path.join(tmp, "cidr.toml")
    with open(config, "w") as f:
        f.write('[node]\nname = "cidr"\ntunnel_source_v4 = "10.0.0.10"\n[[port]]\ndevice = "net_pcap0"\n'
                f'gateway_mac = "{make_pcap.ROUTER}"\nmac = "{make_pcap.US}"\n'
                '[[vip]]\naddress = "203.0.113.0/28"\nport = 80\nprotocol = "tcp"\n'
                '[[vip.backend]]\naddress = "10.1.0.1"\n[[vip.backend]]\naddress = "10.1.0.2"\n')
    addresses = [f"203.0.113.{i}" for i in range(17)]
    e = Ether(dst=make_pcap.US, src=make_pcap.ROUTER)
    frames = [e / IP(src=f"198.51.100.{p + 1}", dst=a) / TCP(sport=40000 + p, dport=80, flags="S") for a in addresses for p in range(4)]
    frames += [e / IP(src="198.51.100.200", dst=a) / ICMP(type=8, id=7, seq=i) for i, a in enumerate(addresses)]
    inp, outp = os.path.join(tmp, "cidr-in.pcap"), os.path.join(tmp, "cidr-out.pcap")
    make_pcap.write_frames(inp, [raw(f) for f in frames])
    result = subprocess.run([ternctl, "simulate", "--config", config, "--in", inp, "--out", outp, "--json"], check=True,
                            capture_output=True, text=True)
    counts = json.loads(result.stdout)
    tunnelled, answered, backends = set(), set(), set()
    for frame in rdpcap(outp):
        if frame[IP].proto == 4:
            inner = IP(raw(frame[IP].payload))
            tunnelled.add(inner.dst)
            backends.add(frame[IP].dst)
        elif ICMP in frame and frame[ICMP].type == 0:
            answered.add(frame[IP].src)
    ok = (tunnelled == set(addresses[:16]) and answered == set(addresses[:16]) and backends == {"10.1.0.1", "10.1.0.2"}
          and counts["forwarded"] == 64 and counts["replied"] == 16 and counts["host"] == 5)
    check(ok, f"CIDR VIP: tunnelled {sorted(tunnelled)}, answered {sorted(answered)}, backends {backends}, counts "
              f"{ {k: counts[k] for k in ('forwarded', 'replied', 'host')} }")
    if ok:
        print("ok: a /28 VIP: scapy reads SYNs to all 16 addresses tunnelled (inner destination kept) over both backends, "
              "pings to all 16 answered, the 17th address left to the host", flush=True)


def main(ternctl):
    cases = make_pcap.outside_cases()
    tmp = tempfile.mkdtemp(prefix="tern-outside-")
    inp, outp = os.path.join(tmp, "in.pcap"), os.path.join(tmp, "out.pcap")
    make_pcap.write_frames(inp, [make_pcap.frame_bytes(c) for c in cases])
    result = subprocess.run([ternctl, "simulate", "--config", os.path.join(HERE, "outside.toml"), "--in", inp,
                             "--out", outp, "--json"], check=True, capture_output=True, text=True)
    counts = json.loads(result.stdout)

    # Counters: every case's expected outcome.
    expected = {}
    for c in cases:
        expected[c.outcome] = expected.get(c.outcome, 0) + 1
    check(counts["rx"] == len(cases), f"rx {counts['rx']} != {len(cases)}")
    for verdict in ("forwarded", "host", "replied"):
        check(counts[verdict] == expected.get(verdict, 0), f"{verdict}: got {counts[verdict]}, expected {expected.get(verdict, 0)}")
    for reason, n in counts["dropped"].items():
        check(n == expected.get(reason, 0), f"dropped {reason}: got {n}, expected {expected.get(reason, 0)}")
    check(counts["rx"] == counts["forwarded"] + counts["host"] + counts["replied"] + sum(counts["dropped"].values()),
          "rx != sum of verdicts")

    sent = [c for c in cases if c.outcome in ("forwarded", "replied")]
    out_frames = [raw(p) for p in rdpcap(outp)]
    check(len(out_frames) == len(sent), f"{len(out_frames)} frames written, expected {len(sent)}")
    fields = tshark_fields(outp)
    check(len(fields) == len(out_frames), "tshark saw a different number of frames")

    for case, frame, (protocols, ip_status, udp_status, malformed, severity, icmp_status, icmpv6_status) in zip(
            sent, out_frames, fields, strict=False):
        name = case.description
        o = Ether(frame)
        check(o.dst == make_pcap.ROUTER and o.src == make_pcap.US, f"{name}: Ethernet {o.src} -> {o.dst}")
        # Random payloads may look like broken DNS and so on to tshark; only the layers Tern writes
        # or carries up to the inner transport header must be clean.
        layers = protocols.split(":")
        transport = max((i for i, l in enumerate(layers) if l in ("tcp", "udp", "icmp", "icmpv6")), default=len(layers))
        check(not malformed or transport < len(layers) - 1, f"{name}: tshark says malformed ({protocols})")
        check("1" not in ip_status.split(",") or "0" not in ip_status.split(","), f"{name}: ip checksum status {ip_status}")
        check(all(s == "2" or s == "1" for s in ip_status.split(",") if s), f"{name}: bad IPv4 checksum ({ip_status})")
        input_ip = inner_ip_bytes(make_pcap.frame_bytes(case))
        if case.outcome == "replied" and case.vip is not None:
            check_too_big(name, case, o, input_ip, icmp_status, icmpv6_status)
            continue
        if case.outcome == "replied":
            v6 = isinstance(o.payload, IPv6)
            ip = o.payload
            orig = (IPv6 if v6 else IP)(input_ip)
            check(ip.src == orig.dst and ip.dst == orig.src, f"{name}: reply addresses")
            if not v6:
                check(ip.ttl == 64, f"{name}: reply TTL")
                check("1" in ip_status.split(","), f"{name}: reply IPv4 checksum not verified by tshark")
                recomputed = IP(raw(ip))
                del recomputed.chksum
                del recomputed["ICMP"].chksum
                check(raw(IP(raw(recomputed))) == raw(ip), f"{name}: reply checksums differ from scapy's")
                check(ip["ICMP"].type == 0, f"{name}: reply type")
            else:
                from scapy.all import ICMPv6EchoReply
                check(ICMPv6EchoReply in ip, f"{name}: not an ICMPv6 echo reply")
                recomputed = IPv6(raw(ip))
                del recomputed[ICMPv6EchoReply].cksum
                check(raw(IPv6(raw(recomputed))) == raw(ip), f"{name}: ICMPv6 checksum differs from scapy's")
            continue

        encap, backends = make_pcap.BACKENDS[case.vip]
        outer = o.payload
        inner_v6 = input_ip[0] >> 4 == 6
        inner_name = "ipv6" if inner_v6 else "ip"
        outer_name = "ipv6" if isinstance(outer, IPv6) else "ip"
        stack = f"eth:ethertype:{outer_name}:" + ("udp:gue:" if encap == "gue" else "") + inner_name
        check(protocols.startswith(stack), f"{name}: tshark stack {protocols}, expected {stack}...")
        check(outer.dst in backends, f"{name}: outer destination {outer.dst} not in {backends}")
        inner_proto = 41 if inner_v6 else 4
        tos = input_ip[1] if not inner_v6 else ((input_ip[0] & 0x0F) << 4 | input_ip[1] >> 4)
        if isinstance(outer, IP):
            check(outer.src == "10.0.0.10", f"{name}: outer source {outer.src}")
            check(outer.ttl == 64 and outer.tos == tos, f"{name}: outer ttl {outer.ttl} tos {outer.tos} (inner {tos})")
            inner_df = (not inner_v6) and bool(IP(input_ip).flags.DF)
            check(bool(outer.flags.DF) == (inner_df or inner_v6), f"{name}: outer DF")
            check(outer.proto == (17 if encap == "gue" else inner_proto), f"{name}: outer protocol {outer.proto}")
            recomputed = IP(raw(outer)[:20])
            del recomputed.chksum
            check(IP(raw(recomputed)).chksum == outer.chksum, f"{name}: scapy disagrees with the outer checksum")
            payload = raw(outer)[20:outer.len]
        else:
            check(outer.src == "fc00::10", f"{name}: outer source {outer.src}")
            check(outer.hlim == 64 and outer.tc == tos, f"{name}: outer hop limit {outer.hlim} tc {outer.tc} (inner {tos})")
            check(outer.nh == (17 if encap == "gue" else inner_proto), f"{name}: outer next header {outer.nh}")
            payload = raw(outer)[40:40 + outer.plen]
        if encap == "gue":
            udp = UDP(payload)
            check(udp.dport == 6080 and udp.sport >= 49152, f"{name}: UDP ports {udp.sport} -> {udp.dport}")
            check(udp.len == len(payload), f"{name}: UDP length")
            if isinstance(outer, IPv6):
                check(udp_status.split(",")[0] == "1", f"{name}: tshark UDP checksum status {udp_status!r} (1 = good)")
            else:
                check(udp.chksum == 0, f"{name}: IPv4 GUE UDP checksum should be zero")
            check(payload[8:12] == bytes([0, inner_proto, 0, 0]), f"{name}: GUE header {payload[8:12].hex()}")
            payload = payload[12:]
        check(payload == input_ip, f"{name}: inner packet differs from the input ({len(payload)} vs {len(input_ip)} bytes)")
        check(len(frame) == 14 + len(raw(outer)), f"{name}: trailing bytes after the outer packet")

    check_against_reference(ternctl, cases, sent, out_frames)
    check_streaming(ternctl, tmp)
    check_mss_clamping(ternctl, tmp)
    check_source_hash(ternctl, tmp)
    check_cidr_vip(ternctl, tmp)
    check_vlan(ternctl, tmp)
    check_quic(ternctl, tmp)
    check_outer_fragments(ternctl, tmp)
    check_fragments(ternctl, tmp)

    if FAILURES:
        print("\n".join(f"FAIL {f}" for f in FAILURES))
        sys.exit(1)
    print(f"ok: {len(cases)} cases, {len(out_frames)} transmitted frames checked by tshark and scapy")


if __name__ == "__main__":
    main(sys.argv[1])
