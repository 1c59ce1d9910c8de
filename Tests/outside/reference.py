#!/usr/bin/python3
"""An independent Python implementation of Tern's documented flow hash and weighted Maglev
builder (Sources/TernWire/FiveTuple.swift, Sources/TernBalancing/Maglev.swift). Tests use it to
show that another implementation following the documentation picks the same backends, which is
what lets independent nodes behind ECMP agree.

`reference.py table CONFIG VIP` prints the table like `ternctl table`."""
import ipaddress
import sys

M64 = (1 << 64) - 1


def mix(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M64
    return k ^ (k >> 33)


def words(address):
    a = ipaddress.ip_address(address)
    value = int(a)
    if a.version == 4:
        return 0, value
    return value >> 64, value & M64


def tuple_words(src, dst, sport, dport, proto):
    v6 = ipaddress.ip_address(src).version == 6
    return (*words(src), *words(dst), sport << 48 | dport << 32 | proto << 8 | (6 if v6 else 4))


def crc32c_u64(crc, w):
    """CRC32C (reflected polynomial 0x82F63B78, no inversion) of crc followed by w's 8 bytes,
    least significant first: what the SSE4.2 crc32 instruction computes."""
    for i in range(8):
        crc ^= (w >> (8 * i)) & 0xFF
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc


def flow_hash(src, dst, sport, dport, proto):
    """Version 2 (FlowHash.version): a CRC32C chain over the five words, times the golden ratio."""
    c = 0xFFFFFFFF
    for w in tuple_words(src, dst, sport, dport, proto):
        c = crc32c_u64(c, w)
    return (c * 0x9E3779B97F4A7C15) & M64


def flow_hash_v1(src, dst, sport, dport, proto):
    """Version 1 (FlowHash.hashV1): multiply-xor rounds and the MurmurHash3 finalizer."""
    h = 0x243F6A8885A308D3
    for w in tuple_words(src, dst, sport, dport, proto):
        m = ((h ^ w) * 0x9E3779B97F4A7C15) & M64
        h = m ^ (m >> 29)
    return mix(h)


def permutation(address, m):
    h = 0xCBF29CE484222325
    for b in ipaddress.ip_address(address).packed:
        h = ((h ^ b) * 0x100000001B3) & M64
    return mix(h ^ 0x6F66667365740000) % m, mix(h ^ 0x736B697000000000) % (m - 1) + 1


def sort_key(address):
    a = ipaddress.ip_address(address)
    return (a.version, int(a))


def build(backends, m):
    """backends: [(address, weight)] -> list of addresses, one per slot (None if empty)."""
    live = sorted((b for b in backends if b[1] > 0), key=lambda b: sort_key(b[0]))
    table = [None] * m
    if not live:
        return table
    max_weight = max(w for _, w in live)
    perms = [permutation(a, m) for a, _ in live]
    position = [p[0] for p in perms]
    turns = [0] * len(live)
    filled, rnd = 0, 0
    while True:
        rnd += 1
        for k, (address, weight) in enumerate(live):
            if turns[k] * max_weight >= rnd * weight:
                continue
            slot = position[k]
            while table[slot] is not None:
                slot = (slot + perms[k][1]) % m
            table[slot] = address
            position[k] = (slot + perms[k][1]) % m
            turns[k] += 1
            filled += 1
            if filled == m:
                return table


def pick(table, hash_value):
    return table[((hash_value & 0xFFFFFFFF) * len(table)) >> 32]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "table":
    import tomllib
    with open(sys.argv[2], "rb") as f:
        config = tomllib.load(f)
    m = config.get("maglev", {}).get("table_size", 65537)
    for vip in config["vip"]:
        a = ipaddress.ip_address(vip["address"])
        name = f"{'[%s]' % a if a.version == 6 else a}:{vip['port']}/{vip['protocol']}"
        if name == sys.argv[3]:
            for address in build([(b["address"], b.get("weight", 100)) for b in vip["backend"]], m):
                print(address or "-")
