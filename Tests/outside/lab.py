#!/usr/bin/python3
"""`make lab`: README's topology in network namespaces, left running for you to try Tern on.

    lab-cl ── lab-rt (BIRD: BGP from both nodes, ECMP) ─┬─ lab-lb1: ternd, host path on a TAP, ExaBGP
    client      router                                   ├─ lab-lb2: ternd, ExaBGP
    curl, dig,                                           ├─ lab-b1: nginx + unbound, ternctl backend
    Prometheus                                           └─ lab-b2: nginx + unbound, ternctl backend

Two VIPs: 192.0.2.10:80/tcp (HTTP, health-checked with GET /health) and 192.0.2.53:53/udp (DNS,
checked with a ". NS" query). Each node announces them through `ternctl bgp-feed` under ExaBGP;
the router spreads flows over both nodes. Prometheus in lab-cl scrapes both nodes every 2 s.
Configs, logs and Prometheus's data are under LAB_DIR (default out/lab).

    lab.py up PATH/TO/ternd     build it (an old lab is removed first); prints what to type next
    lab.py down                 remove it: every process in its namespaces, the namespaces, the runtime dirs
    lab.py tutorial FILE.md     run the tutorial's commands (```sh blocks; `# expect: REGEX` checks output)

Needs root and what test_failover.py needs, plus prometheus.
"""
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_netns as net  # noqa: E402  (topology: namespaces, links, routes)
import test_failover as failover  # noqa: E402  (nginx and unbound backends, the BIRD router)

# The lab's own namespaces, so it can run beside the tests' (same addresses, other namespaces).
for _name in net.NS:
    net.NS[_name] = f"lab-{_name}"
LAB_DIR = os.path.abspath(os.environ.get("LAB_DIR", "out/lab"))
WEB, DNS = failover.WEB, failover.DNS
PROMETHEUS = "127.0.0.1:9090"


def socket_path(lb):
    return f"/run/tern/lab-{lb}.sock"


def config_text(lb):
    """A node's config: what the tutorial shows and edits."""
    _, v4, _ = net.LINKS[lb]
    port = (f'host_interface = "{net.HOST_INTERFACE}"   # the kernel reaches its link through ternd\n'
            f'gateway = "{v4}.1"                      # the router; its MAC learned through the host interface\n'
            if lb == net.HOST_PATH_NODE else f'gateway_mac = "{net.mac_of(net.NS["rt"], "rt-" + lb)}"   # the router\n')
    text = (f'# Tern lab node {lb} (written by lab.py; edit and `ternctl reload --config` it).\n'
            f'[node]\nname = "{lb}"\ntunnel_source_v4 = "{v4}.2"\n\n'
            f'[control]\nsocket = "{socket_path(lb)}"\n\n'
            f'[metrics]\nlisten = "{v4}.2:9108"\n\n'
            '[dataplane]\nflow_table_entries = 65536\n\n'
            f'[[port]]\ndevice = "net_af_packet0"   # the veth toward the router\nmtu = 1500\n{port}\n'
            '[maglev]\ntable_size = 1009\n')
    for address, vport, proto, check in ((WEB, 80, "tcp", 'check = "http"\npath = "/health"\n'),
                                         (DNS, 53, "udp", 'check = "dns"\n')):
        text += (f'\n[[vip]]\naddress = "{address}"\nport = {vport}\nprotocol = "{proto}"\n'
                 f'[vip.health]\n{check}interval_ms = 500\n')
        for b in failover.BACKENDS.values():
            text += f'[[vip.backend]]\naddress = "{b}"\n'
    return text


