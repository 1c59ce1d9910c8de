#!/usr/bin/python3
"""Seed corpora for TernFuzz's targets, from what the tests already generate:

  make_fuzz_seeds.py OUTDIR    writes OUTDIR/{frame,burst,toml,config,keepalived,ipvsadm}/

- frame: every frame of the outside cases and the demo traffic, QUIC and VLAN-tagged frames, in raw mode (first byte 9 picks
  no skeleton; see FuzzFrames.frame);
- burst: the same frames as bursts of up to 8 (length-prefixed records, see Fuzz.swift), plus
  frames padded to 1,600 and 9,000 bytes so the too-big code is in reach;
- toml and config: every config in configs/ and Tests/outside (good and bad) and every TOML 1.0
  case of toml-test (toml only).
"""
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import make_pcap  # noqa: E402

RAW_SKELETON = 9  # FuzzFrames.skeletons.count: the choice that keeps the input as the frame


def main(out):
    for target in ("frame", "burst", "toml", "config", "keepalived", "ipvsadm"):
        os.makedirs(os.path.join(out, target), exist_ok=True)
    for target, name in (("keepalived", "keepalived.conf"), ("ipvsadm", "ipvsadm.rules")):
        shutil.copy(os.path.join(HERE, "import", name), os.path.join(out, target, name))
    # A sandbox of files for the keepalived target (Sandbox in Fuzz.swift): includes by name and glob.
    with open(os.path.join(HERE, "import", "keepalived.conf")) as fh:
        main_conf = fh.read()
    with open(os.path.join(out, "keepalived", "with-includes.conf"), "w") as fh:
        fh.write("include conf.d/*.conf\ninclude extra.conf\n#file conf.d/a.conf\n" + main_conf +
                 "#file conf.d/b.conf\ninclude ../extra.conf\n#file extra.conf\n! nothing\n")
    frames = [make_pcap.frame_bytes(c) for c in make_pcap.outside_cases()] + [bytes(f) for f in make_pcap.demo_frames(200)]
    # QUIC to the fuzz snapshot's quic VIPs (v1 and v2 connection IDs naming its server ids), and
    # frames tagged with its port's VLAN 7.
    for payload in (b"\x40\x41\x00\x03\x04\x05\x06\x07\x08", b"\x40\x80\x03\x04\x02\x05\x06\x07\x08",
                    b"\xef\x00\x00\x00\x01\x08\x41\x00\x03\x04\x05\x06\x07\x00"):
        frames.append(bytes(make_pcap.eth() / make_pcap.IP(src="198.51.100.1", dst="192.0.2.10") / make_pcap.UDP(sport=5000, dport=443) / payload))
        frames.append(bytes(make_pcap.eth(vlan=7) / make_pcap.IPv6(src="2001:db8:1::1", dst="2001:db8::10") / make_pcap.UDP(sport=5000, dport=443) / payload))
    big = []
    for f in frames[:40]:
        if f[12:14] == b"\x08\x00" and f[23] == 6:  # IPv4 TCP: grow it with a payload, lengths fixed up
            for size in (1600, 9000):
                p = make_pcap.Ether(f)
                ip = p[make_pcap.IP]
                del ip.len, ip.chksum
                ip[make_pcap.TCP].remove_payload()
                del ip[make_pcap.TCP].chksum
                grown = bytes(p / make_pcap.Raw(b"x" * (size - len(p))))
                big.append(grown)
            break
    for i, f in enumerate(frames):
        with open(os.path.join(out, "frame", f"seed-{i}"), "wb") as fh:
            fh.write(bytes([RAW_SKELETON, 0, 255]) + f)
    everything = frames + big
    for n in range(0, len(everything), 8):
        with open(os.path.join(out, "burst", f"seed-{n // 8}"), "wb") as fh:
            for f in everything[n:n + 8]:
                fh.write(struct.pack(">H", len(f)) + f)
    for i, f in enumerate(big):
        with open(os.path.join(out, "burst", f"big-{i}"), "wb") as fh:
            fh.write(struct.pack(">H", len(f)) + f)
    configs = []
    for d in (os.path.join(ROOT, "configs"), HERE, os.path.join(HERE, "bad-configs")):
        configs += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".toml")]
    for i, path in enumerate(configs):
        for target in ("toml", "config"):
            shutil.copy(path, os.path.join(out, target, f"config-{i}.toml"))
    suite = os.path.join(ROOT, "Tests/TernConfigTests/toml-test")
    with open(os.path.join(suite, "files-toml-1.0.0")) as fh:
        cases = [line.strip() for line in fh if line.strip().endswith(".toml")]
    for i, case in enumerate(cases):
        shutil.copy(os.path.join(suite, case), os.path.join(out, "toml", f"suite-{i}.toml"))
    print(f"seeds: {len(frames)} frames, {len(big)} big frames, {len(configs)} configs, {len(cases)} toml-test cases -> {out}")


if __name__ == "__main__":
    main(sys.argv[1])
