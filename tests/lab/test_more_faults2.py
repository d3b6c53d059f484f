"""A second round of held-out faults (issues 4, 5 and 6), built the way operators meet them.

None repeats a case of test_more_faults or the other lab tests: IPv6 listeners and rules, --service
forms, two processes and one port, supervisord crash loops, HAProxy/nginx/Caddy with several or
loopback-bound servers, REJECT types, conntrack/interface/OUTPUT rules, rate and connection limit
matches (which must be "could not evaluate", never a wrong certain verdict), allowed ports behind
ufw/firewalld rulesets, NAT that works, nginx at its fd limit, a SIGSTOPped redis, CNAMEs, stale
records, search domains and URL targets. Client c: 10.0.0.1 / fd00::1; server s: 10.0.0.2 / fd00::2;
backend b: 10.0.1.2 behind s.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from clients import hold
from netlab import Host, Lab
from servers import backend, dnat, need, nginx_conf, readable_tmpdir, supervisord, ufw_rules
from verdicts import brief, diagnose, everything_and_limitations as everything, verdict

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _root() -> None:
    need("iptables", "ip6tables", "nft")


@pytest.fixture
def tmpdir() -> Iterator[Path]:
    """A world-readable temporary folder, removed after (see servers.readable_tmpdir)."""
    yield from readable_tmpdir("pdmore2-")


def diagnosed_as(c: Host, s: Host, target: str, err: int, *causes: str, port: int = 8080,
                 src: str = "10.0.0.1", extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Client c connecting to `target`:port gets `err`; diagnose on s --from src gives one of `causes`."""
    # over a veth, TCP takes an ICMPv6 error only for the SYN retransmitted after 1 s
    assert c.connect_errno(target, port, timeout=2.5 if ":" in target else 1) == err
    timeout = ("--timeout", "1") if err == errno.ETIMEDOUT else ()
    t = f"[{target}]:{port}" if ":" in target else f"{target}:{port}"
    doc = diagnose(s, t, "--from", src, *timeout, *extra)
    verdict(doc, *causes)
    return doc


def curl(c: Host, url: str) -> str:
    return c.run(["curl", "-m", "5", "-s", "-o", "/dev/null", "-w", "%{http_code}", url], check=False).stdout


def dnsmasq(h: Host, *extra: str) -> subprocess.Popen:
    """dnsmasq on 127.0.0.1:53 of h with only `extra` records (any other name: NXDOMAIN)."""
    args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53",
            "--pid-file=", "--user=root", "--group=root", *extra, "--address=/#/"]
    return h.start(args, ready_port=53)


def redis(s: Host, d: Path) -> subprocess.Popen:
    """redis-server in s on 0.0.0.0:6379 (protected-mode off, nothing saved, its folder `d`)."""
    return s.start(["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--save", "", "--appendonly", "no",
                    "--dir", str(d), "--protected-mode", "no"], ready_port=6379)


# =========================================================================== IPv6


