"""Parsers of the macOS / FreeBSD tools on outputs in their published layouts (sources in
tests/data/hosts/bsd_build.py), and pf / ipfw rule order semantics."""

from __future__ import annotations

import json

from portdoctor.bsdtools.misc import parse_alf, parse_docker_ps, parse_ifconfig
from portdoctor.bsdtools.services import (
    exit_code, needs_onestatus, parse_brew_services, parse_launchctl_list, parse_launchctl_print,
    parse_service_listing, parse_service_status,
)
from portdoctor.bsdtools.sockets import (
    parse_listen_queues, parse_lsof, parse_netstat_anv, parse_sockstat, parse_sockstat_json,
)
from portdoctor.firewall import ipfw, pf
from portdoctor.firewall.bsdfilter import FilterFlow, evaluate, first_match_order

# macOS 10.14 (https://github.com/danielkrainas/node-netstat/issues/26, one LISTEN row added)
MOJAVE = """Active Internet connections (including servers)
Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)     rhiwat shiwat    pid   epid  state    options
tcp4       0      0  192.168.1.191.52044    31.13.66.35.443        ESTABLISHED 131072 131860   9811      0 0x0102 0x00000008
tcp46      0      0  *.3000                 *.*                    LISTEN      131072 131072   4242      0 0x0100 0x00000006
"""
# macOS 14: rxbytes/txbytes before rhiwat
SONOMA = """Active Internet connections (including servers)
Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)          rxbytes      txbytes  rhiwat  shiwat    pid   epid state  options           gencnt    flags   flags1 usscnt rtncnt fltrs
tcp6       0      0  ::1.5432               *.*                    LISTEN                 0            0  131072  131072    812      0 00100 00000006 000000000000a1c3 00000000 00000900      1      0 000001
tcp4       0      0  127.0.0.1.5432         *.*                    LISTEN                 0            0  131072  131072    812      0 00100 00000006 000000000000a1c2 00000000 00000900      1      0 000001
"""
# macOS 15 / 26: one process:pid column, names with spaces (rows as public test suites quote real
# output, e.g. github.com/blackhorseya/port-doctor internal/inspect; addresses from RFC 5737)
SEQUOIA = """Active Internet connections (including servers)
Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)          rxbytes      txbytes  rhiwat  shiwat          process:pid    state  options           gencnt    flags   flags1 usecnt rtncnt fltrs
tcp4       0      0  127.0.0.1.16494        *.*                    LISTEN                 0            0  131072  131072 Adobe Desktop Se:5822   00000 0000020f 0000000000005c85 00000000 00000800      1      0 000000
tcp46      0      0  *.5185                 *.*                    LISTEN                 0            0  131072  131072             node:33772  00100 00000106 0000000001818982 00000000 00000800      1      0 000000
tcp4       0      0  10.0.0.5.51000         198.51.100.7.2222      ESTABLISHED         7878         3036  131072  131768       python3.12:502  00102 00000000 0000000001392995 00000080 04000800      2      0 000000
"""


def test_netstat_anv_columns_found_by_header_in_each_release() -> None:
    (m,) = parse_netstat_anv(MOJAVE)
    assert (m.address, m.port, m.family, m.v6only, m.pid) == ("::", 3000, 6, False, 4242)
    s = parse_netstat_anv(SONOMA)
    assert [(r.address, r.family, r.v6only, r.pid) for r in s] == [("::1", 6, True, 812), ("127.0.0.1", 4, None, 812)]
    q = parse_netstat_anv(SEQUOIA)
    assert [(r.address, r.port, r.pid, r.command) for r in q] == [
        ("127.0.0.1", 16494, 5822, "Adobe Desktop Se"), ("::", 5185, 33772, "node")]


def test_lsof_field_output() -> None:
    text = "p4411\ncnode\nu501\nLdev\nf21\ntIPv4\nPTCP\nn127.0.0.1:3000\nf22\ntIPv6\nPTCP\nn[::1]:3000\n" \
           "p88\ncsshd\nu0\nLroot\nf3\ntIPv6\nPTCP\nn*:22\nf4\ntIPv4\nPTCP\nn10.0.0.2:22->10.0.0.1:51000\n"
    rows = parse_lsof(text)
    assert [(r.address, r.port, r.family, r.pid, r.command, r.user) for r in rows] == [
        ("127.0.0.1", 3000, 4, 4411, "node", "dev"), ("::1", 3000, 6, 4411, "node", "dev"),
        ("::", 22, 6, 88, "sshd", "root")]


