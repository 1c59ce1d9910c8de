#!/usr/bin/python3
"""AF_XDP beside AF_PACKET on a veth pair, with dpdk-testpmd on the same ports. Not a test.

    gen namespace: dpdk-testpmd txonly on net_af_packet (UDP to the VIP, 64-byte frames)
         │ veth
    lb namespace: the device under test on the other end, one worker

Each device under test runs for SECONDS; its rate is what it transmitted (encapsulated toward the
backend for ternd, echoed for testpmd io) over the middle of the run, read from its own counters.
Devices: ternd with `af_xdp_interface` (Tern's XDP program), ternd on net_af_packet, and
dpdk-testpmd io forwarding on each (net_af_xdp with the driver's own redirect-all program, as
testpmd cannot fill Tern's VIP map; net_af_packet).
Two cores: the generator's lcore and the device's worker each have one; the kernel's veth and
XDP work shares them, so these are figures for this rig, not for a NIC.

Usage: bench/af_xdp.py [path/to/ternd] [--seconds N]
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VIP, BACKEND = "192.0.2.10", "10.97.0.9"
EAL = ["--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--log-level", "lib.eal:error"]


def sh(*args, ns=None):
    subprocess.run((["ip", "netns", "exec", ns] if ns else []) + list(args), check=True, capture_output=True)


def rig():
    for ns in ("xb-gen", "xb-lb"):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "gen", "netns", "xb-gen", "type", "veth", "peer", "name", "lb", "netns", "xb-lb")
    for ns, dev, address in (("xb-gen", "gen", "10.97.0.1"), ("xb-lb", "lb", "10.97.0.2")):
        sh("ip", "addr", "add", f"{address}/24", "dev", dev, ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
    out = subprocess.run(["ip", "-n", "xb-lb", "-o", "link", "show", "lb"], capture_output=True, text=True).stdout
    return re.search(r"link/ether (\S+)", out).group(1)


def generator(lb_mac):
    """testpmd txonly toward the VIP on lcore 0 (its main lcore shares CPU 0)."""
    cmd = ["ip", "netns", "exec", "xb-gen", "dpdk-testpmd", "--lcores", "0@0,1@0", *EAL, "--file-prefix", "xb-gen",
           "--vdev", "net_af_packet0,iface=gen,qpairs=1", "--", "--forward-mode=txonly", f"--eth-peer=0,{lb_mac}",
           f"--tx-ip=10.97.0.1,{VIP}", "--tx-udp=4000,53", "--txpkts=64", "--stats-period", "60", "--no-lsc-interrupt"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def config(path, port):
    with open(path, "w") as f:
        f.write(f'[control]\nsocket = "/run/tern/xb-{os.getpid()}.sock"\n[node]\nname = "xb"\ntunnel_source_v4 = "10.97.0.2"\n'
                '[dataplane]\nflow_table_entries = 65536\nflow_state = ""\n'
                f'[[port]]\n{port}gateway_mac = "02:00:00:00:00:fe"\n'
                f'[[vip]]\naddress = "{VIP}"\nport = 0\nprotocol = "udp"\n[[vip.backend]]\naddress = "{BACKEND}"\n')


def ternd_rate(ternd, ternctl, port, vdev, seconds, tmp):
    cfg = os.path.join(tmp, "xb.toml")
    config(cfg, port)
    cmd = ["ip", "netns", "exec", "xb-lb", ternd, "-l", "0-1", *EAL, "--file-prefix", "xb-lb", *vdev, "--", "--config", cfg]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2 + seconds / 4)

        def forwarded():
            out = subprocess.run([ternctl, "stats", "--socket", f"/run/tern/xb-{os.getpid()}.sock", "--json"],
                                 capture_output=True, text=True).stdout
            m = re.search(r'"forwarded":(\d+)', out)
            return int(m.group(1)) if m else 0
        a, t0 = forwarded(), time.monotonic()
        time.sleep(seconds / 2)
        b, t1 = forwarded(), time.monotonic()
        return (b - a) / (t1 - t0) / 1e6
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        shutil.rmtree("/var/run/dpdk/xb-lb", ignore_errors=True)


def testpmd_rate(vdev, seconds):
    cmd = ["ip", "netns", "exec", "xb-lb", "dpdk-testpmd", "-l", "0-1", *EAL, "--file-prefix", "xb-lb", "--vdev", vdev, "--",
           "--forward-mode=io", "--stats-period", "1", "--no-lsc-interrupt"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(2 + seconds)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    shutil.rmtree("/var/run/dpdk/xb-lb", ignore_errors=True)
    rates = [int(x) for x in re.findall(r"Tx-pps:\s+(\d+)", out)]
    middle = rates[len(rates) // 4: 3 * len(rates) // 4] or rates
    received = re.findall(r"RX-packets:\s+(\d+)", out)
    STALLED[vdev] = int(received[-1]) if received else 0
    return sum(middle) / len(middle) / 1e6 if middle else 0.0


# Frames a testpmd run received in all (printed when its rate was 0: it stopped).
STALLED = {}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    seconds = int(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 8
    ternd = args[0] if args else ".build/release/ternd"
    ternctl = os.path.join(os.path.dirname(ternd), "ternctl")
    tmp = tempfile.mkdtemp(prefix="tern-xb-")
    gen = None
    try:
        lb_mac = rig()
        gen = generator(lb_mac)
        time.sleep(2)
        rows = [
            ("ternd, af_xdp_interface (Tern's XDP program)", ternd_rate(ternd, ternctl, 'af_xdp_interface = "lb"\n', [], seconds, tmp)),
            ("ternd, net_af_packet", ternd_rate(ternd, ternctl, 'device = "net_af_packet0"\n',
                                                 ["--vdev", "net_af_packet0,iface=lb"], seconds, tmp)),
            # testpmd cannot fill Tern's VIP map: it runs with the driver's own program, which
            # redirects every frame (one map lookup fewer than Tern's).
            ("dpdk-testpmd io, net_af_xdp (driver's program)", testpmd_rate("net_af_xdp0,iface=lb", seconds)),
            ("dpdk-testpmd io, net_af_packet", testpmd_rate("net_af_packet0,iface=lb", seconds)),
        ]
    finally:
        if gen:
            gen.kill()
            gen.wait()
        shutil.rmtree("/var/run/dpdk/xb-gen", ignore_errors=True)
        for ns in ("xb-gen", "xb-lb"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"veth rig, 64-byte UDP to the VIP, one worker, {seconds} s per device (rate over the middle half):")
    for label, mpps in rows:
        stalled = next((n for v, n in STALLED.items() if mpps == 0 and v.split("0,")[0] in label), None)
        print(f"  {label:48s} {mpps:6.3f} Mpps" + (f" (received {stalled} frames in all, then nothing)" if stalled is not None else ""))


if __name__ == "__main__":
    main()
