"""kube-proxy's own packet-flow tests as an oracle: its literal rulesets (tests/data/firewall/
kube-proxy, with their source) and the outcomes its `runPacketFlowTests` expects, evaluated by
portdoctor's evaluator. kube-proxy's output is the DNAT endpoints ("10.180.0.4:80, 10.180.0.5:80"
when a random choice spreads the flow), "ACCEPT", "DROP", "REJECT", or "" (no rule matched).

kube-proxy's tracer treats a source among the node's IPs as a connection made on the node (it
runs the OUTPUT path); any other source comes in from elsewhere (PREROUTING, then FORWARD or
INPUT). Its `masq` flag is not compared: the evaluator's outcome is the verdict and the DNAT.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from portdoctor.collectors.firewall import build_ruleset
from portdoctor.firewall.evaluate import Evaluator, Flow, FlowVerdict, HostInfo
from portdoctor.firewall.model import Ruleset
from portdoctor.firewall.stateful import RecentEntry, StatefulFacts

DATA = Path(__file__).parent.parent / "data" / "firewall" / "kube-proxy"

# kube-proxy's test conventions (proxier_test.go): node IPs, an external client
TEST_NODE_IP = "192.168.0.2"
TEST_NODE_IPS = (TEST_NODE_IP, "192.168.1.2", "192.168.99.11")
TEST_EXTERNAL_CLIENT = "203.0.113.2"

# TestTracePacket's runPacketFlowTests cases: (name, source, destination, port, output)
TRACE_PACKET_CASES = [
    ("no match", "10.0.0.2", "10.0.0.3", 80, ""),
    ("single endpoint", "10.0.0.2", "172.30.0.41", 80, "10.180.0.1:80"),
    ("multiple endpoints", "10.0.0.2", "172.30.0.44", 80, "10.180.0.4:80, 10.180.0.5:80"),
    ("LOCAL, KUBE-MARK-MASQ", TEST_NODE_IP, "192.168.99.22", 80, "10.180.0.2:80"),
    ("DROP", TEST_EXTERNAL_CLIENT, "192.168.99.22", 80, "DROP"),
    ("ACCEPT (NodePortHealthCheck)", TEST_NODE_IP, TEST_NODE_IP, 30000, "ACCEPT"),
    ("REJECT", "10.0.0.2", "172.30.0.46", 80, "REJECT"),
]

# derived from TestOverallIPTablesRules' rules (not a kube-proxy case): ns5/svc5 has one endpoint,
# session affinity (recent --rcheck --seconds 10800) and a source range on its LoadBalancer IP
AFFINITY_CASES = [
    ("affinity: client remembered", "10.0.0.2", "172.30.0.45", 80, "10.180.0.3:80"),
    ("affinity: client not on the list", "10.0.0.9", "172.30.0.45", 80, "10.180.0.3:80"),
    ("LB IP from the allowed range", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, "10.180.0.3:80"),
    ("svc2 cluster IP", "10.0.0.2", "172.30.0.42", 80, "10.180.0.2:80"),
    ("NodePort of svc3", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3003, "10.180.0.3:80"),
]


def _ruleset(*names: str) -> Ruleset:
    """The files' rules as one iptables-save text: each table's chains and rules joined."""
    tables: dict[str, list[str]] = {}
    for n in names:
        name = ""
        for line in (DATA / n).read_text().splitlines():
            if line.startswith("*"):
                name = line[1:]
                tables.setdefault(name, [])
            elif line.startswith((":", "-A")):
                tables[name].append(line)
    text = "\n".join(f"*{t}\n" + "\n".join(sorted(lines, key=lambda x: not x.startswith(":"))) + "\nCOMMIT"
                     for t, lines in tables.items())
    rs, limits = build_ruleset([(text, "ip", "iptables-legacy")])
    assert not limits, limits
    return rs


def _kube_output(ev: Evaluator, src: str, dst: str, port: int) -> str:
    """The evaluation in kube-proxy's words."""
    local = src in TEST_NODE_IPS
    flow = Flow(dst=dst, dport=port, src=src, local_src=local, iif=None if local else "eth0", not_lo=not local)
    outs = ev.evaluate(flow).outcomes
    verdicts = {o.verdict for o in outs}
    assert len(verdicts) == 1, [(o.verdict, o.step and o.step.where, o.assumptions) for o in outs]
    v = verdicts.pop()
    if v is not FlowVerdict.ACCEPT:
        return str(v).upper()
    dnat = sorted({f"{o.flow.dst}:{o.flow.dport}" for o in outs if o.nat is not None})
    if dnat:
        assert len(dnat) == len(outs), "every way through is DNATed"
        return ", ".join(dnat)
    return "ACCEPT" if any(o.step is not None and o.step.rule is not None for o in outs) else ""


def _evaluator(rs: Ruleset, stateful: StatefulFacts | None) -> Evaluator:
    local = {a: "eth0" for a in TEST_NODE_IPS}
    return Evaluator(rs, HostInfo(local, [("0.0.0.0/0", "eth0", "unicast")], stateful=stateful))


@pytest.mark.parametrize("name,src,dst,port,output", TRACE_PACKET_CASES, ids=[c[0] for c in TRACE_PACKET_CASES])
def test_trace_packet_cases_agree_with_kube_proxy(name: str, src: str, dst: str, port: int, output: str) -> None:
    ev = _evaluator(_ruleset("tracepacket.iptables-save"), StatefulFacts(recent={}))
    assert _kube_output(ev, src, dst, port) == output


@pytest.mark.parametrize("name,src,dst,port,output", TRACE_PACKET_CASES + AFFINITY_CASES,
                         ids=[c[0] for c in TRACE_PACKET_CASES + AFFINITY_CASES])
def test_overall_ruleset_with_session_affinity(name: str, src: str, dst: str, port: int, output: str) -> None:
    lists = {"KUBE-SEP-I77PXRDZVX7PMWMN": (RecentEntry("10.0.0.2", 64, (3600.0, 12.5)),)}
    ev = _evaluator(_ruleset("hooks.iptables-save", "overall.iptables-save"), StatefulFacts(recent=lists))
    assert _kube_output(ev, src, dst, port) == output


def test_affinity_decides_from_the_list_and_its_age() -> None:
    """The rcheck rule of ns5/svc5 matches only a client on the list within 10800 s: the
    remembered client takes the affinity rule, an expired or unknown one the plain jump."""
    rs = _ruleset("hooks.iptables-save", "overall.iptables-save")
    fresh = StatefulFacts(recent={"KUBE-SEP-I77PXRDZVX7PMWMN": (RecentEntry("10.0.0.2", 64, (12.5,)),)})
    stale = StatefulFacts(recent={"KUBE-SEP-I77PXRDZVX7PMWMN": (RecentEntry("10.0.0.2", 64, (20000.0,)),)})
    flow = Flow(dst="172.30.0.45", dport=80, src="10.0.0.2", iif="eth0", not_lo=True)

    def via(facts: StatefulFacts | None) -> list[str]:
        (o,) = _evaluator(rs, facts).evaluate(flow).outcomes
        return [s.rule.text for s in [o.nat, *o.path] if s is not None and s.rule is not None and "recent" in s.rule.text]

    assert any("--rcheck" in t for t in via(fresh))
    assert not any("--rcheck" in t for t in via(stale))
    # nothing read of the lists: the affinity rule cannot be decided, both ways end the same
    outs = _evaluator(rs, None).evaluate(flow).outcomes
    assert {f"{o.flow.dst}:{o.flow.dport}" for o in outs} == {"10.180.0.3:80"}