def test_listen_queues_macos_and_freebsd() -> None:
    mac = parse_listen_queues("Current listen queue sizes (qlen/incqlen/maxqlen)\nListen         Local Address\n"
                              "128/12/128      *.8080\n0/0/128        127.0.0.1.5432\n")
    assert [(q.address, q.port, q.family, q.qlen, q.maxqlen) for q in mac] == [
        ("*", 8080, None, 128, 128), ("127.0.0.1", 5432, 4, 0, 128)]
    fb = parse_listen_queues("Current listen queue sizes (qlen/incqlen/maxqlen)\n"
                             "Proto Listen                           Local Address\n"
                             "tcp6  0/0/128                          *.22\nunix  0/0/4     /var/run/devd.pipe\n")
    assert [(q.address, q.port, q.family) for q in fb] == [("::", 22, 6)]


def test_sockstat_text_and_libxo() -> None:
    text = ("USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS      \n"
            "www      nginx      1201   6  tcp4   *:80                  *:*\n"
            "root     sshd        812   4  tcp46  *:22                  *:*\n"
            "?        ?          ?     ?   tcp4   127.0.0.1:9100        *:*\n")
    assert [(r.address, r.port, r.family, r.v6only, r.pid, r.user) for r in parse_sockstat(text)] == [
        ("0.0.0.0", 80, 4, None, 1201, "www"), ("::", 22, 6, False, 812, "root"),
        ("127.0.0.1", 9100, 4, None, None, None)]
    doc = {"__version": "1", "sockstat": {"socket": [
        {"user": "api", "command": "apiserver", "pid": "2210", "fd": "3", "proto": "tcp6",
         "local": {"address": "::1", "port": "9000"}, "foreign": {"address": "::", "port": "*"}}]}}
    (r,) = parse_sockstat_json(json.dumps(doc))
    assert (r.address, r.port, r.family, r.v6only, r.pid, r.command) == ("::1", 9000, 6, True, 2210, "apiserver")


def test_launchd_brew_rcd() -> None:
    rows = parse_launchctl_list("PID\tStatus\tLabel\n-\t78\thomebrew.mxcl.postgresql@16\n612\t0\tcom.apple.Finder\n")
    assert [(r.label, r.pid, r.status) for r in rows] == [("homebrew.mxcl.postgresql@16", None, 78),
                                                          ("com.apple.Finder", 612, 0)]
    info = parse_launchctl_print("gui/501/x = {\n\tstate = not running\n\targuments = {\n\t\t/bin/x\n\t}\n"
                                 "\tlast exit code = 78: EX_CONFIG\n\tstderr path = /tmp/x.log\n}\n")
    assert info["state"] == "not running" and info["stderr path"] == "/tmp/x.log"
    table = parse_brew_services("Name          Status  User File\npostgresql@16 error  1 dev  ~/Library/LaunchAgents/"
                                "homebrew.mxcl.postgresql@16.plist\nredis         started dev ~/Library/LaunchAgents/"
                                "homebrew.mxcl.redis.plist\nnginx         none\n")
    assert [(b.name, b.status, b.exit_code) for b in table] == [("postgresql@16", "error", 1),
                                                               ("redis", "started", None), ("nginx", "none", None)]
    assert parse_service_status("nginx is not running.\n") == (False, None)
    assert parse_service_status("sshd is running as pid 812.\n") == (True, 812)
    assert needs_onestatus("Cannot 'status' redis. Set redis_enable to YES in /etc/rc.conf or use 'onestatus' "
                           "instead of 'status'.\n")
    assert parse_service_listing("DAEMON\nLOGIN\nnginx\nredis\n") == ["DAEMON", "LOGIN", "nginx", "redis"]
    full = parse_launchctl_print("system/org.example.api = {\n\tstate = spawn scheduled\n\tlast exit code = 78: "
                                 "EX_CONFIG\n\targuments = {\n\t\t/usr/local/bin/api\n\t\t--port\n\t\t3000\n\t}\n"
                                 "\tenvironment = {\n\t\tPORT => 3000\n\t}\n}\n")
    assert (full["arguments"], full["environment"]) == ("/usr/local/bin/api --port 3000", "PORT=3000")
    assert exit_code(full["last exit code"]) == 78 and exit_code("(never exited)") is None