def test_v6_listener_on_another_v6_address(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.add_addr("fd00::3/64", "veth1")
    s.listen(8080, "fd00::3", argv0="api-server")
    doc = diagnosed_as(c, s, "fd00::2", errno.ECONNREFUSED, "wrong_interface", src="fd00::1")
    assert "fd00::3" in doc["verdict"]["summary"], brief(doc)


def test_ip6tables_icmp6_port_unreachable_for_one_source(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::")
    s.ip6tables("-A", "INPUT", "-s", "fd00::1", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
                "--reject-with", "icmp6-port-unreachable")
    doc = diagnosed_as(c, s, "fd00::2", errno.ECONNREFUSED, "firewall_reject", src="fd00::1")
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
    doc = diagnosed_as(c, s, "fd00::2", errno.ECONNREFUSED, "firewall_reject", src="fd00::1")
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


def test_nginx_ipv6only_listener_reached_over_ipv4(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("nginx")
    c, s = pair
    conf = tmpdir / "nginx.conf"
    conf.write_text(nginx_conf(tmpdir, "    server {\n        listen [::]:8080 ipv6only=on;\n"
                                       "        location / { return 200 \"hi\\n\"; }\n    }\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080, ready_address="::1")
    assert c.connect_errno("fd00::2", 8080) == 0
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_interface")
    t = everything(doc)
    assert "nginx" in t and "ipv6only" in t.lower().replace("v6only", "ipv6only"), t


# =========================================================================== --service forms


def test_service_named_as_a_systemd_unit_that_is_not_running(pair: tuple[Host, Host]) -> None:
    c, s = pair
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "service_not_running",
                       extra=("--service", "billing.service"))
    assert "billing" in doc["verdict"]["summary"], brief(doc)


def test_service_named_by_a_cmdline_fragment_on_another_port(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    app = tmpdir / "billing-api"
    app.write_text("import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                   "s.bind(('0.0.0.0',9090))\ns.listen(8)\nprint('ready',flush=True)\n"
                   "while True:\n    s.accept()[0].close()\n")
    p = s.popen([sys.executable, str(app), "--workers", "2"], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_port", extra=("--service", "billing-api"))
    assert "9090" in doc["verdict"]["summary"], brief(doc)


def test_service_named_as_a_unit_running_on_another_port(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """--service redis-server.service (the unit name an operator knows); redis runs on 6379, the client uses 6380."""
    need("redis-server")
    c, s = pair
    redis(s, tmpdir)
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_port", port=6380,
                       extra=("--service", "redis-server.service"))
    assert "6379" in doc["verdict"]["summary"] and "redis" in doc["verdict"]["summary"], brief(doc)


def test_service_named_that_is_not_running_while_another_app_listens_nearby(pair: tuple[Host, Host]) -> None:
    """--service worker: the operator's service is absent; an unrelated process sits on 8081."""
    c, s = pair
    s.listen(8081, argv0="metrics-exporter")
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "service_not_running",
                       extra=("--service", "order-worker"))
    assert "order-worker" in doc["verdict"]["summary"], brief(doc)


# =========================================================================== supervisord


# binds its port, serves briefly, then crashes with status 1 (a bad config read after bind)
CRASH_AFTER_BIND = ("import socket,sys,time; s=socket.socket(); s.bind(('0.0.0.0',{port})); s.listen(8); "
                    "time.sleep({after}); sys.stderr.write('api: KeyError DATABASE_URL\\\\n'); sys.exit(1)")


def test_supervisord_program_crashes_after_bind_with_autorestart(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    cmd = CRASH_AFTER_BIND.format(port=8090, after=0.3)
    supervisord(s, tmpdir, f"""
[program:api]
command={sys.executable} -c "{cmd}" --port 8090
startsecs=2
startretries=2
autorestart=true
stderr_logfile={tmpdir}/api.err
""", "FATAL")
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "service_not_running", port=8090)
    v = doc["verdict"]["summary"]
    assert "api" in v and "FATAL" in v and "exit status 1" in v, brief(doc)
    assert "DATABASE_URL" in everything(doc), brief(doc)


def test_supervisord_program_in_a_restart_loop(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """startretries is large: supervisord keeps restarting (STARTING/BACKOFF), never RUNNING."""
    c, s = pair
    cmd = CRASH_AFTER_BIND.format(port=8091, after=0.05)
    supervisord(s, tmpdir, f"""
[program:api]
command={sys.executable} -c "{cmd}" --port 8091
startsecs=5
startretries=1000
autorestart=true
stderr_logfile={tmpdir}/api.err
""", "BACKOFF")
    time.sleep(0.3)
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "service_not_running", port=8091)
    t = everything(doc)
    assert "api" in doc["verdict"]["summary"] and any(w in t for w in ("BACKOFF", "STARTING", "restart")), brief(doc)


def test_supervisord_new_version_fails_because_old_holds_the_port(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    s.listen(8092, "127.0.0.1", argv0="api-old")
    supervisord(s, tmpdir, f"""
[program:api]
command={sys.executable} -c "import socket; s=socket.socket(); s.bind(('0.0.0.0',8092))" --port 8092
startsecs=1
startretries=1
stderr_logfile={tmpdir}/api.err
""", "FATAL")
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_interface", "service_not_running", port=8092)
    t = everything(doc)
    # the operator must learn both: api-old holds 127.0.0.1:8092, supervisord's api could not bind
    assert "api-old" in t and "Address already in use" in t, brief(doc)


# =========================================================================== proxies

HAPROXY = """global
    maxconn 64

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s

frontend web
    bind {bind}
    default_backend app

backend app
    balance roundrobin
    server app1 127.0.0.1:9001 check inter 300ms fall 1 rise 1
    server app2 127.0.0.1:9002 check inter 300ms fall 1 rise 1
"""


def haproxy(s: Host, d: Path, bind: str = "*:8080", port: int = 8080, addr: str | None = None) -> Path:
    need("haproxy")
    conf = d / "haproxy.cfg"
    conf.write_text(HAPROXY.format(bind=bind))
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=port, ready_address=addr)
    return conf


def test_haproxy_all_servers_down(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    haproxy(s, tmpdir)
    time.sleep(1)
    assert curl(c, "http://10.0.0.2:8080/") == "503"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    t = everything(doc)
    assert "127.0.0.1:9001" in t and "127.0.0.1:9002" in t and "503" in t, brief(doc)


def test_haproxy_one_server_down_one_up_is_ok(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    # a real HTTP backend so HAProxy answers 200
    s.popen([sys.executable, "-m", "http.server", "9001", "--bind", "127.0.0.1", "-d", str(tmpdir)])
    s.wait_port(9001, "127.0.0.1")
    conf = tmpdir / "haproxy.cfg"
    need("haproxy")
    conf.write_text(HAPROXY.format(bind="*:8080").replace("127.0.0.1:9002", "127.0.0.1:9003"))
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=8080)
    time.sleep(1)
    assert {curl(c, "http://10.0.0.2:8080/") for _ in range(4)} == {"200"}
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "ok")


def test_haproxy_bound_to_loopback_reached_from_outside(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    conf = haproxy(s, tmpdir, bind="127.0.0.1:8080", addr="127.0.0.1")
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_interface")
    t = everything(doc)
    assert "haproxy" in t and str(conf) in t, brief(doc)


def test_nginx_upstream_group_with_one_dead_server_is_ok(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("nginx")
    c, s = pair
    s.popen([sys.executable, "-m", "http.server", "9002", "--bind", "127.0.0.1", "-d", str(tmpdir)])
    s.wait_port(9002, "127.0.0.1")
    conf = tmpdir / "nginx.conf"
    conf.write_text(nginx_conf(tmpdir, "    upstream app {\n        server 127.0.0.1:9001;\n"
                                       "        server 127.0.0.1:9002;\n    }\n"
                                       "    server {\n        listen 8080;\n"
                                       "        location / { proxy_pass http://app; }\n    }\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    assert {curl(c, "http://10.0.0.2:8080/") for _ in range(4)} == {"200"}
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "ok")
    # a good answer still mentions the dead member (a warning), without making it the verdict
    assert "127.0.0.1:9001" in everything(doc), brief(doc)


def test_haproxy_server_disabled_while_the_app_runs(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """`server app1 ... disabled` (left in maintenance after a deploy): the app is fine, HAProxy says 503."""
    c, s = pair
    s.popen([sys.executable, "-m", "http.server", "9001", "--bind", "127.0.0.1", "-d", str(tmpdir)])
    s.wait_port(9001, "127.0.0.1")
    need("haproxy")
    conf = tmpdir / "haproxy.cfg"
    conf.write_text(HAPROXY.format(bind="*:8080").replace("rise 1\n    server app2 127.0.0.1:9002 check inter 300ms fall 1 rise 1",
                                                          "rise 1 disabled"))
    assert "disabled" in conf.read_text() and "app2" not in conf.read_text()
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=8080)
    assert curl(c, "http://10.0.0.2:8080/") == "503"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    t = everything(doc)
    assert "disabled" in t and "app1" in t and "503" in t, brief(doc)


def test_caddy_upstream_on_the_address_while_the_app_is_on_loopback(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("caddy")
    c, s = pair
    s.listen(9006, "127.0.0.1", argv0="node")
    conf = tmpdir / "Caddyfile"
    conf.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n:8080 {\n\treverse_proxy 10.0.0.2:9006\n}\n")
    s.start(["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"], ready_port=8080,
            env={"HOME": str(tmpdir), "XDG_DATA_HOME": str(tmpdir), "XDG_CONFIG_HOME": str(tmpdir)})
    assert curl(c, "http://10.0.0.2:8080/") == "502"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    t = everything(doc)
    assert "10.0.0.2:9006" in t and "127.0.0.1" in t and str(conf) in t, brief(doc)


# =========================================================================== firewall


def test_reject_with_icmp_net_unreachable(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "icmp-net-unreachable")
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ENETUNREACH, "firewall_reject")
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
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ETIMEDOUT, "firewall_drop")
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
    diagnosed_as(c, s, "10.0.0.2", 0, "ok")


def test_output_reject_of_the_servers_replies(pair: tuple[Host, Host]) -> None:
    """The server's OUTPUT chain rejects its own SYN-ACKs (--sport): the client times out."""
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "OUTPUT", "-p", "tcp", "--sport", "8080", "-d", "10.0.0.0/24", "-j", "REJECT",
               "--reject-with", "tcp-reset")
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ETIMEDOUT, "firewall_drop", "firewall_reject")
    t = everything(doc)
    assert "OUTPUT" in t and "8080" in t, brief(doc)


def test_connlimit_reject_is_not_evaluated_as_certain(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "-m", "connlimit", "--connlimit-above", "2",
               "--connlimit-mask", "32", "-j", "REJECT", "--reject-with", "tcp-reset")
    hold(c, 2)
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "firewall_reject", "unknown")
    t = everything(doc)
    assert "connlimit" in t and "could not evaluate" in t.lower(), brief(doc)


def test_recent_blocklist_drop_is_not_evaluated_as_certain(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-m", "recent", "--name", "badguys", "--rcheck",
               "--seconds", "3600", "-j", "DROP")
    s.run(["sh", "-c", "echo +10.0.0.1 > /proc/net/xt_recent/badguys"])
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ETIMEDOUT, "firewall_drop", "unknown")
    t = everything(doc)
    assert "recent" in t and "could not evaluate" in t.lower(), brief(doc)


def test_limit_rate_then_reject_is_not_evaluated_as_certain(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "-m", "limit", "--limit", "1/hour",
               "--limit-burst", "1", "-j", "ACCEPT")
    s.iptables("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    assert c.connect_errno("10.0.0.2", 8080) == 0  # the burst of one is used up
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "firewall_reject", "unknown")
    t = everything(doc)
    assert "limit" in t and "could not evaluate" in t.lower(), brief(doc)


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
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ETIMEDOUT, "firewall_drop", "unknown")
    t = everything(doc)
    assert "limit rate" in t and "could not evaluate" in t.lower(), brief(doc)


# `ufw allow 22/tcp` and `ufw allow from 10.0.0.0/24 to any port 8080 proto tcp` (see servers.ufw_rules)
UFW_ALLOW = ufw_rules("-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n"
                      "-A ufw-user-input -s 10.0.0.0/24 -p tcp -m tcp --dport 8080 -j ACCEPT\n")


def test_ufw_allows_the_port_is_ok(pair: tuple[Host, Host]) -> None:
    """`ufw allow from 10.0.0.0/24 to any port 8080 proto tcp` under a default-deny policy."""
    c, s = pair
    s.listen(8080, argv0="api-server")
    s.run(["iptables-restore"], input=UFW_ALLOW)
    diagnosed_as(c, s, "10.0.0.2", 0, "ok")


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
    diagnosed_as(c, s, "10.0.0.2", 0, "ok")


# =========================================================================== NAT


def test_dnat_to_a_working_backend_is_ok(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(80, argv0="httpd")
    dnat(s, "10.0.1.2:80")
    diagnosed_as(c, s, "10.0.0.2", 0, "ok")


def test_two_dnat_rules_the_first_wins(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(8080, argv0="httpd")
    dnat(s, "10.0.1.2:80")
    dnat(s, "10.0.1.2:8080")
    doc = diagnosed_as(c, s, "10.0.0.2", errno.ECONNREFUSED, "port_mapping")
    assert "10.0.1.2:80" in doc["verdict"]["summary"] and "10.0.1.2:8080" not in doc["verdict"]["summary"], brief(doc)


# =========================================================================== resources


def test_nginx_at_its_worker_rlimit_nofile(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("nginx")
    c, s = pair
    conf = tmpdir / "nginx.conf"
    text = nginx_conf(tmpdir, "    server {\n        listen 8080;\n        location / { return 200 \"hi\\n\"; }\n    }\n")
    conf.write_text(text.replace("worker_processes 1;\n", "worker_processes 1;\nworker_rlimit_nofile 16;\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    hold(c, 30)
    assert curl(c, "http://10.0.0.2:8080/") in ("000", "")  # accepted by the kernel, never served
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    verdict(doc, "resource_exhaustion")
    t = everything(doc)
    assert "nginx" in t and ("RLIMIT_NOFILE" in t or "open files" in t or "worker_rlimit_nofile" in t), brief(doc)


def test_stopped_redis_fills_its_accept_queue(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("redis-server")
    c, s = pair
    p = s.start(["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--tcp-backlog", "4", "--save", "",
                 "--appendonly", "no", "--dir", str(tmpdir), "--protected-mode", "no"], ready_port=6379)
    # `ip netns exec` execs the daemon in place: this is redis's own pid (pgrep would see every
    # redis on the machine, the namespaces share one pid space)
    pid = p.pid
    assert Path(f"/proc/{pid}/comm").read_text().strip().startswith("redis-server")
    os.kill(pid, signal.SIGSTOP)
    try:
        hold(c, 8, port=6379)
        doc = diagnosed_as(c, s, "10.0.0.2", errno.ETIMEDOUT, "resource_exhaustion", port=6379)
        t = everything(doc)
        assert "accept queue" in t and "redis" in t, brief(doc)
        # the cause behind the full queue: the process is stopped (state T), not slow
        assert "stopped" in t.lower() or "SIGSTOP" in t or "SIGCONT" in t, brief(doc)
    finally:
        os.kill(pid, signal.SIGCONT)
        p.kill()


# =========================================================================== DNS and URL targets


# python3 -c DNS_QUERY NAME: asks 127.0.0.1 for NAME's A record; prints the rcode, then "CNAME target"
DNS_QUERY = r"""
import socket, struct, sys
name = sys.argv[1]
pkt = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
pkt += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(pkt, ("127.0.0.1", 53))
r = s.recv(512)
out = [str(struct.unpack(">H", r[2:4])[0] & 15)]
rest = r[len(pkt):]
if struct.unpack(">H", r[6:8])[0] and struct.unpack(">H", rest[2:4])[0] == 5:
    rd, labels, i = rest[12:], [], 0
    while rd[i]:
        labels.append(rd[i + 1:i + 1 + rd[i]].decode())
        i += 1 + rd[i]
    out += ["CNAME", ".".join(labels)]
print(" ".join(out))
"""


def test_cname_to_a_name_without_an_address(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, argv0="api-server")
    dnsmasq(c, "--cname=api.lab.test,web.lab.test", "--txt-record=web.lab.test,moved")
    # the server answers NOERROR with a CNAME to web.lab.test, which has no A/AAAA (NODATA)
    assert c.run([sys.executable, "-c", DNS_QUERY, "api.lab.test"]).stdout.split() == ["0", "CNAME", "web.lab.test"]
    assert c.run([sys.executable, "-c", DNS_QUERY, "web.lab.test"]).stdout.split() == ["0"]
    rc, probe = c.json_of("probe", "api.lab.test:8080")
    assert probe["state"] == "dns_error", probe
    doc = diagnose(c, "api.lab.test:8080")
    verdict(doc, "dns")
    # the record to fix is the CNAME's target; the name itself exists (not NXDOMAIN)
    assert "web.lab.test" in everything(doc), brief(doc)


def test_name_with_only_a_stale_address_on_the_server(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, argv0="api-server")
    s.dns({"web.lab.test": "10.0.0.9"})  # the old server, gone
    doc = diagnose(s, "http://web.lab.test:8080", "--timeout", "1")
    verdict(doc, "dns")
    t = everything(doc)
    assert "10.0.0.9" in t and "10.0.0.2" in t, brief(doc)


def test_name_with_a_stale_unroutable_address_from_the_client(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.dns({"web.lab.test": "10.9.9.9"})
    doc = diagnose(c, "http://web.lab.test:8080", "--timeout", "1")
    verdict(doc, "host_unreachable", "dns")
    assert "10.9.9.9" in everything(doc), brief(doc)


def test_search_domain_expands_to_a_stale_record(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("redis-server")
    c, s = pair
    s.write_etc("resolv.conf", "nameserver 127.0.0.1\nsearch lab.test\n")
    redis(s, tmpdir)
    s.dns({"cache.lab.test": "10.0.0.1"})
    doc = diagnose(s, "redis://cache:6379")
    verdict(doc, "dns")
    t = everything(doc)
    # the short name became cache.lab.test through resolv.conf's search list: that record is stale
    assert "10.0.0.1" in t and "cache.lab.test" in t, brief(doc)


def test_postgres_url_nothing_listens(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.dns({"db.lab.test": "10.0.0.2"})
    c.dns({"db.lab.test": "10.0.0.2"})
    rc, probe = c.json_of("probe", "postgres://app@db.lab.test/app")
    assert probe["state"] == "refused" and probe["target"]["port"] == 5432, probe
    doc = diagnose(s, "postgres://app@db.lab.test/app", "--from", "10.0.0.1")
    verdict(doc, "service_not_running")
    assert "postgres" in everything(doc).lower(), brief(doc)


def test_redis_url_on_the_wrong_port(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("redis-server")
    c, s = pair
    redis(s, tmpdir)
    s.dns({"cache.lab.test": "10.0.0.2"})
    doc = diagnose(s, "redis://cache.lab.test:6380/0", "--from", "10.0.0.1")
    verdict(doc, "wrong_port")
    assert "6379" in doc["verdict"]["summary"] and "redis" in everything(doc), brief(doc)


def test_http_url_default_port_while_nginx_is_on_8080(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("nginx")
    c, s = pair
    conf = tmpdir / "nginx.conf"
    conf.write_text(nginx_conf(tmpdir, "    server {\n        listen 8080;\n"
                                       "        location / { return 200 \"hi\\n\"; }\n    }\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    s.dns({"web.lab.test": "10.0.0.2"})
    c.dns({"web.lab.test": "10.0.0.2"})
    assert curl(c, "http://web.lab.test/") == "000"
    doc = diagnose(s, "http://web.lab.test", "--from", "10.0.0.1")
    verdict(doc, "wrong_port")
    assert "8080" in doc["verdict"]["summary"] and "nginx" in everything(doc), brief(doc)
