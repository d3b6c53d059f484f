"""Fault catalogue: firewall rules in the shapes operators write them: iptables and nftables, ufw and firewalld, REJECT types, raw/mangle/OUTPUT chains, sets and verdict maps, DNAT that works or leads nowhere, and stateful matches that must stay 'could not evaluate'.

Each test builds the fault for real in namespaces, checks what a real client saw, then asserts
the verdict an operator should act on and the evidence behind it (helpers: faults.py).
"""

from __future__ import annotations

import errno

import pytest

from clients import connect_from, hold
from netlab import Host, Lab
from servers import backend, dnat
from verdicts import brief, diagnose, everything, finding, text_of, verdict
from faults import (  # noqa: F401  (_root and tmpdir are fixtures)
    _root,
    diagnosed_as,
    diagnosed_at,
    diagnosed_locally_as,
    FIREWALLD,
    UFW,
    UFW_ALLOW,
)

pytestmark = pytest.mark.lab


def test_drop_in_user_chain_for_one_source(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.add_addr("10.0.0.3/24", "veth0")
    s.listen(8080)
    s.iptables("-N", "BLOCKLIST")
    s.iptables("-A", "INPUT", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
    s.iptables("-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "BLOCKLIST")
    s.iptables("-A", "BLOCKLIST", "-s", "10.0.0.0/30", "-j", "DROP")
    assert connect_from(c, "10.0.0.1", "10.0.0.2", 8080) == errno.ETIMEDOUT
    assert connect_from(c, "10.0.0.3", "10.0.0.2", 8080) == errno.ETIMEDOUT
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    verdict(doc, "firewall_drop")
    f = finding(doc, "firewall_drop")
    assert "BLOCKLIST" in f["summary"], brief(doc)
    assert "10.0.0.0/30" in "\n".join(f["evidence"]), text_of(f)

def test_nft_ip_family_set_of_blocked_ports(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table ip filter {
  set blocked_ports {
    type inet_service
    elements = { 23, 8080, 9000 }
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iif "lo" accept
    tcp dport @blocked_ports reject with tcp reset
  }
}""")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "nft ip filter" in f["summary"], text_of(f)
    assert "@blocked_ports" in text_of(f), text_of(f)

def test_nft_verdict_map_drops_the_port(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet fw {
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    iifname "lo" accept
    tcp dport vmap { 22 : accept, 8080 : drop, 9090 : drop }
  }
}""")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "vmap" in text_of(finding(doc, "firewall_drop")), brief(doc)

def test_nft_regular_chain_reject_for_a_source_set(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet fw {
  set untrusted {
    type ipv4_addr
    flags interval
    elements = { 10.0.0.0/29 }
  }
  chain app {
    ip saddr @untrusted reject with icmpx type port-unreachable
    accept
  }
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 8000-8100 jump app
  }
}""")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "chain app" in f["summary"], text_of(f)

def test_multiport_reject_on_ip6tables(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::")
    s.ip6tables("-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "80,443,8000:8100",
                "-j", "REJECT", "--reject-with", "tcp-reset")
    assert c.connect_errno("fd00::2", 8080, timeout=2) == errno.ECONNREFUSED
    doc = diagnose(s, "[fd00::2]:8080", "--from", "fd00::1")
    verdict(doc, "firewall_reject")
    assert "multiport" in text_of(finding(doc, "firewall_reject")), brief(doc)

def test_reject_in_forward_for_a_dnat_to_a_running_backend(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(80, argv0="httpd")
    dnat(s, "10.0.1.2:80")
    s.iptables("-A", "FORWARD", "-d", "10.0.1.2", "-p", "tcp", "--dport", "80", "-j", "REJECT")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "FORWARD" in f["summary"], text_of(f)
    assert "10.0.1.2:80" in text_of(f), text_of(f)

def test_dnat_to_a_backend_listening_on_its_loopback(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(80, "127.0.0.1", argv0="httpd")
    dnat(s, "10.0.1.2:80")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "port_mapping")
    f = finding(doc, "port_mapping")
    assert "10.0.1.2:80" in f["summary"], text_of(f)

def test_output_chain_reject_on_the_client(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    c.iptables("-A", "OUTPUT", "-d", "10.0.0.2", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
               "--reject-with", "tcp-reset")
    doc = diagnosed_locally_as(c, "10.0.0.2", 8080, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "OUTPUT" in f["summary"], text_of(f)

def test_local_dnat_in_output_to_a_port_where_nothing_listens(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.iptables("-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1", "-p", "tcp", "--dport", "80",
               "-j", "DNAT", "--to-destination", "127.0.0.1:8080")
    doc = diagnosed_locally_as(s, "127.0.0.1", 80, errno.ECONNREFUSED, "port_mapping")
    assert "127.0.0.1:8080" in finding(doc, "port_mapping")["summary"], brief(doc)


# =========================================================================== proxies

def test_ufw_reject_rule(pair: tuple[Host, Host]) -> None:
    """`ufw reject 8080/tcp`, as ufw writes it (a reject rule in ufw-user-input)."""
    c, s = pair
    s.listen(8080)
    s.run(["iptables-restore"], input=UFW)
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "ufw-user-input" in f["summary"], text_of(f)
    assert any((x.get("command") or "").startswith("ufw ") for x in f["fix"]), text_of(f)

def test_firewalld_zone_without_the_port(pair: tuple[Host, Host]) -> None:
    """firewalld's public zone: only ssh allowed; the rest is rejected admin-prohibited."""
    c, s = pair
    s.listen(8080)
    s.nft(FIREWALLD)
    doc = diagnosed_as(c, s, errno.EHOSTUNREACH, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "admin-prohibited" in f["summary"] and "EHOSTUNREACH" in f["summary"], text_of(f)
    assert any("firewall-cmd" in (x.get("command") or "") and "public" in (x.get("command") or "")
               for x in f["fix"]), text_of(f)

def test_iprange_reject(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-m", "iprange", "--src-range",
               "10.0.0.1-10.0.0.10", "-j", "REJECT")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    assert "10.0.0.1-10.0.0.10" in text_of(finding(doc, "firewall_reject")), brief(doc)

def test_negated_source_drop_on_a_port_range(pair: tuple[Host, Host]) -> None:
    """"Only the bastion may reach the admin ports": everyone else is dropped."""
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "!", "-s", "10.0.0.100/32", "-p", "tcp", "-m", "tcp", "--dport", "8000:8100",
               "-m", "state", "--state", "NEW", "-j", "DROP")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "10.0.0.100" in text_of(finding(doc, "firewall_drop")), brief(doc)

def test_drop_in_the_raw_table(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-t", "raw", "-A", "PREROUTING", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "raw" in finding(doc, "firewall_drop")["summary"], brief(doc)

def test_drop_in_the_mangle_table(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-t", "mangle", "-A", "PREROUTING", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "mangle" in finding(doc, "firewall_drop")["summary"], brief(doc)

def test_nft_prerouting_raw_priority_drop(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet early {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    ip saddr 10.0.0.1 tcp dport 8080 drop
  }
}""")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "chain pre" in finding(doc, "firewall_drop")["summary"], brief(doc)

def test_ip6tables_drop_for_one_source(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::")
    s.ip6tables("-A", "INPUT", "-s", "fd00::1/128", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    assert c.connect_errno("fd00::2", 8080, timeout=0.5) == errno.ETIMEDOUT
    doc = diagnose(s, "[fd00::2]:8080", "--from", "fd00::1", "--timeout", "1")
    verdict(doc, "firewall_drop")
    assert "ip6tables" in finding(doc, "firewall_drop")["summary"], brief(doc)


# --------------------------------------------------------------------------- more NAT

def test_nft_dnat_to_a_backend_where_nothing_listens(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    backend(lab, s)
    s.nft("""table ip nat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "veth1" tcp dport 8080 dnat to 10.0.1.2:80
  }
}""")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "port_mapping")
    assert "10.0.1.2:80" in finding(doc, "port_mapping")["summary"], brief(doc)

def test_dnat_to_another_host_with_forwarding_off(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(80, argv0="httpd")
    s.sysctl("net.ipv4.ip_forward", 0)
    dnat(s, "10.0.1.2:80")
    assert c.connect_errno("10.0.0.2", 8080, timeout=0.5) == errno.ETIMEDOUT
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    # no rule drops it, the mapping leads nowhere because this host does not forward; the client
    # sees a timeout. Either name is fair as long as ip_forward is the evidence and the fix.
    assert doc["verdict"]["cause"] in ("port_mapping", "firewall_drop"), brief(doc)
    t = everything(doc)
    assert "ip_forward" in t and "10.0.1.2:80" in t, t
    assert "sysctl -w net.ipv4.ip_forward=1" in t, t

def test_dnat_to_the_wrong_backend_port(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(8080, argv0="httpd")  # the app in the "container" listens on 8080, the mapping says 80
    dnat(s, "10.0.1.2:80")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "port_mapping")
    assert "10.0.1.2:80" in finding(doc, "port_mapping")["summary"], brief(doc)

def test_iptables_policy_drop_with_only_ssh_open(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.run(["iptables-restore"], input="""*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
""")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    f = finding(doc, "firewall_drop")
    assert "policy DROP of chain INPUT" in f["summary"], text_of(f)
    cmd = next(x["command"] for x in f["fix"] if x.get("command"))
    assert cmd.startswith("iptables ") and "10.0.0.1" in cmd and "8080" in cmd, text_of(f)
    s.run(["sh", "-c", cmd])  # the fix, as given, lets the client in
    assert c.connect_errno("10.0.0.2", 8080) == 0

def test_reject_on_the_external_interface_diagnosed_without_from(pair: tuple[Host, Host]) -> None:
    """Loopback is let through, everything arriving on the network is rejected: a local check passes."""
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-i", "veth1", "-p", "tcp", "--dport", "8080", "-j", "REJECT")
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    doc = diagnose(s, "10.0.0.2:8080")
    assert doc["probe"]["state"] == "open"
    # clients of 10.0.0.2 come in on veth1 (a local client would use lo): every one is rejected
    verdict(doc, "firewall_reject")
    assert "veth1" in text_of(finding(doc, "firewall_reject")), brief(doc)

def test_nft_output_reject_on_the_client(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    c.nft("""table inet egress {
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr 10.0.0.0/24 tcp dport { 8080, 8443 } reject with tcp reset
  }
}""")
    doc = diagnosed_locally_as(c, "10.0.0.2", 8080, errno.ECONNREFUSED, "firewall_reject")
    assert "chain out" in finding(doc, "firewall_reject")["summary"], brief(doc)

def test_ip6tables_icmp6_port_unreachable_for_one_source(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::")
    s.ip6tables("-A", "INPUT", "-s", "fd00::1", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
                "--reject-with", "icmp6-port-unreachable")
    doc = diagnosed_at(c, s, "fd00::2", errno.ECONNREFUSED, "firewall_reject", src="fd00::1")
    assert "fd00::1" in everything(doc), brief(doc)
    # another source is let in
    doc2 = diagnose(s, "[fd00::2]:8080", "--from", "fd00::99")
    verdict(doc2, "ok")

def test_nft_inet_rule_for_ipv6_sources_only(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::", v6only=False, argv0="java")
    s.nft("""table inet fw {
  chain input {
    type filter hook input priority 0; policy accept;
    ip6 saddr fd00::/64 tcp dport 8080 reject with tcp reset
  }
}""")
    assert c.connect_errno("10.0.0.2", 8080) == 0
    doc = diagnosed_at(c, s, "fd00::2", errno.ECONNREFUSED, "firewall_reject", src="fd00::1")
    assert "fd00::/64" in everything(doc), brief(doc)
    doc4 = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc4, "ok")

def test_ip6tables_output_drop_on_the_client(pair: tuple[Host, Host]) -> None:
    """Client-side run: the client's own ip6tables drops what it sends to the server."""
    c, s = pair
    s.listen(8080, "::")
    c.ip6tables("-A", "OUTPUT", "-d", "fd00::2", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    assert c.connect_errno("fd00::2", 8080) == errno.ETIMEDOUT
    doc = diagnose(c, "[fd00::2]:8080", "--timeout", "1")
    verdict(doc, "firewall_drop")
    assert "OUTPUT" in everything(doc), brief(doc)

def test_reject_with_icmp_net_unreachable(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "icmp-net-unreachable")
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ENETUNREACH, "firewall_reject")
    assert "net-unreachable" in everything(doc), brief(doc)

def test_nft_ct_state_new_drop(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet fw {
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    ct state new tcp dport 8080 drop
  }
}""")
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ETIMEDOUT, "firewall_drop")
    assert "ct state new" in everything(doc), brief(doc)

def test_reject_on_lo_blocks_local_clients_only(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-i", "lo", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    assert s.connect_errno("127.0.0.1", 8080) == errno.ECONNREFUSED
    doc = diagnose(s, "127.0.0.1:8080")
    verdict(doc, "firewall_reject")
    assert "lo" in everything(doc), brief(doc)

def test_reject_on_lo_does_not_concern_a_remote_client(pair: tuple[Host, Host]) -> None:
    """The local probe of 10.0.0.2 goes through lo and is rejected; the real client is not."""
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-i", "lo", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    assert s.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    diagnosed_at(c, s, "10.0.0.2", 0, "ok")

def test_output_reject_of_the_servers_replies(pair: tuple[Host, Host]) -> None:
    """The server's OUTPUT chain rejects its own SYN-ACKs (--sport): the client times out."""
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "OUTPUT", "-p", "tcp", "--sport", "8080", "-d", "10.0.0.0/24", "-j", "REJECT",
               "--reject-with", "tcp-reset")
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ETIMEDOUT, "firewall_drop", "firewall_reject")
    t = everything(doc)
    assert "OUTPUT" in t and "8080" in t, brief(doc)

