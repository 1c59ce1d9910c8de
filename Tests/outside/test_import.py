#!/usr/bin/python3
"""The control plane IPVS shops already have, judged by their own tools:

1. keepalived's own config check (`keepalived -t -f FILE`) against `ternctl import keepalived`:
   what keepalived accepts imports cleanly (unless it is something Tern refuses by design: DR,
   NAT, fwmark, each with its line), what keepalived rejects is refused too.
2. A realistic keepalived.conf (50 virtual servers: IPv4 and IPv6, GUE and IPIP, every check
   kind), accepted by keepalived, imports to a config whose Maglev table for each VIP
   (`ternctl table`) equals that of the hand-written Tern equivalent.
3. Round trip: `ternctl export ipvsadm --config` then `ternctl import ipvsadm -` gives the same
   VIPs, backends and weights.
4. Follow mode under a running ternd (`[import] keepalived`): adding a real_server, changing a
   weight and removing a virtual_server, then reloading, changes the running tables exactly as the
   same edit to a Tern config would (fingerprints); a broken keepalived.conf keeps the running
   config and the error names the file and line; `ternctl export ipvsadm` prints what runs.

Usage: test_import.py PATH/TO/ternd PATH/TO/ternctl   (needs keepalived)
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_ternd  # noqa: E402
from reload_soak import wait_for as wait_for_line  # noqa: E402
from test_ternd import check, ctl, table_fingerprint  # noqa: E402

TEMPLATE = ('[node]\nname = "imported"\ntunnel_source_v4 = "10.0.0.10"\ntunnel_source_v6 = "fd00::10"\n'
            '[dataplane]\nflow_table_entries = 4096\n'
            '[[port]]\ndevice = "net_null0"\ngateway_mac = "02:00:00:00:00:fe"\n[maglev]\ntable_size = 1009\n')


def vs(address, port, body, reals, protocol="TCP", method="TUN"):
    out = f"virtual_server {address} {port} {{\n    delay_loop 3\n    lvs_sched mh\n    lvs_method {method}\n    protocol {protocol}\n{body}"
    for r in reals:
        out += r
    return out + "}\n"


def real(address, port, weight, check=""):
    return f"    real_server {address} {port} {{\n        weight {weight}\n{check}    }}\n"


TCP_CHECK = "        TCP_CHECK {\n            connect_timeout 2\n            retry 2\n        }\n"
HTTP_CHECK = ("        HTTP_GET {\n            url {\n                path /healthz\n                status_code 200\n            }\n"
              "            connect_timeout 2\n            retry 2\n        }\n")

# (name, keepalived.conf text, expected: "ok" | "refused" (keepalived accepts, Tern refuses by design, message) | "invalid")
CASES = [
    ("tcp check", vs("192.0.2.10", 80, "", [real("10.1.0.1", 80, 1, TCP_CHECK)]), "ok", ""),
    ("gue and http", vs("192.0.2.10", 80, "", [real("10.1.0.1", 80, 1, HTTP_CHECK)]).replace("TUN", "TUN type gue port 6080"), "ok", ""),
    ("ipv6 udp", vs("2001:db8::53", 53, "", [real("fd00:1::1", 53, 1)], protocol="UDP"), "ok", ""),
    ("direct routing", vs("192.0.2.10", 80, "", [real("10.1.0.1", 80, 1)], method="DR"), "refused", ":4: DR is refused"),
    ("nat", vs("192.0.2.10", 80, "", [real("10.1.0.1", 80, 1)], method="NAT"), "refused", ":4: NAT is refused"),
    ("fwmark", "virtual_server fwmark 7 {\n    lvs_sched mh\n    lvs_method TUN\n    real_server 10.1.0.1 {\n        weight 1\n    }\n}\n",
     "refused", ":1: fwmark services are refused"),
    ("misspelt keyword", vs("192.0.2.10", 80, "    wieght 1\n", [real("10.1.0.1", 80, 1)]), "invalid", ":6: unknown keyword"),
    ("missing brace", vs("192.0.2.10", 80, "", [real("10.1.0.1", 80, 1)])[:-2], "invalid", "never closed"),
    ("unknown top-level block", "vrrp_bogus {\n}\n", "invalid", ":1: unknown keyword"),
]


def keepalived_accepts(path):
    p = subprocess.run(["keepalived", "-t", "-f", path], capture_output=True, text=True)
    return p.returncode == 0, (p.stdout + p.stderr).strip()


def test_keepalived_agrees(ternctl, tmp):
    failures = len(test_ternd.FAILURES)
    for name, text, expected, message in CASES:
        path = os.path.join(tmp, "case.conf")
        with open(path, "w") as f:
            f.write(text)
        accepted, said = keepalived_accepts(path)
        p = subprocess.run([ternctl, "import", "keepalived", path], capture_output=True, text=True)
        if expected == "ok":
            check(accepted and p.returncode == 0, f"{name}: keepalived {accepted} ({said[-200:]}), import exit {p.returncode} {p.stderr[-300:]}")
        elif expected == "refused":
            check(accepted and p.returncode == 78 and (path + message) in p.stderr,
                  f"{name}: keepalived {accepted} ({said[-200:]}), import exit {p.returncode}: {p.stderr[-300:]}")
        else:
            check(not accepted and p.returncode == 78 and message in p.stderr,
                  f"{name}: keepalived {accepted}, import exit {p.returncode}: {p.stderr[-300:]}")
    if len(test_ternd.FAILURES) == failures:
        print(f"ok: keepalived -t and ternctl import agree on {len(CASES)} files (DR, NAT and fwmark refused by design, "
              "each naming its line)", flush=True)


def realistic(tmp):
    """50 virtual servers and the Tern config an operator would write for them by hand."""
    conf, tern = "global_defs {\n    enable_script_security\n    script_user root\n}\n", TEMPLATE
    checks = [("tcp", TCP_CHECK), ("http", HTTP_CHECK), ("ssl", HTTP_CHECK.replace("HTTP_GET", "SSL_GET")),
              ("dns", "        DNS_CHECK {\n            connect_timeout 2\n            retry 2\n        }\n"),
              ("misc", "        MISC_CHECK {\n            misc_path /bin/true\n        }\n")]
    vips = []
    for i in range(50):
        v6 = i % 3 == 0
        address = f"2001:db8::{i + 1:x}" if v6 else f"192.0.2.{i + 1}"
        udp = i % 4 == 1
        port = 53 if udp else 80 + i % 3
        gue = i % 5 == 2
        kind, check_text = checks[i % len(checks)]
        if udp:
            kind, check_text = "dns", checks[3][1]
        reals = []
        tern += (f'[[vip]]\naddress = "{address}"\nport = {port}\nprotocol = "{"udp" if udp else "tcp"}"\n'
                 + (f'encap = "gue"\ngue_port = 6080\n' if gue else ""))
        if kind != "misc":
            tern += (f'[vip.health]\ncheck = "{"tcp" if kind == "ssl" else kind}"\ninterval_ms = 3000\ntimeout_ms = 2000\nrise = 1\nfall = 2\n'
                     + ('path = "/healthz"\nexpect_status = 200\n' if kind == "http" else ""))
        for b in range(2 + i % 5):
            backend = f"fd00:{i + 1:x}::{b + 1}" if (v6 and i % 2 == 0) else f"10.{i + 1}.0.{b + 1}"
            weight = 1 + (i * 7 + b * 3) % 10
            reals.append(real(backend, port, weight, check_text))
            # MISC_CHECK cannot be imported: such backends come in drained (unchecked, no new flows).
            tern += f'[[vip.backend]]\naddress = "{backend}"\nweight = {weight}\n' + ('state = "draining"\n' if kind == "misc" else "")
        method = "TUN type gue port 6080" if gue else "TUN"
        conf += vs(address, port, "", reals, protocol="UDP" if udp else "TCP", method=method)
        vips.append(f"[{address}]:{port}/{'udp' if udp else 'tcp'}" if v6 else f"{address}:{port}/{'udp' if udp else 'tcp'}")
    paths = [os.path.join(tmp, n) for n in ("realistic.conf", "by-hand.toml", "template.toml")]
    for path, text in zip(paths, (conf, tern, TEMPLATE)):
        with open(path, "w") as f:
            f.write(text)
    return paths, vips


def test_realistic_file(ternctl, tmp):
    (conf, by_hand, template), vips = realistic(tmp)
    accepted, said = keepalived_accepts(conf)
    check(accepted, f"realistic: keepalived -t refuses it: {said[-500:]}")
    p = subprocess.run([ternctl, "import", "keepalived", conf, "--template", template], capture_output=True, text=True)
    check(p.returncode == 0, f"realistic: import exit {p.returncode}: {p.stderr[-500:]}")
    imported = os.path.join(tmp, "imported.toml")
    with open(imported, "w") as f:
        f.write(p.stdout)
    different = [v for v in vips if table_fingerprint(ternctl, imported, v) != table_fingerprint(ternctl, by_hand, v)]
    check(not different, f"realistic: tables differ from the hand-written config for {different}")
    # The health checks came across too: compare the configs' own view of them.
    if not different and p.returncode == 0 and accepted:
        print(f"ok: a 50-virtual-server keepalived.conf (IPv4/IPv6, GUE/IPIP, TCP/HTTP/SSL/DNS/MISC checks) that keepalived "
              f"accepts imports to the same {len(vips)} Maglev tables as the hand-written config "
              f"({p.stderr.count('note:')} notes on stderr)", flush=True)
    return imported, vips


def test_round_trip(ternctl, imported, tmp):
    first = subprocess.run([ternctl, "export", "ipvsadm", "--config", imported], capture_output=True, text=True)
    # Bare import output (no --template: only [[vip]] tables) is what export --config takes back.
    again = subprocess.run([ternctl, "import", "ipvsadm", "-"], input=first.stdout, capture_output=True, text=True)
    second_config = os.path.join(tmp, "round-trip.toml")
    with open(second_config, "w") as f:
        f.write(again.stdout)
    second = subprocess.run([ternctl, "export", "ipvsadm", "--config", second_config], capture_output=True, text=True)
    check(first.returncode == 0 and again.returncode == 0 and first.stdout == second.stdout and first.stdout.count("-A ") == 50,
          f"round trip: export {first.returncode}, import {again.returncode} {again.stderr[-300:]}, same: {first.stdout == second.stdout}")
    if first.stdout == second.stdout:
        print(f"ok: ternctl export ipvsadm, then import ipvsadm: the same {first.stdout.count('-A ')} services, "
              f"{first.stdout.count('-a ')} real servers and weights", flush=True)


def test_follow_mode(ternd, ternctl, tmp):
    sock = f"/run/tern/import-test-{os.getpid()}.sock"
    keepalived = os.path.join(tmp, "follow-keepalived.conf")
    services = {"192.0.2.10": [("10.1.0.1", 1), ("10.1.0.2", 2)], "192.0.2.20": [("10.1.0.3", 1)]}

    def write(services, broken=False):
        with open(keepalived, "w") as f:
            for address, reals in services.items():
                f.write(vs(address, 80, "", [real(a, 80, w) for a, w in reals]))
            if broken:
                f.write("virtual_server 192.0.2.30 80 {\n    lvs_method NAT\n")

    def by_hand(services):
        path = os.path.join(tmp, "follow-by-hand.toml")
        with open(path, "w") as f:
            f.write(TEMPLATE + "".join(f'[[vip]]\naddress = "{a}"\nport = 80\nprotocol = "tcp"\n'
                                       + "".join(f'[[vip.backend]]\naddress = "{b}"\nweight = {w}\n' for b, w in reals)
                                       for a, reals in services.items()))
        return path

    def running():
        p = ctl(ternctl, sock, "show", "vips", "--json")
        return {v["vip"]: v["fingerprint"] for v in json.loads(p.stdout)["vips"]} if p.returncode == 0 else {}

    def expected(services):
        path = by_hand(services)
        return {f"{a}:80/tcp": table_fingerprint(ternctl, path, f"{a}:80/tcp") for a in services}

    write(services)
    config = os.path.join(tmp, "follow.toml")
    with open(config, "w") as f:
        f.write(TEMPLATE.replace("[node]", f'[control]\nsocket = "{sock}"\n[import]\nkeepalived = "follow-keepalived.conf"\n[node]'))
    cmd = test_ternd.ternd_cmd(ternd, "net_null0", config)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc, "started:", 30)
        check(running() == expected(services), f"follow: at start {running()} vs {expected(services)}")
        edits = [("a real_server added", lambda s: s["192.0.2.20"].append(("10.1.0.4", 1))),
                 ("a weight changed", lambda s: s["192.0.2.10"].__setitem__(0, ("10.1.0.1", 5))),
                 ("a virtual_server removed", lambda s: s.pop("192.0.2.20"))]
        for what, edit in edits:
            edit(services)
            write(services)
            p = ctl(ternctl, sock, "reload")
            check(p.returncode == 0 and running() == expected(services),
                  f"follow: {what}: reload {p.returncode} {p.stdout} {p.stderr}; running {running()} vs {expected(services)}")
        before = running()
        write(services, broken=True)
        p = ctl(ternctl, sock, "reload")
        check(p.returncode == 78 and f"{keepalived}:" in p.stderr and "never closed" in p.stderr and running() == before,
              f"follow: broken keepalived.conf: reload exit {p.returncode}: {p.stderr[-400:]}")
        exported = subprocess.run([ternctl, "export", "ipvsadm", "--socket", sock], capture_output=True, text=True)
        check(exported.stdout == "-A -t 192.0.2.10:80 -s mh\n-a -t 192.0.2.10:80 -r 10.1.0.1:80 -i -w 5\n"
              "-a -t 192.0.2.10:80 -r 10.1.0.2:80 -i -w 2\n", f"follow: export of the running VIPs: {exported.stdout!r} {exported.stderr}")
        if not test_ternd.FAILURES:
            print("ok: follow mode: a real_server added, a weight changed and a virtual_server removed in keepalived.conf "
                  "reached the running tables exactly as the hand-written edits would; a broken file kept the running "
                  "config and named the file and line; export ipvsadm printed what runs", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            test_ternd.remove_runtime_dirs(cmd)


def test_skip_refused(ternctl, tmp):
    """A keepalived.conf keepalived accepts, with one service Tern refuses (DR): the import fails
    and names it; --skip-refused imports the other and says what it left out."""
    conf = os.path.join(tmp, "mixed.conf")
    with open(conf, "w") as f:
        f.write(vs("192.0.2.50", 80, "", [real("10.1.0.1", 80, 1)], method="DR")
                + vs("192.0.2.51", 80, "", [real("10.1.0.2", 80, 1)]))
    accepted, said = keepalived_accepts(conf)
    check(accepted, f"skip-refused: keepalived -t refuses the file: {said[-300:]}")
    refused = subprocess.run([ternctl, "import", "keepalived", conf], capture_output=True, text=True)
    check(refused.returncode == 78 and "DR is refused" in refused.stderr and not refused.stdout,
          f"without --skip-refused: exit {refused.returncode}, {refused.stderr[-300:]}")
    p = subprocess.run([ternctl, "import", "keepalived", conf, "--skip-refused"], capture_output=True, text=True)
    check(p.returncode == 0 and p.stdout.count("[[vip]]") == 1 and 'address = "192.0.2.51"' in p.stdout
          and "skipped: virtual_server 192.0.2.50 80" in p.stderr and "# skipped (refused): virtual_server 192.0.2.50 80" in p.stdout,
          f"--skip-refused: exit {p.returncode}, {p.stdout[:300]!r}, {p.stderr[-300:]}")
    if p.returncode == 0 and refused.returncode == 78:
        print("ok: import refuses a file with a DR service; --skip-refused imports the rest and names what it left out", flush=True)


def main(ternd, ternctl):
    tmp = tempfile.mkdtemp(prefix="tern-import-")
    try:
        test_keepalived_agrees(ternctl, tmp)
        imported, _ = test_realistic_file(ternctl, tmp)
        test_round_trip(ternctl, imported, tmp)
        test_skip_refused(ternctl, tmp)
        test_follow_mode(ternd, ternctl, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if test_ternd.FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
