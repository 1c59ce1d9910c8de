#!/usr/bin/python3
"""Prints what tshark decodes in a pcap Tern wrote: per frame, each IP layer (outer first) as
src > dst, then the protocol stack. Usage: tshark_view.py FILE [COUNT]"""
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
path, count = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "12")
out = subprocess.run(
    ["tshark", "-r", path, "-X", f"lua_script:{here}/gue.lua", "-c", count, "-T", "fields", "-E", "separator=|",
     "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number", "-e", "frame.protocols", "-e", "ip.src",
     "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst"],
    check=True, capture_output=True, text=True).stdout
for line in out.splitlines():
    number, stack, v4src, v4dst, v6src, v6dst = line.split("|")
    v4 = list(zip(v4src.split(","), v4dst.split(","))) if v4src else []
    v6 = list(zip(v6src.split(","), v6dst.split(","))) if v6src else []
    hops = []
    for layer in stack.split(":"):
        if layer == "ip" and v4:
            hops.append("%s > %s" % v4.pop(0))
        elif layer == "ipv6" and v6:
            hops.append("%s > %s" % v6.pop(0))
    print(f"{number:>4}  {'  in  '.join(hops):<70} {stack}")