def wait_for_line(path, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            if text in f.read():
                return True
        time.sleep(0.2)
    return False


def start_node(ternd, lb):
    config = os.path.join(LAB_DIR, f"{lb}.toml")
    with open(config, "w") as f:
        f.write(config_text(lb))
    log = os.path.join(LAB_DIR, f"{lb}.log")
    eal = ["-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", f"lab-{lb}", "--log-level", "lib.eal:error",
           "--vdev", f"net_af_packet0,iface={lb}"]
    with open(log, "w") as out:
        subprocess.Popen(["ip", "netns", "exec", net.NS[lb], ternd, *eal, "--", "--config", config, "--idle-sleep-us", "200"],
                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if not wait_for_line(log, "started:", 60):
        sys.exit(f"lab: ternd on {lb} did not start; its log, {log}:\n{open(log).read()[-1500:]}")
    if lb == net.HOST_PATH_NODE:
        net.address_interface(net.NS[lb], net.HOST_INTERFACE, net.LINKS[lb][1], net.LINKS[lb][2])


def start_feed(lb, ternctl):
    _, v4, _ = net.LINKS[lb]
    conf = os.path.join(LAB_DIR, f"exabgp-{lb}.conf")
    with open(conf, "w") as f:
        f.write(f"process tern {{\n run {ternctl} bgp-feed --socket {socket_path(lb)} --interval 0.2;\n encoder text;\n}}\n"
                f"neighbor {v4}.1 {{\n router-id {v4}.2;\n local-address {v4}.2;\n local-as {failover.AS_NODES};\n"
                f" peer-as {failover.AS_ROUTER};\n hold-time 6;\n family {{ ipv4 unicast; }}\n api {{ processes [ tern ]; }}\n}}\n")
    with open(os.path.join(LAB_DIR, f"exabgp-{lb}.log"), "w") as out:
        subprocess.Popen(["ip", "netns", "exec", net.NS[lb], "env", "exabgp.daemon.user=root", "exabgp.log.destination=stdout",
                          "exabgp", conf], stdout=out, stderr=subprocess.STDOUT, cwd=LAB_DIR, start_new_session=True)


def start_prometheus():
    targets = ", ".join(f"'{net.LINKS[lb][1]}.2:9108'" for lb in ("lb1", "lb2"))
    conf = os.path.join(LAB_DIR, "prometheus.yml")
    with open(conf, "w") as f:
        f.write(f"global:\n  scrape_interval: 2s\nscrape_configs:\n  - job_name: tern\n    static_configs:\n"
                f"      - targets: [{targets}]\n"
                f"rule_files:\n  - {os.path.abspath('configs/prometheus/tern-alerts.yml')}\n")
    with open(os.path.join(LAB_DIR, "prometheus.log"), "w") as out:
        subprocess.Popen(["ip", "netns", "exec", net.NS["cl"], "prometheus", f"--config.file={conf}",
                          f"--storage.tsdb.path={LAB_DIR}/prometheus", f"--web.listen-address={PROMETHEUS}"],
                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def up(ternd):
    ternctl = os.path.abspath(os.path.join(os.path.dirname(ternd), "ternctl"))
    ternd = os.path.abspath(ternd)
    down(quiet=True)
    os.makedirs(LAB_DIR, exist_ok=True)
    os.makedirs("/run/tern", exist_ok=True)
    net.setup(ternctl)
    rt = net.NS["rt"]
    # Only BGP routes the VIPs; the router hashes flows on ports too, as ECMP routers do; and the
    # client's TX checksum offload is off (veth would hand ternd unfinished checksums: the
    # backend guide says why).
    net.sh("ip", "route", "del", "192.0.2.0/24", ns=rt)
    net.sh("sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1", ns=rt)
    for b in failover.BACKENDS:
        net.sh("ip", "addr", "add", f"{DNS}/32", "dev", "lo", ns=net.NS[b])
        net.attach_backend(ternctl, net.NS[b], b)
        backend = failover.Backend(b, LAB_DIR)
        backend.start_nginx()
        backend.start_unbound()
    for lb in ("lb1", "lb2"):
        start_node(ternd, lb)
    failover.Router(LAB_DIR)
    for lb in ("lb1", "lb2"):
        start_feed(lb, ternctl)
    start_prometheus()
    deadline = time.monotonic() + 60
    want = sorted(f"{net.LINKS[lb][1]}.2" for lb in ("lb1", "lb2"))
    while time.monotonic() < deadline:
        routes = net.sh("ip", "route", "show", f"{WEB}/32", ns=rt)
        if sorted(set(re.findall(r"via (\S+)", routes))) == want:
            break
        time.sleep(0.5)
    else:
        sys.exit(f"lab: the router did not learn {WEB} from both nodes; see {LAB_DIR}/exabgp-*.log")
    print(f"""
Tern lab is up: client lab-cl, router lab-rt (ECMP over lab-lb1 and lab-lb2), backends lab-b1 and
lab-b2 (nginx, unbound). Configs and logs: {LAB_DIR}. Try (docs/operator-guide.md walks through it):

  ip netns exec lab-cl curl -s http://{WEB}/                 # answered by b1 or b2
  ip netns exec lab-cl dig +short @{DNS} who.tern.test TXT
  {ternctl} status --socket {socket_path('lb1')}
  {ternctl} show backends --socket {socket_path('lb1')}
  {ternctl} drain {failover.BACKENDS['b2']} --socket {socket_path('lb1')}
  {ternctl} reload --config {LAB_DIR}/lb1.toml                # after editing it
  ip netns exec lab-cl curl -s 'http://{PROMETHEUS}/api/v1/query?query=tern_vip_announced'

make lab-down removes it.""")


def down(quiet=False):
    net.teardown()
    for lb in ("lb1", "lb2"):
        shutil.rmtree(f"/var/run/dpdk/lab-{lb}", ignore_errors=True)
        for leftover in (socket_path(lb), f"/run/tern/flows/lab-{lb}"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    if not quiet:
        print("Tern lab removed (namespaces lab-*, their processes, DPDK runtime dirs).")


def tutorial(path, ternctl_dir):
    """Runs every command of the ```sh blocks of the file's "## Tutorial" section in order (with ternctl on PATH); a
    `# expect: REGEX` at the end of a line must match the command's output. Fails at the first
    mismatch, printing the command and its output."""
    env = dict(os.environ, PATH=os.path.abspath(ternctl_dir) + ":" + os.environ["PATH"], LAB_DIR=LAB_DIR)
    text = open(path).read()
    text = text[text.index("\n## Tutorial"):]
    text = text[:text.find("\n## ", 1)] if "\n## " in text[1:] else text
    steps = 0
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command, _, expect = line.partition("# expect:")
            command = command.strip()
            if not command or command.startswith("#") or command.startswith("make lab"):
                continue
            for attempt in range(20):  # health checks and BGP take a moment after some steps
                p = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120)
                output = p.stdout + p.stderr
                ok = p.returncode == 0 and (not expect.strip() or re.search(expect.strip(), output, re.M))
                if ok:
                    break
                time.sleep(0.5)
            if not ok:
                sys.exit(f"tutorial step failed: {command}\nexit {p.returncode}, wanted /{expect.strip()}/; output:\n{output[-1500:]}")
            steps += 1
    print(f"ok: the tutorial's {steps} commands ran in the lab and printed what it says")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "up":
        up(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "down":
        down()
    elif len(sys.argv) == 4 and sys.argv[1] == "tutorial":
        tutorial(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