def test_connlimit_reject_is_judged_from_the_connections_open(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "-m", "connlimit", "--connlimit-above", "2",
               "--connlimit-mask", "32", "-j", "REJECT", "--reject-with", "tcp-reset")
    hold(c, 2)
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "firewall_reject")
    t = everything(doc)
    assert "connlimit" in t and "more than 2 connections" in t and "10.0.0.1 has 2 connections open" in t, brief(doc)

def test_recent_blocklist_drop_is_judged_from_the_list(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-m", "recent", "--name", "badguys", "--rcheck",
               "--seconds", "3600", "-j", "DROP")
    s.run(["sh", "-c", "echo +10.0.0.1 > /proc/net/xt_recent/badguys"])
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ETIMEDOUT, "firewall_drop")
    t = everything(doc)
    assert "list badguys" in t and "stamps of 10.0.0.1" in t, brief(doc)

def test_limit_rate_then_reject_is_not_evaluated_as_certain(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "-m", "limit", "--limit", "1/hour",
               "--limit-burst", "1", "-j", "ACCEPT")
    s.iptables("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    assert c.connect_errno("10.0.0.2", 8080) == 0  # the burst of one is used up
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "firewall_reject", "unknown")
    t = everything(doc)
    assert "only above 1 per hour (burst 1): an intermittent refusal" in t, brief(doc)

