"""Re-capture the recorded firewall outputs of this folder from real tools (needs root).

Each scenario (*.rules for iptables-restore, *.nft for nft -f, ipset.save) is loaded into a
throwaway network namespace, a few local connections bump the counters, and the tools'
output is written next to it: NAME.iptables-save, NAME.ip6tables-save, NAME.nft.json,
NAME.nft.txt. The namespace is deleted afterwards, also on failure.

    sudo python tests/data/firewall/capture.py
"""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
NS = f"pdfwcap{os.getpid()}"


def sh(*argv: str, input: str | None = None) -> str:
    return subprocess.run(["ip", "netns", "exec", NS, *argv], input=input, capture_output=True, text=True,
                          check=True).stdout


def bump(ports: list[int]) -> None:
    """Connect to 127.0.0.1:PORT inside the namespace so rule counters move."""
    code = ";".join(f"s=socket.socket();s.settimeout(0.2);s.connect_ex(('127.0.0.1',{p}));s.close()" for p in ports)
    subprocess.run(["ip", "netns", "exec", NS, "python3", "-c", f"import socket;{code}"], check=False)


def fresh() -> None:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    sh("ip", "link", "set", "lo", "up")


def large_rules(n: int = 10000) -> str:
    """A generated ruleset of n filter rules: per-service accepts, per-client rejects, chains."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    chains = [f"SVC-{i}" for i in range(50)]
    lines += [f":{c} - [0:0]" for c in chains]
    body = []
    for i in range(n - 50):
        port = 1000 + (i % 5000)
        src = f"10.{(i // 250) % 250}.{i % 250}.{(i * 7) % 250 + 1}"
        k = i % 5
        if i % 200 == 0:
            body.append(f"-A INPUT -p tcp -m tcp --dport {port} -j {chains[(i // 200) % 50]}")
        elif k == 0:
            body.append(f"-A INPUT -s {src}/32 -p tcp -m tcp --dport {port} -j ACCEPT")
        elif k == 1:
            body.append(f"-A INPUT -s {src}/32 -p tcp -m tcp --dport {port} -j REJECT --reject-with tcp-reset")
        elif k == 2:
            body.append(f"-A INPUT -p tcp -m multiport --dports {port},{port + 1} -m comment --comment \"svc {i}\" -j ACCEPT")
        elif k == 3:
            body.append(f"-A {chains[i % 50]} -s 10.{i % 200}.0.0/16 -p tcp -m tcp --dport {port} -j DROP")
        else:
            body.append(f"-A INPUT -d 10.0.0.2/32 -p tcp -m tcp --dport {port} -j ACCEPT")
    body += [f"-A {c} -j RETURN" for c in chains]
    return "\n".join(lines + body + ["-A INPUT -p tcp -j REJECT --reject-with icmp-port-unreachable", "COMMIT", ""])


def main() -> None:
    try:
        for name in ("docker", "kube", "ufw"):
            fresh()
            sh("iptables-restore", input=(HERE / f"{name}.rules").read_text())
            bump([8080, 30080, 22])
            (HERE / f"{name}.iptables-save").write_text(sh("iptables-save", "-c"))
        fresh()
        sh("ipset", "restore", input=(HERE / "ipset.save").read_text())
        sh("iptables-restore", input=(HERE / "features.rules").read_text())
        sh("ip6tables-restore", input=(HERE / "features6.rules").read_text())
        sh("nft", "-f", "-", input=(HERE / "features.nft").read_text())
        bump([8080, 9000, 7001, 6003])
        (HERE / "features.iptables-save").write_text(sh("iptables-save", "-c"))
        (HERE / "features.ip6tables-save").write_text(sh("ip6tables-save", "-c"))
        (HERE / "features.nft.json").write_text(sh("nft", "-j", "list", "ruleset"))
        (HERE / "features.nft.txt").write_text(sh("nft", "-a", "list", "ruleset"))
        (HERE / "features.ipset").write_text(sh("ipset", "save"))
        fresh()
        sh("nft", "-f", "-", input=(HERE / "firewalld.nft").read_text())
        (HERE / "firewalld.nft.json").write_text(sh("nft", "-j", "list", "ruleset"))
        (HERE / "firewalld.nft.txt").write_text(sh("nft", "-a", "list", "ruleset"))
        fresh()  # kube-proxy in nftables mode, as it writes its table (maps with element comments)
        sh("nft", "-f", "-", input=(HERE / "kube-nft.nft").read_text())
        (HERE / "kube-nft.nft.json").write_text(sh("nft", "-j", "list", "ruleset"))
        (HERE / "kube-nft.nft.txt").write_text(sh("nft", "-a", "list", "ruleset"))
        fresh()
        sh("ip", "link", "add", "vx", "type", "veth", "peer", "name", "vy")
        sh("nft", "-f", "-", input=(HERE / "netdev.nft").read_text())
        (HERE / "netdev.nft.json").write_text(sh("nft", "-j", "list", "ruleset"))
        (HERE / "netdev.nft.txt").write_text(sh("nft", "-a", "list", "ruleset"))
        fresh()
        sh("iptables-legacy-restore", input=(HERE / "features.rules").read_text().replace(
            "-m set --match-set allowed src ", "").replace("-m set --match-set pairs src,dst,dst ", ""))
        bump([8080])
        (HERE / "legacy.iptables-save").write_text(sh("iptables-legacy-save", "-c"))
        fresh()  # routes: one veth end with 10.0.0.2/24 and fd00::2/64, a default route
        sh("ip", "link", "add", "veth1", "type", "veth", "peer", "name", "veth0")
        sh("ip", "addr", "add", "10.0.0.2/24", "dev", "veth1")
        sh("ip", "addr", "add", "fd00::2/64", "dev", "veth1", "nodad")
        sh("ip", "link", "set", "veth1", "up")
        sh("ip", "link", "set", "veth0", "up")
        sh("ip", "route", "add", "default", "via", "10.0.0.1")
        (HERE / "routes4.json").write_text(sh("ip", "-j", "-4", "route", "show", "table", "all"))
        (HERE / "routes6.json").write_text(sh("ip", "-j", "-6", "route", "show", "table", "all"))
        capture_nft_names()
        fresh()
        sh("iptables-restore", input=large_rules())
        with gzip.open(HERE / "large.iptables-save.gz", "wt") as f:
            f.write(sh("iptables-save", "-c"))
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def capture_nft_names() -> None:
    """nftnames.*: native nft tables named like iptables-nft's own (`table ip filter`, `table ip
    nat`, as the nftables wiki writes them), which iptables-nft-save notes as incompatible, and a
    `table ip mangle` whose INPUT chain has a priority iptables does not use (iptables-save prints
    an empty INPUT in its place); mixed.*: iptables-nft rules plus a native base chain added to the same table with nft."""
    fresh()
    sh("nft", "-f", "-", input=(HERE / "nftnames.nft").read_text())
    bump([8080, 7777])
    (HERE / "nftnames.iptables-save").write_text(sh("iptables-save", "-c"))
    (HERE / "nftnames.ip6tables-save").write_text(sh("ip6tables-save", "-c"))
    (HERE / "nftnames.nft.json").write_text(sh("nft", "-j", "list", "ruleset"))
    (HERE / "nftnames.nft.txt").write_text(sh("nft", "-a", "list", "ruleset"))
    fresh()
    sh("iptables-restore", input=(HERE / "mixed.rules").read_text())
    sh("nft", "-f", "-", input=(HERE / "mixed.nft").read_text())
    bump([22, 8080])
    (HERE / "mixed.iptables-save").write_text(sh("iptables-save", "-c"))
    (HERE / "mixed.nft.json").write_text(sh("nft", "-j", "list", "ruleset"))
    (HERE / "mixed.nft.txt").write_text(sh("nft", "-a", "list", "ruleset"))


def capture_ufw(root: str) -> None:
    """ufw-real.*: rules written by the real ufw 0.36 (Debian package unpacked, not installed,
    with `dpkg-deb -x ufw_*.deb ROOT`, its /usr/share/ufw templates copied to ROOT/etc/ufw, an
    empty ROOT/etc/ufw/sysctl.conf and ROOT/usr/sbin/ip*tables* linked to the system's), run in
    the throwaway namespace with --rootdir so nothing outside ROOT and the namespace changes."""
    ufw = ["env", f"PYTHONPATH={root}/usr/lib/python3/dist-packages", "python3", f"{root}/usr/sbin/ufw",
           f"--rootdir={root}", f"--datadir={root}"]
    fresh()
    for args in (["--force", "enable"], ["allow", "22/tcp"],
                 ["deny", "from", "10.0.0.1", "to", "any", "port", "8080", "proto", "tcp"],
                 ["reject", "from", "10.0.0.3", "to", "any", "port", "8080", "proto", "tcp"],
                 ["allow", "8080/tcp"], ["allow", "WWW Full"]):
        sh(*ufw, *args)
    (HERE / "ufw-real.iptables-save").write_text(sh("iptables-save", "-c"))
    (HERE / "ufw-real.ip6tables-save").write_text(sh("ip6tables-save", "-c"))


if __name__ == "__main__":
    if os.environ.get("ONLY") == "nft-names":  # re-capture only nftnames.* and mixed.*
        try:
            capture_nft_names()
        finally:
            subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        raise SystemExit
    main()
    if os.environ.get("UFW_ROOT"):
        try:
            capture_ufw(os.environ["UFW_ROOT"])
        finally:
            subprocess.run(["ip", "netns", "del", NS], capture_output=True)
