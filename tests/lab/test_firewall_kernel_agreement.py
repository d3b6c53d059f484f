"""The evaluator agrees with the kernel: random small rulesets are loaded into a real server
namespace (as iptables rules, or as a native nftables table), real clients connect from several
source addresses to several ports, and what each client saw must be what the evaluator predicts
from the rules read back with iptables-save -c / nft -j.

Bounded: 25 examples per backend, every connect of one example in parallel, 0.4 s timeouts.

The stateful test loads `recent` and `connlimit` rules with random kernel state (stamps written
to the xt_recent list, connections held open by each source) and predicts from that state as
read back from /proc (xt_recent, timer_list, nf_conntrack). 20 examples.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from netlab import Host, Lab, in_netns
from portdoctor.collectors.firewall import build_ruleset
from portdoctor.firewall.advice import client_error
from portdoctor.firewall.evaluate import Evaluator, Flow, HostInfo
from portdoctor.firewall.stateful import StatefulFacts, jiffies_and_hz, parse_conntrack, parse_recent

pytestmark = pytest.mark.lab

if os.environ.get("CI") != "true":
    if os.geteuid() != 0:
        pytest.skip("kernel agreement tests need root (they fail instead under CI=true)", allow_module_level=True)
    if not (shutil.which("iptables") and shutil.which("nft")):
        pytest.skip("iptables and nft are needed (they fail instead under CI=true)", allow_module_level=True)

SOURCES = ("10.0.0.1", "10.0.0.3", "10.0.0.5")
PORTS = (8001, 8002, 8003)  # 8001 and 8002 listen, 8003 is closed
TIMEOUT = 0.4
SERVER_IF = "veth1"

REJECTS = ("tcp-reset", "icmp-port-unreachable", "icmp-host-prohibited", "icmp-admin-prohibited",
           "icmp-net-unreachable")
ERRNOS = {"ECONNREFUSED": errno.ECONNREFUSED, "EHOSTUNREACH": errno.EHOSTUNREACH,
          "ENETUNREACH": errno.ENETUNREACH, "ETIMEDOUT": errno.ETIMEDOUT}


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Host, Host]]:
    with Lab(prefix=f"pk{os.getpid()}") as lab:
        c, s = lab.pair()
        for a in SOURCES[1:]:
            c.add_addr(f"{a}/24", "veth0")
        for p in PORTS[:2]:
            s.listen(p)
        # ICMP errors are rate limited per peer; the test sends many
        s.sysctl("net.ipv4.icmp_ratelimit", 0)
        s.sysctl("net.ipv4.icmp_msgs_per_sec", 100000)
        yield c, s


# --------------------------------------------------------------------------- random rulesets

addr_match = st.one_of(st.none(), st.tuples(st.sampled_from(["10.0.0.1/32", "10.0.0.3/32", "10.0.0.0/30",
                                                             "10.0.0.4/30", "10.0.0.0/24"]), st.booleans()))
port_match = st.one_of(st.none(), st.tuples(st.sampled_from([(8001,), (8002,), (8003,), (8001, 8002), (8001, 8003),
                                                             ("8001-8002",)]), st.booleans()))
verdict = st.one_of(st.sampled_from(["ACCEPT", "DROP", "RETURN", "JUMP", "GOTO"]),
                    st.sampled_from(REJECTS).map(lambda r: f"REJECT {r}"))
rule = st.fixed_dictionaries({
    "saddr": addr_match,
    "dport": port_match,
    "iif": st.one_of(st.none(), st.tuples(st.sampled_from([SERVER_IF, "lo"]), st.booleans())),
    "ct": st.sampled_from([None, "NEW", "ESTABLISHED"]),
    "verdict": verdict,
    # the evaluator judges the SYN; a rule that refuses only later packets (ESTABLISHED) breaks a
    # connection after connect() returned, which is another fault: such rules only accept here
}).filter(lambda r: r["ct"] != "ESTABLISHED" or r["verdict"] == "ACCEPT")
ruleset = st.fixed_dictionaries({
    "policy": st.sampled_from(["ACCEPT", "DROP"]),
    "input": st.lists(rule, max_size=5),
    "user": st.lists(rule.filter(lambda r: r["verdict"] not in ("JUMP", "GOTO")), max_size=3),
    "vmap": st.booleans(),
})


def iptables_text(rs: dict[str, Any]) -> str:
    lines = ["*filter", f":INPUT {rs['policy']} [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":USER - [0:0]"]
    for chain, rules in (("INPUT", rs["input"]), ("USER", rs["user"])):
        for r in rules:
            parts = [f"-A {chain}"]
            if r["iif"]:
                parts.append(("! " if r["iif"][1] else "") + f"-i {r['iif'][0]}")
            if r["saddr"]:
                parts.append(("! " if r["saddr"][1] else "") + f"-s {r['saddr'][0]}")
            parts.append("-p tcp")
            if r["dport"]:
                ports, neg = r["dport"]
                text = ",".join(str(p).replace("-", ":") for p in ports)
                parts.append(f"-m multiport {'! ' if neg else ''}--dports {text}")
            if r["ct"]:
                parts.append(f"-m conntrack --ctstate {r['ct']}")
            v = r["verdict"]
            if v.startswith("REJECT"):
                parts.append(f"-j REJECT --reject-with {v.split()[1]}")
            elif v == "JUMP":
                parts.append("-j USER")
            elif v == "GOTO":
                parts.append("-g USER")
            else:
                parts.append(f"-j {v}")
            lines.append(" ".join(parts))
    return "\n".join(lines + ["COMMIT", ""])


_NFT_REJECT = {"tcp-reset": "reject with tcp reset", "icmp-port-unreachable": "reject with icmp port-unreachable",
               "icmp-host-prohibited": "reject with icmp host-prohibited",
               "icmp-admin-prohibited": "reject with icmp admin-prohibited",
               "icmp-net-unreachable": "reject with icmp net-unreachable"}


def nft_text(rs: dict[str, Any]) -> str:
    def rule_line(r: dict[str, Any]) -> str:
        parts = []
        if r["iif"]:
            parts.append(f"iifname {'!= ' if r['iif'][1] else ''}\"{r['iif'][0]}\"")
        if r["saddr"]:
            parts.append(f"ip saddr {'!= ' if r['saddr'][1] else ''}{r['saddr'][0]}")
        parts.append("meta l4proto tcp")
        if r["dport"]:
            ports, neg = r["dport"]
            text = "{ " + ", ".join(str(p) for p in ports) + " }"
            parts.append(f"tcp dport {'!= ' if neg else ''}{text}")
        if r["ct"]:
            parts.append(f"ct state {r['ct'].lower()}")
        v = r["verdict"]
        parts.append(_NFT_REJECT[v.split()[1]] if v.startswith("REJECT") else
                     {"JUMP": "jump user", "GOTO": "goto user"}.get(v, v.lower()))
        return " ".join(parts)

    body = [rule_line(r) for r in rs["input"]]
    if rs["vmap"]:
        body.insert(0, "ip saddr 10.0.0.5 tcp dport vmap { 8002 : jump user, 8003 : drop }")
    return ("table inet t {\n  set allowed { type ipv4_addr; elements = { 10.0.0.3 } }\n"
            "  chain user {\n" + "".join(f"    {rule_line(r)}\n" for r in rs["user"]) +
            "    ip saddr @allowed tcp dport 8003 accept\n  }\n"
            "  chain input {\n"
            f"    type filter hook input priority 0; policy {rs['policy'].lower()};\n" +
            "".join(f"    {line}\n" for line in body) + "  }\n}\n")


# --------------------------------------------------------------------------- running it


def connect_from(c: Host, src: str, port: int) -> int:
    def go() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
            sk.settimeout(TIMEOUT)
            sk.bind((src, 0))
            try:
                rc = sk.connect_ex(("10.0.0.2", port))
            except socket.timeout:
                return errno.ETIMEDOUT
            return errno.ETIMEDOUT if rc in (errno.EAGAIN, errno.EINPROGRESS) else rc
    return in_netns(c.ns, go)


def observed(c: Host) -> dict[tuple[str, int], int]:
    flows = [(s, p) for s in SOURCES for p in PORTS]
    with ThreadPoolExecutor(max_workers=len(flows)) as pool:
        codes = list(pool.map(lambda f: connect_from(c, *f), flows))
    return dict(zip(flows, codes))


def predicted(s: Host, use_nft: bool) -> dict[tuple[str, int], int]:
    saves = [] if use_nft else [(s.run(["iptables-save", "-c"]).stdout, "ip", "iptables")]
    nft_json = s.run(["nft", "-j", "list", "ruleset"]).stdout if use_nft else None
    nft_txt = s.run(["nft", "-a", "list", "ruleset"]).stdout if use_nft else ""
    rs, limits = build_ruleset(saves, nft_json, nft_txt)
    assert not limits
    ev = Evaluator(rs, HostInfo({"10.0.0.2": SERVER_IF}, [("10.0.0.0/24", SERVER_IF, "unicast")]))
    out = {}
    for src in SOURCES:
        for port in PORTS:
            e = ev.evaluate(Flow(dst="10.0.0.2", dport=port, src=src, iif=SERVER_IF, not_lo=True))
            assert len(e.outcomes) == 1 and e.outcomes[0].definite, e
            o = e.outcomes[0]
            if o.verdict != "accept":
                out[(src, port)] = ERRNOS[client_error(o)[0]]
            elif port not in PORTS[:2]:
                out[(src, port)] = errno.ECONNREFUSED
            else:
                # the SYN gets through; a reject of the handshake's ACK reaches the client's socket
                # (a reset, or an ICMP error that SO_ERROR reports), a drop goes unnoticed by connect
                (a,) = ev.evaluate_established(e, o).outcomes
                if a.verdict == "reject":
                    out[(src, port)] = errno.ECONNRESET if a.reject_with == "tcp-reset" else \
                        ERRNOS[client_error(a)[0]]
                else:
                    out[(src, port)] = 0
    return out


def check(hosts: tuple[Host, Host], rs: dict[str, Any], use_nft: bool) -> None:
    c, s = hosts
    s.run(["nft", "flush", "ruleset"])
    if use_nft:
        s.nft(nft_text(rs))
    else:
        s.run(["iptables-restore"], input=iptables_text(rs))
    want = predicted(s, use_nft)
    got = observed(c)
    names = {v: errno.errorcode.get(v, "OK") for v in set(want.values()) | set(got.values())}
    assert {k: names[v] for k, v in got.items()} == {k: names[v] for k, v in want.items()}, \
        iptables_text(rs) if not use_nft else nft_text(rs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rs=ruleset)
def test_iptables_agrees_with_kernel(hosts: tuple[Host, Host], rs: dict[str, Any]) -> None:
    check(hosts, rs, use_nft=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rs=ruleset)
def test_nftables_agrees_with_kernel(hosts: tuple[Host, Host], rs: dict[str, Any]) -> None:
    check(hosts, rs, use_nft=True)


# --------------------------------------------------------------------------- recent and connlimit
# Port 8001 is served by the test itself, which keeps every connection it accepts until the
# example ends and then closes both ends (no connection outlives its example: the kernel's
# connlimit counts only connections that passed the current rules, and so must the prediction).
# Port 8002 is a listener that closes each connection at once.

recent_rule = st.fixed_dictionaries({
    "mode": st.sampled_from(["rcheck", "update"]),
    "seconds": st.sampled_from([None, 60]),
    "hitcount": st.sampled_from([None, 1, 2, 3]),
    "neg": st.booleans(),
    "set_first": st.booleans(),
    "verdict": st.sampled_from(["REJECT --reject-with tcp-reset", "DROP", "ACCEPT"]),
})
stateful_case = st.fixed_dictionaries({
    "policy": st.sampled_from(["ACCEPT", "DROP"]),
    "recent": recent_rule,
    "stamps": st.tuples(*[st.integers(0, 3)] * len(SOURCES)),  # stamps on the list per source
    "above": st.integers(0, 2),  # --connlimit-above
    "holds": st.tuples(*[st.integers(0, 2)] * len(SOURCES)),  # connections each source holds open
})


def stateful_text(case: dict[str, Any]) -> str:
    r = case["recent"]
    check = ["-A INPUT -p tcp -m tcp --dport 8002 -m recent", "! " if r["neg"] else "", f"--{r['mode']}"]
    check += [f"--seconds {r['seconds']}"] if r["seconds"] else []
    check += [f"--hitcount {r['hitcount']}"] if r["hitcount"] else []
    check += [f"--name pdr --rsource -j {r['verdict']}"]
    lines = ["*filter", f":INPUT {case['policy']} [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             f"-A INPUT -p tcp -m tcp --dport 8001 -m connlimit --connlimit-above {case['above']} "
             "--connlimit-mask 32 --connlimit-saddr -j REJECT --reject-with tcp-reset",
             "-A INPUT -p tcp -m tcp --dport 8001 -j ACCEPT"]
    if r["set_first"]:
        lines.append("-A INPUT -p tcp -m tcp --dport 8002 -m recent --set --name pdr --rsource")
    lines.append(" ".join(x for x in check if x).replace("  ", " "))
    return "\n".join(lines + ["COMMIT", ""])


class _Holder:
    """Accepts on 10.0.0.2:8001 in the server namespace and keeps what it accepted."""

    def __init__(self, ns: str) -> None:
        self.server = in_netns(ns, lambda: socket.create_server(("10.0.0.2", 8001), backlog=64))
        self.server.settimeout(0.1)
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted.append(conn)

    def close_all(self) -> None:
        time.sleep(0.3)  # let the accept loop take what is still queued: it would outlive the example
        for conn in self.accepted:
            conn.close()
        self.accepted.clear()

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join()
        self.close_all()
        self.server.close()


@pytest.fixture(scope="module")
def stateful_hosts() -> Iterator[tuple[Host, Host, _Holder]]:
    with Lab(prefix=f"pq{os.getpid()}") as lab:
        c, s = lab.pair()
        for a in SOURCES[1:]:
            c.add_addr(f"{a}/24", "veth0")
        s.listen(8002, close=True)
        holder = _Holder(s.ns)
        try:
            yield c, s, holder
        finally:
            holder.shutdown()


def _live_conntrack(s: Host) -> int:
    return sum(x.count for x in parse_conntrack(s.run(["cat", "/proc/net/nf_conntrack"]).stdout))


def _hold(c: Host, src: str, n: int) -> list[socket.socket]:
    def go() -> list[socket.socket]:
        out = []
        for _ in range(n):
            sk = socket.socket()
            sk.settimeout(TIMEOUT)
            sk.bind((src, 0))
            if sk.connect_ex(("10.0.0.2", 8001)) != 0:
                sk.close()
                continue
            out.append(sk)
        return out
    return in_netns(c.ns, go)


def stateful_predicted(s: Host) -> dict[tuple[str, int], int]:
    rs, limits = build_ruleset([(s.run(["iptables-save", "-c"]).stdout, "ip", "iptables")])
    assert not limits
    clock = jiffies_and_hz(open("/proc/timer_list").read())
    assert clock is not None
    facts = StatefulFacts(recent={"pdr": parse_recent(s.run(["cat", "/proc/net/xt_recent/pdr"]).stdout, *clock)},
                          connections=parse_conntrack(s.run(["cat", "/proc/net/nf_conntrack"]).stdout),
                          connections_source="conntrack")
    ev = Evaluator(rs, HostInfo({"10.0.0.2": SERVER_IF}, [("10.0.0.0/24", SERVER_IF, "unicast")], stateful=facts))
    out = {}
    for src in SOURCES:
        for port in (8001, 8002):
            e = ev.evaluate(Flow(dst="10.0.0.2", dport=port, src=src, iif=SERVER_IF, not_lo=True))
            assert len(e.outcomes) == 1 and e.outcomes[0].definite, e
            o = e.outcomes[0]
            if o.verdict != "accept":
                out[(src, port)] = ERRNOS[client_error(o)[0]]
                continue
            # the handshake's ACK meets the rules too, with the stamps its SYN left on the list
            (a,) = ev.evaluate_established(e, o).outcomes
            if a.verdict == "reject":
                out[(src, port)] = errno.ECONNRESET if a.reject_with == "tcp-reset" else ERRNOS[client_error(a)[0]]
            else:
                out[(src, port)] = 0
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=stateful_case)
def test_recent_and_connlimit_agree_with_kernel(stateful_hosts: tuple[Host, Host, _Holder],
                                                case: dict[str, Any]) -> None:
    c, s, holder = stateful_hosts
    s.run(["iptables-restore"], input=stateful_text(case))
    s.run(["sh", "-c", "echo / > /proc/net/xt_recent/pdr"])
    for src, n in zip(SOURCES, case["stamps"]):
        for _ in range(n):
            s.run(["sh", "-c", f"echo +{src} > /proc/net/xt_recent/pdr"])
    deadline = time.monotonic() + 5  # the last example's connections are closing
    while _live_conntrack(s) and time.monotonic() < deadline:
        time.sleep(0.05)
    held = [sk for src, n in zip(SOURCES, case["holds"]) for sk in _hold(c, src, n)]
    try:
        want = stateful_predicted(s)
        for port in (8001, 8002):  # shown by --hypothesis-show-statistics: both ways are exercised
            event(f"port {port}: " + ",".join(sorted({errno.errorcode.get(want[(x, port)], "OK") for x in SOURCES})))
        flows = [(src, port) for src in SOURCES for port in (8001, 8002)]
        with ThreadPoolExecutor(max_workers=len(flows)) as pool:
            codes = list(pool.map(lambda f: connect_from(c, *f), flows))
        got = dict(zip(flows, codes))
        names = {v: errno.errorcode.get(v, "OK") for v in set(want.values()) | set(got.values())}
        assert {k: names[v] for k, v in got.items()} == {k: names[v] for k, v in want.items()}, \
            (stateful_text(case), case)
    finally:
        for sk in held:
            sk.close()
        holder.close_all()