def test_nft_rate_limit_drop_is_not_evaluated_as_certain(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet fw {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "veth1" tcp dport 8080 ct state new limit rate over 1/minute burst 1 packets drop
  }
}""")
    assert c.connect_errno("10.0.0.2", 8080) == 0  # within the burst
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ETIMEDOUT, "firewall_drop", "unknown")
    t = everything(doc)
    assert "limit rate" in t and "only over 1 per minute (burst 1): an intermittent refusal" in t, brief(doc)

def test_ufw_allows_the_port_is_ok(pair: tuple[Host, Host]) -> None:
    """`ufw allow from 10.0.0.0/24 to any port 8080 proto tcp` under a default-deny policy."""
    c, s = pair
    s.listen(8080, argv0="api-server")
    s.run(["iptables-restore"], input=UFW_ALLOW)
    diagnosed_at(c, s, "10.0.0.2", 0, "ok")

def test_firewalld_zone_with_the_port_allowed_is_ok(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, argv0="api-server")
    s.nft("""table inet firewalld {
  chain filter_INPUT {
    type filter hook input priority filter + 10; policy accept;
    ct state { established, related } accept
    iifname "lo" accept
    jump filter_INPUT_ZONES
    reject with icmpx admin-prohibited
  }
  chain filter_INPUT_ZONES {
    goto filter_IN_public
  }
  chain filter_IN_public {
    jump filter_IN_public_allow
    meta l4proto { icmp, ipv6-icmp } accept
  }
  chain filter_IN_public_allow {
    tcp dport 22 accept
    tcp dport 8080 ct state { new, untracked } accept
  }
}""")
    diagnosed_at(c, s, "10.0.0.2", 0, "ok")


# =========================================================================== NAT

def test_dnat_to_a_working_backend_is_ok(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(80, argv0="httpd")
    dnat(s, "10.0.1.2:80")
    diagnosed_at(c, s, "10.0.0.2", 0, "ok")

def test_two_dnat_rules_the_first_wins(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(8080, argv0="httpd")
    dnat(s, "10.0.1.2:80")
    dnat(s, "10.0.1.2:8080")
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "port_mapping")
    assert "10.0.1.2:80" in doc["verdict"]["summary"] and "10.0.1.2:8080" not in doc["verdict"]["summary"], brief(doc)


# =========================================================================== resources
