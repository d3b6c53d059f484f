"""Firewall and NAT faults built with real rules in network namespaces, each checked against what
a real client saw, then diagnosed by `portdoctor diagnose` running in the server namespace.

Client c: 10.0.0.1 (+10.0.0.3) / fd00::1; server s: 10.0.0.2 / fd00::2; backend b (a third
namespace behind s, as a container or pod would be): 10.0.1.2, nothing listening.
Where the fix is an exact command, the test runs it and checks that the client then connects.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from clients import connect_from
from netlab import Host, Lab, python_for
from servers import backend

pytestmark = pytest.mark.lab

DATA = Path(__file__).resolve().parents[1] / "data" / "firewall"

if os.environ.get("CI") != "true":
    if os.geteuid() != 0:
        pytest.skip("firewall lab tests need root (they fail instead under CI=true)", allow_module_level=True)
    if not (shutil.which("iptables") and shutil.which("nft") and shutil.which("ip6tables")):
        pytest.skip("iptables, ip6tables and nft are needed (they fail instead under CI=true)",
                    allow_module_level=True)


def diagnose(s: Host, target: str, src: str | None = "10.0.0.1") -> dict[str, Any]:
    args = ["diagnose", target, "--timeout", "1"] + (["--from", src] if src else [])
    _rc, doc = s.json_of(*args)
    return doc


def fw_findings(doc: dict[str, Any], cause: str | None = None) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["check"] == "firewall" and (cause is None or f["cause"] == cause)]


def commands(f: dict[str, Any]) -> list[str]:
    return [x["command"] for x in f["fix"] if x["command"]]


def run_fix(s: Host, command: str) -> None:
    s.run(["sh", "-c", command])


def diagnosed(s: Host, cause: str, target: str = "10.0.0.2:8080",
              src: str | None = "10.0.0.1") -> tuple[dict[str, Any], dict[str, Any]]:
    """Diagnose on s gives `cause` as the verdict: the diagnosis and its first firewall finding of that cause."""
    doc = diagnose(s, target, src)
    assert doc["verdict"]["cause"] == cause, doc
    return doc, fw_findings(doc, cause)[0]


def blocked(c: Host, s: Host, cause: str, err: int, target: str = "10.0.0.2:8080", src: str | None = "10.0.0.1",
            timeout: float = 0.5) -> tuple[dict[str, Any], dict[str, Any]]:
    """c's connect to target fails with `err`, then as diagnosed()."""
    address, port = target.rsplit(":", 1)
    assert c.connect_errno(address.strip("[]"), int(port), timeout=timeout) == err
    return diagnosed(s, cause, target, src)


def fix_lets_in(c: Host, s: Host, f: dict[str, Any], expected: str, address: str = "10.0.0.2",
                timeout: float = 0.5) -> None:
    """The first fix of f is the command `expected`; once it runs on s, c connects to port 8080."""
    cmd = commands(f)[0]
    assert cmd == expected
    run_fix(s, cmd)
    assert c.connect_errno(address, 8080, timeout=timeout) == 0


def kube_services_diagnosed(c: Host, s: Host) -> tuple[dict[str, Any], dict[str, Any]]:
    """With kube-proxy's rules for NodePort 30080 (Service default/web, no endpoints) and 30081
    (default/api, DNATed to 10.0.1.2:8080 where nothing listens): both refuse, and diagnose finds
    the reject and the mapping. The reject finding and the mapping finding."""
    assert c.connect_errno("10.0.0.2", 30080) == errno.ECONNREFUSED
    assert c.connect_errno("10.0.0.2", 30081) == errno.ECONNREFUSED
    _doc, f = diagnosed(s, "firewall_reject", "10.0.0.2:30080")
    assert "Service default/web has no endpoints" in f["summary"]
    doc = diagnose(s, "10.0.0.2:30081")
    (m,) = fw_findings(doc, "port_mapping")
    assert "DNATed to 10.0.1.2:8080" in m["summary"] and "kube-proxy" in m["summary"]
    assert doc["verdict"]["cause"] == "port_mapping", doc
    return f, m


# --------------------------------------------------------------------------- REJECT on INPUT


