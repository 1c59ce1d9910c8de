#!/usr/bin/python3
"""Memory per flow entry and per VIP: Tern's layout beside Katran's BPF maps, measured here.

  bench/map_memory.py [--entries N]

Katran keeps flows in LRU hash maps (key: 40-byte flow_key, value: 16-byte real_pos_lru) and
Maglev rings in one array map (4-byte real index per slot, MAX_VIPS x 65,537 slots allocated up
front). This script creates maps of those shapes through the bpf() system call and reads what
the kernel charges for them (`memlock` in /proc/self/fdinfo, the map's own memory accounting on
Linux 6.4 and later). Tern's figures come from its layout: a flow entry is 64 bytes plus 8 bytes
of bucket metadata (FlowTable.memoryBytes), a Maglev slot is a 2-byte backend index, and VIPs
whose backends and weights are equal share one table.
"""
import argparse
import ctypes
import os
import platform

BPF_MAP_CREATE = 0
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_LRU_HASH = 9
NR_BPF = {"x86_64": 321, "aarch64": 280}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)


def map_memlock(map_type, key_size, value_size, max_entries):
    """Bytes the kernel accounts for a new map of this shape (then closes it)."""
    attr = (ctypes.c_uint32 * 32)()
    attr[0], attr[1], attr[2], attr[3] = map_type, key_size, value_size, max_entries
    fd = libc.syscall(NR_BPF, BPF_MAP_CREATE, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"bpf(BPF_MAP_CREATE) failed: {os.strerror(ctypes.get_errno())}")
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("memlock:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    raise RuntimeError("no memlock line in fdinfo")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1 << 20, help="flow entries (default 1,048,576)")
    args = ap.parse_args()
    n = args.entries
    ring = 65537
    katran_flow = map_memlock(BPF_MAP_TYPE_LRU_HASH, 40, 16, n)
    katran_ring_one = map_memlock(BPF_MAP_TYPE_ARRAY, 4, 4, ring)
    katran_rings = map_memlock(BPF_MAP_TYPE_ARRAY, 4, 4, 512 * ring)
    tern_flow = 64 + 8
    tern_ring = 2 * ring
    print(f"kernel {platform.release()}, {n:,} flow entries, Maglev table of {ring:,} slots")
    print(f"{'':34}{'Tern':>14}{'Katran (BPF maps)':>20}")
    print(f"{'bytes per flow entry':34}{tern_flow:>14,}{katran_flow / n:>20,.1f}")
    print(f"{'flow table, ' + format(n, ',') + ' entries (MiB)':34}{n * tern_flow / 2**20:>14,.1f}{katran_flow / 2**20:>20,.1f}")
    print(f"{'Maglev table per VIP (KiB)':34}{tern_ring / 1024:>14,.1f}{katran_ring_one / 1024:>20,.1f}")
    print(f"{'Maglev tables for 512 VIPs (MiB)':34}{512 * tern_ring / 2**20:>14,.1f}{katran_rings / 2**20:>20,.1f}")
    print("Tern allocates Maglev tables per distinct (backends, weights, size) as VIPs are configured;")
    print("Katran's ch_rings array holds MAX_VIPS (512) rings from start. Flow tables are per worker")
    print("(Tern) and per CPU (Katran's per-CPU LRU maps) in both.")


if __name__ == "__main__":
    main()