def test_alf_docker_ifconfig() -> None:
    st = parse_alf("Firewall is enabled. (State = 1)", "Firewall stealth mode is on", "Block all DISABLED!",
                   "ALF: total number of apps = 1 \n\n1 :  /usr/local/bin/node \n \t ( Block incoming connections ) \n")
    assert (st.enabled, st.stealth, st.block_all, st.blocked_apps) == (True, True, False, ("/usr/local/bin/node",))
    (c,) = parse_docker_ps(json.dumps({"ID": "5f2c", "Names": "web", "Image": "web:dev", "State": "running",
                                       "Ports": "0.0.0.0:8080->3000/tcp, :::8080->3000/tcp, 5432/tcp"}))
    assert c.ports == (("0.0.0.0", 8080, 3000), ("::", 8080, 3000))
    (a,) = [x for x in parse_ifconfig("en0: flags=8863<UP,BROADCAST> mtu 1500\n\tinet 192.168.1.20 netmask "
                                      "0xffffff00 broadcast 192.168.1.255\n") if x.family == 4]
    assert (a.ifname, a.address, a.prefixlen, a.up) == ("en0", "192.168.1.20", 24, True)


PF_RULES = """@0 block drop in all
  [ Evaluations: 10  Packets: 4  Bytes: 240  States: 0  ]
@1 pass in proto tcp from any to any port = 8080 flags S/SA keep state
@2 block return in quick proto tcp from <bad> to any port = 8080
@3 block in proto tcp from any to any port 9000:9100
@4 pass in quick on lo0 all
@5 block return-rst in proto tcp from 10.1.0.0/16 to any port = 22 user 501
"""


def test_pf_last_match_wins_unless_quick() -> None:
    rules = pf.parse_rules(PF_RULES, default_block="drop")
    assert [r.quick for r in rules] == [False, False, True, False, True, False]
    assert rules[0].packets == 4 and rules[3].dport == "9000:9100" and rules[3].block == "drop"
    assert rules[5].unsupported == "user 501"
    order = first_match_order(rules)
    tables = {"bad": ("192.0.2.0/24",)}
    # 8080 from an ordinary client: @1 (pass) is the last match over @0 (block)
    assert evaluate(order, FilterFlow("10.0.0.2", 8080, src="10.9.9.9"), tables).verdict == "pass"
    # from <bad>: the quick @2 decides at once, with a reset
    out = evaluate(order, FilterFlow("10.0.0.2", 8080, src="192.0.2.7"), tables)
    assert (out.verdict, out.rule.number) == ("reject", 2)
    # 9050: @3 plain block = block-policy drop: a timeout
    assert evaluate(order, FilterFlow("10.0.0.2", 9050, src="10.9.9.9"), tables).verdict == "drop"
    # loopback passes (quick @4), whatever comes later
    assert evaluate(order, FilterFlow("127.0.0.1", 9050, src="127.0.0.1", iface="lo0"), tables).verdict == "pass"
    # any client on 22, interface unknown: @4 (on lo0) and @5 (a user match portdoctor does not judge)
    # may apply to some clients only; @0 drops the rest
    out = evaluate(order, FilterFlow("10.0.0.2", 22, src=None), tables)
    assert out.verdict == "drop" and [r.number for r in out.some_clients] == [4, 5]
    assert pf.parse_rules("@0 block in all\n", pf.block_policy("set block-policy return\n"))[0].verdict == "reject"
    glued = pf.parse_rules("@0 block return-rst(ttl 100) in quick proto tcp from any to (en0) port = 443\n"
                           "@1 block return-icmp(port-unr) in quick proto tcp from any to (en0:network) port = 80\n")
    assert [(r.block, r.quick, r.dst) for r in glued] == [("return-rst", True, ("(en0)",)),
                                                          ("return-icmp", True, ("(en0:network)",))]
    ifs = {"en0": ("192.168.1.20/24",)}
    assert evaluate(glued, FilterFlow("192.168.1.20", 443, src="10.1.1.1"), ifaddrs=ifs).verdict == "reject"
    assert evaluate(glued, FilterFlow("192.168.1.77", 80, src="10.1.1.1"), ifaddrs=ifs).rule.number == 1
    assert evaluate(glued, FilterFlow("10.9.9.9", 443, src="10.1.1.1"), ifaddrs=ifs).verdict == "pass"
    assert pf.skip_interfaces("set skip on lo0\nset skip on { bridge0, lo1 } # vms\n") == ("lo0", "bridge0", "lo1")