def test_reject_tcp_reset_on_input(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    doc = diagnose(s, "10.0.0.2:8080")
    assert doc["verdict"]["cause"] == "firewall_reject", doc
    (f,) = [f for f in fw_findings(doc, "firewall_reject") if f["severity"] == "error"][:1]
    assert "rule 1 of chain INPUT (iptables filter table)" in f["summary"]
    assert "ECONNREFUSED" in f["summary"]
    ev = "\n".join(f["evidence"])
    assert "iptables -A INPUT -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset" in ev
    assert "it rose" in ev  # the probe from this host went through lo and hit the rule
    assert doc["verdict"]["confidence"] >= 0.9
    run_fix(s, "iptables -I INPUT 1 -p tcp -s 10.0.0.1 --dport 8080 -j ACCEPT")
    assert "iptables -I INPUT 1 -p tcp -s 10.0.0.1 --dport 8080 -j ACCEPT" in commands(f)
    assert c.connect_errno("10.0.0.2", 8080) == 0


def test_reject_icmp_port_unreachable_for_one_source(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "REJECT")
    doc, f = blocked(c, s, "firewall_reject", errno.ECONNREFUSED)
    assert doc["probe"]["state"] == "open"  # the local probe is not concerned
    assert "icmp-port-unreachable" in f["summary"] and "from 10.0.0.1" in f["summary"]
    fix_lets_in(c, s, f, "iptables -I INPUT 1 -p tcp -s 10.0.0.1 --dport 8080 -j ACCEPT")


def test_reject_in_user_chain_reached_by_jump_for_one_source(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.add_addr("10.0.0.3/24", "veth0")
    s.listen(8080)
    s.iptables("-N", "APP")
    s.iptables("-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "APP")
    s.iptables("-A", "APP", "-s", "10.0.0.1", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
    s.iptables("-A", "APP", "-j", "RETURN")
    assert connect_from(c, "10.0.0.1", "10.0.0.2", 8080) == errno.ECONNREFUSED
    assert connect_from(c, "10.0.0.3", "10.0.0.2", 8080) == 0
    _doc, f = diagnosed(s, "firewall_reject", "10.0.0.2:8080", "10.0.0.1")
    assert "rule 1 of chain APP" in f["summary"]
    assert any("reached through rule 2 of chain INPUT" in e for e in f["evidence"])
    assert any("a listener is there" in e for e in f["evidence"])
    other = diagnose(s, "10.0.0.2:8080", "10.0.0.3")
    assert other["verdict"]["cause"] == "ok", other
    assert not [f for f in fw_findings(other) if f["severity"] == "error"]
    # without --from: a warning that some sources are rejected
    anyone = diagnose(s, "10.0.0.2:8080", None)
    w = [f for f in fw_findings(anyone, "firewall_reject") if f["severity"] == "warning"]
    assert w and "for some sources" in w[0]["summary"], anyone
    cmd = commands(f)[0]
    assert cmd == "iptables -I APP 1 -p tcp -s 10.0.0.1 --dport 8080 -j ACCEPT"
    run_fix(s, cmd)
    assert connect_from(c, "10.0.0.1", "10.0.0.2", 8080) == 0


def test_drop_is_a_timeout(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "!", "-i", "lo", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    _doc, f = blocked(c, s, "firewall_drop", errno.ETIMEDOUT, timeout=0.5)
    assert "timeout" in f["summary"] and "! -i lo" in "\n".join(f["evidence"])


def test_nftables_inet_reject(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet guard {
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    ip saddr 10.0.0.1 tcp dport 8080 reject
  }
}""")
    _doc, f = blocked(c, s, "firewall_reject", errno.ECONNREFUSED)
    assert "chain input (nft inet guard table" in f["summary"]
    cmd = commands(f)[0]
    assert cmd.startswith("nft insert rule inet guard input position ")
    assert cmd.endswith("ip saddr 10.0.0.1 tcp dport 8080 accept")
    run_fix(s, cmd)
    assert c.connect_errno("10.0.0.2", 8080) == 0


def test_ip6tables_reject_ipv6_target(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::")
    s.ip6tables("-A", "INPUT", "-s", "fd00::1", "-p", "tcp", "--dport", "8080", "-j", "REJECT")
    # the first SYN's ICMPv6 error can be lost while the server resolves fd00::1; the retry gets it
    _doc, f = blocked(c, s, "firewall_reject", errno.ECONNREFUSED, "[fd00::2]:8080", "fd00::1", timeout=3)
    assert "ip6tables filter" in f["summary"] and "icmp6-port-unreachable" in f["summary"]
    fix_lets_in(c, s, f, "ip6tables -I INPUT 1 -p tcp -s fd00::1 --dport 8080 -j ACCEPT", "fd00::2", timeout=3)


def test_icmp_host_prohibited_is_unreachable_not_refused(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
               "--reject-with", "icmp-host-prohibited")
    assert c.connect_errno("10.0.0.2", 8080) == errno.EHOSTUNREACH
    rc, probe = c.json_of("probe", "10.0.0.2:8080", "--timeout", "1")
    assert probe["state"] == "unreachable"
    _doc, f = diagnosed(s, "firewall_reject")
    assert "no route to host (EHOSTUNREACH)" in f["summary"] and "icmp-host-prohibited" in f["summary"]


# --------------------------------------------------------------------------- NAT


def test_dnat_by_hand_to_backend_where_nothing_listens(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    backend(lab, s)
    s.iptables("-t", "nat", "-A", "PREROUTING", "-d", "10.0.0.2", "-p", "tcp", "--dport", "8080",
               "-j", "DNAT", "--to-destination", "10.0.1.2:80")
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED  # b answers RST
    doc = diagnose(s, "10.0.0.2:8080")
    (f,) = fw_findings(doc, "port_mapping")
    assert f["summary"].startswith("8080 on 10.0.0.2 is DNATed to 10.0.1.2:80 by chain PREROUTING")
    assert "nothing listens there" in f["summary"]
    assert "iptables -t nat -D PREROUTING 1" in commands(f)
    assert doc["verdict"]["cause"] == "port_mapping", doc


def test_docker_style_publish(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    c.add_addr("10.0.0.3/24", "veth0")
    br = "veth2"  # s's side of the link to b, playing docker0
    for args in (
        ["-t", "nat", "-N", "DOCKER"],
        ["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"],
        ["-t", "nat", "-A", "OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL",
         "-j", "DOCKER"],
        ["-t", "nat", "-A", "DOCKER", "-i", br, "-j", "RETURN"],
        ["-t", "nat", "-A", "DOCKER", "!", "-i", br, "-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "DNAT",
         "--to-destination", "10.0.1.2:80"],
        ["-N", "DOCKER"], ["-N", "DOCKER-USER"],
        ["-P", "FORWARD", "DROP"],
        ["-A", "FORWARD", "-j", "DOCKER-USER"],
        ["-A", "FORWARD", "-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ["-A", "FORWARD", "-o", br, "-j", "DOCKER"],
        ["-A", "FORWARD", "-i", br, "!", "-o", br, "-j", "ACCEPT"],
        ["-A", "DOCKER", "-d", "10.0.1.2/32", "!", "-i", br, "-o", br, "-p", "tcp", "-m", "tcp", "--dport", "80",
         "-j", "ACCEPT"],
        ["-A", "DOCKER-USER", "-s", "10.0.0.3/32", "-j", "DROP"],
        ["-A", "DOCKER-USER", "-j", "RETURN"],
    ):
        s.iptables(*args)
    assert connect_from(c, "10.0.0.1", "10.0.0.2", 8080) == errno.ECONNREFUSED
    assert connect_from(c, "10.0.0.3", "10.0.0.2", 8080) == errno.ETIMEDOUT
    doc = diagnose(s, "10.0.0.2:8080", "10.0.0.1")
    (f,) = fw_findings(doc, "port_mapping")
    assert "DNATed to 10.0.1.2:80 by chain DOCKER" in f["summary"] and "docker" in f["summary"]
    assert doc["verdict"]["cause"] == "port_mapping", doc
    dropped = diagnose(s, "10.0.0.2:8080", "10.0.0.3")
    d = fw_findings(dropped, "firewall_drop")[0]
    assert "DOCKER-USER" in d["summary"] and "DNATs it to 10.0.1.2:80" in d["summary"]
    # once something listens in the "container", the mapping works
    b.listen(80)
    assert connect_from(c, "10.0.0.1", "10.0.0.2", 8080) == 0


def test_kube_proxy_style_rules(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    backend(lab, s)
    rules = """*filter
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/web:http has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-API - [0:0]
:KUBE-SVC-API - [0:0]
:KUBE-SEP-AAA - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/api:http" -m tcp --dport 30081 -j KUBE-EXT-API
-A KUBE-EXT-API -m comment --comment "masquerade traffic for default/api:http external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-API -j KUBE-SVC-API
-A KUBE-SVC-API -m comment --comment "default/api:http -> 10.0.1.2:8080" -j KUBE-SEP-AAA
-A KUBE-SEP-AAA -p tcp -m comment --comment "default/api:http" -m tcp -j DNAT --to-destination 10.0.1.2:8080
COMMIT
"""
    s.run(["iptables-restore", "--noflush"], input=rules)
    f, m = kube_services_diagnosed(c, s)
    assert "kubectl -n default get endpointslices -l kubernetes.io/service-name=web" in commands(f)
    assert "DNATed to 10.0.1.2:8080 by chain KUBE-SEP-AAA" in m["summary"]


def test_nft_policy_drop_and_fix(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet host {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iifname "lo" accept
    tcp dport 22 accept
  }
}""")
    _doc, f = blocked(c, s, "firewall_drop", errno.ETIMEDOUT)
    assert "policy DROP of chain input (nft inet host table)" in f["summary"]
    fix_lets_in(c, s, f, "nft add rule inet host input ip saddr 10.0.0.1 tcp dport 8080 accept")


def test_redirect_to_a_port_where_nothing_listens(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "127.0.0.1")
    s.iptables("-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "80", "-j", "REDIRECT", "--to-ports", "8080")
    assert c.connect_errno("10.0.0.2", 80) == errno.ECONNREFUSED
    doc = diagnose(s, "10.0.0.2:80")
    (f,) = fw_findings(doc, "port_mapping")
    assert f["summary"].startswith("80 on 10.0.0.2 is DNATed to 10.0.0.2:8080 by chain PREROUTING")
    assert doc["verdict"]["cause"] == "port_mapping", doc


def test_without_root_rules_are_a_limitation(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT")
    code = ("import json; from portdoctor.collectors import Request; "
            "from portdoctor.collectors.firewall import collect_firewall; "
            "f = collect_firewall(Request(8080)); print(json.dumps([str(x) for x in f.limitations]))")
    exe, env = python_for("nobody")
    out = s.run([exe, "-c", code], user="nobody", env=env).stdout
    limits = "\n".join(json.loads(out))
    assert "iptables rules not read: iptables-nft-save needs root (run with sudo)" in limits
    assert "nftables rules not read: nft needs root (run with sudo)" in limits


def test_iptables_legacy_reject(pair: tuple[Host, Host]) -> None:
    c, s = pair
    if not shutil.which("iptables-legacy") and os.environ.get("CI") != "true":
        pytest.skip("iptables-legacy is not installed")
    s.listen(8080)
    s.run(["iptables-legacy", "-A", "INPUT", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "REJECT"])
    _doc, f = blocked(c, s, "firewall_reject", errno.ECONNREFUSED)
    assert "iptables-legacy filter" in f["summary"]
    fix_lets_in(c, s, f, "iptables-legacy -I INPUT 1 -p tcp -s 10.0.0.1 --dport 8080 -j ACCEPT")


def test_ipset_blocklist(pair: tuple[Host, Host]) -> None:
    c, s = pair
    if not shutil.which("ipset") and os.environ.get("CI") != "true":
        pytest.skip("ipset is not installed")
    s.listen(8080)
    s.run(["ipset", "create", "blocked", "hash:net"])
    s.run(["ipset", "add", "blocked", "10.0.0.0/31"])
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-m", "set", "--match-set", "blocked", "src",
               "-j", "REJECT", "--reject-with", "tcp-reset")
    _doc, f = blocked(c, s, "firewall_reject", errno.ECONNREFUSED)
    assert "--match-set blocked src" in "\n".join(f["evidence"])
    ok = diagnose(s, "10.0.0.2:8080", "10.0.0.9")
    assert not [x for x in fw_findings(ok) if x["severity"] == "error"], ok


def test_kube_proxy_nftables_mode(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    backend(lab, s)
    s.nft((DATA / "kube-nft.nft").read_text())
    kube_services_diagnosed(c, s)


def test_collector_is_fast_and_complete(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT")
    s.nft("table inet t {\n chain input {\n type filter hook input priority 0;\n tcp dport 8081 drop\n }\n}\n")
    code = ("import json, time; from portdoctor.collectors import Request; "
            "from portdoctor.collectors.firewall import collect_firewall, sample_counters; "
            "t = time.monotonic(); b = sample_counters(Request(8080)); t1 = time.monotonic(); "
            "f = collect_firewall(Request(8080, before={'portdoctor.collectors.firewall:sample_counters': b})); "
            "from portdoctor.snapshot import Snapshot; "
            "fw = Snapshot(firewall=f.fields['firewall']).to_json()['firewall']; print(json.dumps({'sample': t1 - t, 'collect': fw['seconds'], "
            "'limits': [str(x) for x in f.limitations], 'tables': sorted((t['source'], t['family'], t['name']) "
            "for t in fw['ruleset']['tables']), 'local': fw['local_addresses'], 'before': fw['counters_before']}))")
    out = json.loads(s.run([python_for(None)[0], "-c", code]).stdout)
    assert out["limits"] == []
    assert ["iptables", "ip", "filter"] in out["tables"] and ["nft", "inet", "t"] in out["tables"]
    assert out["local"]["10.0.0.2"] == "veth1" and out["before"]
    assert out["sample"] < 0.5 and out["collect"] < 0.5, out