IPFW = """00100     4210      311022 allow ip from any to any via lo0
00300       22        1320 reset tcp from 192.0.2.0/24 to me 80
00350        0           0 unreach port tcp from any to me 81
00360        0           0 deny tcp from any to me 82 in
00370        0           0 allow tcp from any to any established
00400      911       64104 allow tcp from any to me 80 setup keep-state :default
65535       17        1200 deny ip from any to any
"""


def test_ipfw_first_match() -> None:
    rules = ipfw.parse_rules(IPFW)
    me = ("10.20.0.5",)
    order = [r for r in rules if r.action != "none"]
    out = evaluate(order, FilterFlow("10.20.0.5", 80, src="192.0.2.9"), local=me, default="drop")
    assert (out.verdict, out.rule.number) == ("reject", 300)
    assert evaluate(order, FilterFlow("10.20.0.5", 80, src="10.20.0.9"), local=me).rule.number == 400
    assert evaluate(order, FilterFlow("10.20.0.5", 81, src="10.20.0.9"), local=me).verdict == "reject"
    assert evaluate(order, FilterFlow("10.20.0.5", 82, src="10.20.0.9"), local=me).verdict == "drop"
    # `established` never matches a SYN; the default rule drops 8080
    out = evaluate(order, FilterFlow("10.20.0.5", 8080, src="10.20.0.9"), local=me)
    assert (out.verdict, out.rule.number) == ("drop", 65535)
    assert ipfw.default_verdict(rules) == "drop" and rules[0].packets == 4210
    steer = ipfw.parse_rules("00050 skipto 1000 tcp from any to me 80\n00060 count ip from any to any\n")
    assert [(r.action, r.unsupported) for r in steer] == [("none", "skipto"), ("none", "")]


def test_parsers_keep_what_they_can_read() -> None:
    """Cut or garbled outputs: every parser returns the rows it could read, never raises."""
    import random

    lsof = "p4411\ncnode\nu501\nLdev\nf21\ntIPv4\nPTCP\nn127.0.0.1:3000\nf22\ntIPv6\nPTCP\nn[::1]:3000\n"
    samples = [MOJAVE, SONOMA, SEQUOIA, PF_RULES, IPFW, lsof]
    rng = random.Random(15)
    for text in samples:
        for _ in range(200):
            cut = text[: rng.randrange(len(text))]
            chars = list(cut)
            for _ in range(3):
                if chars:
                    chars[rng.randrange(len(chars))] = rng.choice(" :.*/\n@[]{}!<>0123456789x")
            mutated = "".join(chars)
            parse_netstat_anv(mutated)
            parse_listen_queues(mutated)
            parse_lsof(mutated)
            parse_sockstat(mutated)
            pf.parse_rules(mutated)
            ipfw.parse_rules(mutated)
            parse_launchctl_print(mutated)
    assert parse_brew_services('[{"name": "redis", "status": "sta') == []
    assert parse_sockstat_json('{"sockstat": [1, 2]}') == [] and parse_sockstat_json("[]") == []
    assert parse_docker_ps('{"ID": "a", "Ports": "0.0.0.0:1->2/tcp"}\n{"ID": "b", "Po') != []
