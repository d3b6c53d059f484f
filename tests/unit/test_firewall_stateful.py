"""Stateful matches: the /proc parsers on recorded kernel output (tests/data/firewall/stateful),
the parsers of iptables and nft stateful rules, the kernel semantics of `judge`, and how the
firewall check tells a refusal that depends on kernel state."""

from __future__ import annotations

from pathlib import Path

from portdoctor.collectors.firewall import build_ruleset
from portdoctor.firewall.evaluate import Evaluator, Flow, FlowVerdict, HostInfo
from portdoctor.firewall.iptables import parse_rule
from portdoctor.firewall.model import Match
from portdoctor.firewall.nftables import parse_nft_json
from portdoctor.firewall.stateful import (
    ConnCount,
    RecentEntry,
    StatefulFacts,
    jiffies_and_hz,
    judge,
    parse_conntrack,
    parse_hashlimit,
    parse_rate,
    parse_recent,
)

DATA = Path(__file__).parent.parent / "data" / "firewall" / "stateful"
IF = "eth0"


def read(name: str) -> str:
    return (DATA / name).read_text()


# --------------------------------------------------------------------------- /proc parsers


def test_recorded_proc_files_parse() -> None:
    assert jiffies_and_hz(read("timer_list")) == (4298278976, 250)
    entries = parse_recent(read("xt_recent.cap"), 4298274856, 250)
    assert [(e.address, e.ttl, e.ages) for e in entries] == [
        ("127.0.0.5", 64, (0.284, 0.284, 0.284)), ("127.0.0.1", 64, (0.284,))]
    hl = {b.src: b for b in parse_hashlimit(read("ipt_hashlimit.caphl"))}
    assert hl["127.0.0.5"].credit < hl["127.0.0.5"].cost  # three SYNs against a burst of 2
    assert hl["127.0.0.1"].credit >= hl["127.0.0.1"].cost
    # the SYN_SENT entry is live too: conntrack counts a connection from its first packet
    assert parse_conntrack(read("nf_conntrack")) == (ConnCount("127.0.0.1", "127.0.0.1", 10, 1),
                                                     ConnCount("127.0.0.5", "127.0.0.1", 9, 1))


def test_rates() -> None:
    assert parse_rate("3/min") == 0.05 and parse_rate("10/second") == 10 and parse_rate("2/h") == 2 / 3600


# --------------------------------------------------------------------------- rule parsers


def test_nft_stateful_expressions_parse() -> None:
    (t,) = parse_nft_json(read("nft-stateful.json"))
    rules = {next((str(m.values[0]) for m in r.matches if m.kind == "dport"), r.text): r
             for r in t.chain("input").rules}
    kinds = {k: [(m.kind, m.values) for m in r.matches if m.kind not in ("dport", "proto")] for k, r in rules.items()}
    assert kinds["80"] == [("connlimit", ("above=2", "all"))]
    assert kinds["81"] == [("limit", ("rate=10/second", "burst=5", "over=1"))]
    assert kinds["82"] == [("limit", ("rate=3/minute", "burst=5"))]
    assert kinds["83"] == [("hashlimit", ("rate=5/second", "burst=5", "over=1", "mode=srcip", "name=m"))]
    assert kinds["84"] == [("connlimit", ("above=2",))]
    assert kinds["85"] == [("random", (0.5,))]
    owners = [m for r in t.chain("input").rules for m in r.matches if m.kind == "owner"]
    assert [m.values for m in owners] == [("uid=1000",), ("gid=100-200",)]


def test_iptables_stateful_modules_parse() -> None:
    _c, ms, _a, _ = parse_rule("-A INPUT -p tcp -m tcp --dport 22 -m recent ! --rcheck --seconds 60 --hitcount 3 "
                               "--name ssh --mask 255.255.255.0 --rsource --reap -j DROP")
    (rec,) = [m for m in ms if m.kind == "recent"]
    assert rec.neg and rec.set == "ssh"
    assert rec.values == ("mode=rcheck", "seconds=60", "hitcount=3", "name=ssh", "mask=255.255.255.0", "rsource",
                          "reap")
    _c, ms, _a, _ = parse_rule("-A INPUT -m physdev --physdev-in veth1 --physdev-is-bridged -j DROP")
    assert ms[0].kind == "physdev" and ms[0].values == ("in=veth1", "is-bridged")
    # an option portdoctor does not know keeps the whole match unsupported, never half-read
    _c, ms, _a, _ = parse_rule("-A INPUT -m hashlimit --hashlimit-upto 1kb/s --hashlimit-name x -j ACCEPT")
    assert ms[0].kind == "unsupported" and "1kb/s" in ms[0].text


# --------------------------------------------------------------------------- judge


def recent(**opts: str) -> Match:
    vals = tuple(f"{k}={v}" if v else k for k, v in opts.items())
    return Match("recent", vals, text="-m recent ...")


def test_recent_kernel_semantics() -> None:
    facts = StatefulFacts(recent={"L": (RecentEntry("10.0.0.1", 64, (50.0, 20.0, 5.0)),)})

    def j(m: Match, src: str | None = "10.0.0.1", stamped: tuple[str, ...] = ()) -> object:
        return judge(m, src, "10.0.0.2", 22, facts, stamped=stamped)

    assert j(recent(mode="set", name="L"), src="10.9.9.9") is True  # --set always matches
    assert j(recent(mode="rcheck", name="L")) is True
    assert j(recent(mode="rcheck", name="L"), src="10.0.0.9") is False
    assert j(recent(mode="rcheck", name="L", seconds="30", hitcount="2")) is True  # 20 s and 5 s
    assert j(recent(mode="rcheck", name="L", seconds="10", hitcount="2")) is False
    assert j(recent(mode="update", name="L", seconds="10", hitcount="2"), stamped=("L",)) is True  # + its own stamp
    assert j(recent(mode="rcheck", name="L"), src="10.0.0.9", stamped=("L",)) is True
    assert j(recent(mode="remove", name="L")) is True and j(recent(mode="remove", name="L"), src="10.0.0.7") is False
    assert j(recent(mode="rcheck", name="L", mask="255.255.255.0"), src="10.0.0.77") is True
    assert str(j(recent(mode="rcheck", name="L"), src=None)).startswith("recent list:")
    assert str(j(recent(mode="rcheck", name="L", rttl=""))).startswith("recent list:")
    assert str(judge(recent(mode="rcheck", name="L"), "10.0.0.1", "10.0.0.2", 22, None)).startswith(
        "could not evaluate:")


def test_connlimit_counts_the_new_connection_with_the_open_ones() -> None:
    facts = StatefulFacts(connections=(ConnCount("10.0.0.1", "10.0.0.2", 80, 2), ConnCount("10.0.0.3", "10.0.0.2", 80, 1)))
    above2 = Match("connlimit", ("above=2",))
    assert judge(above2, "10.0.0.1", "10.0.0.2", 80, facts) is True
    assert judge(above2, "10.0.0.3", "10.0.0.2", 80, facts) is False
    assert judge(Match("connlimit", ("above=2", "mask=24")), "10.0.0.3", "10.0.0.2", 80, facts) is True
    assert judge(Match("connlimit", ("upto=2",)), "10.0.0.3", "10.0.0.2", 80, facts) is True
    assert judge(Match("connlimit", ("above=4", "all")), None, "10.0.0.2", 80, facts) is False  # 3 open + 1
    assert str(judge(above2, None, "10.0.0.2", 80, facts)).startswith("connection count:")


def test_hashlimit_from_the_bucket_owner_and_physdev() -> None:
    entries = parse_hashlimit(read("ipt_hashlimit.caphl"))
    facts = StatefulFacts(hashlimit={"caphl": entries}, bridges={"br0": ("veth1", "veth2"), "eth0": ()},
                          uid=0, gid=0)
    over = Match("hashlimit", ("over=1", "rate=1/min", "burst=2", "mode=srcip", "name=caphl"))
    assert judge(over, "127.0.0.5", "127.0.0.1", 9, facts) is True
    assert judge(over, "127.0.0.1", "127.0.0.1", 9, facts) is False
    assert judge(over, "127.0.0.9", "127.0.0.1", 9, facts) is False  # no bucket yet: within its burst
    assert str(judge(Match("limit", ("rate=3/min",)), "10.0.0.1", "x", 1, facts)).startswith("rate limit:")
    owner = Match("owner", ("uid=65534",))
    assert judge(owner, None, "10.0.0.2", 80, facts, uid=0, local_src=True) is False
    assert judge(owner, None, "10.0.0.2", 80, facts, uid=65534, local_src=True) is True
    assert str(judge(owner, None, "10.0.0.2", 80, facts, local_src=True)).startswith("user of the local process")
    assert judge(owner, "10.0.0.1", "10.0.0.2", 80, facts) is False  # a packet from elsewhere has no owner
    dev = Match("physdev", ("in=veth1",))
    assert judge(dev, "10.0.0.1", "10.0.0.2", 80, facts, iif="eth0") is False
    assert str(judge(dev, "10.0.0.1", "10.0.0.2", 80, facts, iif="br0")).startswith("bridge port")


# --------------------------------------------------------------------------- walk and findings

UFW_LIMIT = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-user-input - [0:0]
:ufw-user-limit - [0:0]
:ufw-user-limit-accept - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -j ufw-user-input
[9:540] -A ufw-user-input -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --set --name DEFAULT --mask 255.255.255.255 --rsource
[9:540] -A ufw-user-input -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 --name DEFAULT --mask 255.255.255.255 --rsource -j ufw-user-limit
[5:300] -A ufw-user-input -p tcp -m tcp --dport 22 -j ufw-user-limit-accept
[4:240] -A ufw-user-limit -m limit --limit 3/min -j LOG --log-prefix "[UFW LIMIT BLOCK] "
[4:240] -A ufw-user-limit -j REJECT --reject-with icmp-port-unreachable
-A ufw-user-limit-accept -j ACCEPT
COMMIT
"""


def ufw(stamps: tuple[float, ...]) -> Evaluator:
    rs, limits = build_ruleset([(UFW_LIMIT, "ip", "iptables")])
    assert not limits
    facts = StatefulFacts(recent={"DEFAULT": (RecentEntry("10.0.0.1", 64, stamps),)})
    return Evaluator(rs, HostInfo({"10.0.0.2": IF}, [("10.0.0.0/24", IF, "unicast")], stateful=facts))


def test_ufw_limit_refuses_the_sixth_connection_within_30_s() -> None:
    flow = Flow(dst="10.0.0.2", dport=22, src="10.0.0.1", iif=IF, not_lo=True)
    # four stamps + the one this connection's --set adds: 5 < 6, let in
    (o,) = ufw((25.0, 20.0, 10.0, 1.0)).evaluate(flow).outcomes
    assert o.verdict is FlowVerdict.ACCEPT and o.definite
    (o,) = ufw((25.0, 20.0, 10.0, 5.0, 1.0)).evaluate(flow).outcomes
    assert (o.verdict, o.step.chain, o.definite) == (FlowVerdict.REJECT, "ufw-user-limit", True)
    # stamps older than 30 s do not count
    (o,) = ufw((95.0, 80.0, 70.0, 50.0, 1.0)).evaluate(flow).outcomes
    assert o.verdict is FlowVerdict.ACCEPT
    # any client: both ways, the reject resting on the recent list
    e = ufw((1.0,)).evaluate(Flow(dst="10.0.0.2", dport=22, iif=IF, not_lo=True))
    assert {o.verdict for o in e.outcomes} == {FlowVerdict.ACCEPT, FlowVerdict.REJECT}
    (bad,) = [o for o in e.outcomes if o.verdict is FlowVerdict.REJECT]
    assert bad.assumptions[0].stateful == "recent list"


def test_connlimit_without_a_port_counts_every_port() -> None:
    text = ("*filter\n:INPUT ACCEPT [0:0]\n"
            "-A INPUT -p tcp -m connlimit --connlimit-above 2 --connlimit-mask 32 -j REJECT --reject-with tcp-reset\n"
            "COMMIT\n")
    rs, _ = build_ruleset([(text, "ip", "iptables")])
    facts = StatefulFacts(connections=(ConnCount("10.0.0.1", "10.0.0.2", 22, 1), ConnCount("10.0.0.1", "10.0.0.2", 80, 1)))
    ev = Evaluator(rs, HostInfo({"10.0.0.2": IF}, stateful=facts))
    (o,) = ev.evaluate(Flow(dst="10.0.0.2", dport=443, src="10.0.0.1", iif=IF, not_lo=True)).outcomes
    assert o.verdict is FlowVerdict.REJECT  # 1 + 1 open elsewhere + this one: 3 > 2


# --------------------------------------------------------------------------- the firewall check


def test_check_names_the_recent_list_and_the_intermittent_probe() -> None:
    from dataclasses import replace as dc_replace

    from test_firewall_check import context
    from test_firewall_paths import errors, snap_of

    from portdoctor.checks.firewall import check_firewall
    from portdoctor.model import AddressResult, Cause, State

    text = UFW_LIMIT.replace("--dport 22", "--dport 8080").replace("[9:540] ", "").replace("[5:300] ", "") \
        .replace("[4:240] ", "")
    snap = snap_of(text)
    stamps = StatefulFacts(recent={"DEFAULT": (RecentEntry("10.0.0.1", 64, (9.0, 7.0, 5.0, 3.0, 1.0)),
                                               RecentEntry("10.0.0.2", 64, (4.0, 3.0, 2.0, 1.0, 0.5)))},
                           uid=0, gid=0, window=1.5)
    snap = dc_replace(snap, firewall=dc_replace(snap.firewall, stateful=stamps))
    (f,) = errors(check_firewall(snap, context(8080)))
    assert f.cause is Cause.FIREWALL_REJECT and "chain ufw-user-limit" in f.summary
    assert "6 or more connections within 30 s on list DEFAULT: an intermittent refusal" in f.summary
    assert "xt_recent list DEFAULT holds 5 stamps of 10.0.0.1, the newest 1 s old; 5 within the last 30 s" in f.evidence
    assert "echo -10.0.0.1 > /proc/net/xt_recent/DEFAULT" in [x.command for x in f.fix]
    # without the lo accept, this host's own probe (from 10.0.0.2) meets the limit too; it saw open
    # and refused: named as such
    snap = dc_replace(snap, firewall=dc_replace(snap_of(text.replace("-A INPUT -i lo -j ACCEPT\n", "")).firewall,
                                                stateful=stamps))
    ctx = context(8080, from_addr=None, state=State.REFUSED)
    mixed = AddressResult("10.0.0.2", 4, State.REFUSED, "ECONNREFUSED", 0.001, attempts={"open": 5, "refused": 2})
    ctx = dc_replace(ctx, probe=dc_replace(ctx.probe, addresses=(mixed,)))
    found = [x for x in errors(check_firewall(snap, ctx)) if x.summary.startswith("intermittent refusal:")]
    assert found and "the probe saw open ×5, refused ×2: some connections get through" in " ".join(found[0].evidence)


def test_collector_reads_the_recorded_proc_tree_and_the_snapshot_keeps_it(tmp_path: Path) -> None:
    import shutil

    from portdoctor.collectors.fwstate import read_stateful
    from portdoctor.host import LocalHost
    from portdoctor.hostfacts import FirewallFacts
    from portdoctor.plain import from_plain, to_plain

    (tmp_path / "net" / "xt_recent").mkdir(parents=True)
    (tmp_path / "net" / "ipt_hashlimit").mkdir()
    shutil.copy(DATA / "xt_recent.cap", tmp_path / "net" / "xt_recent" / "cap")
    shutil.copy(DATA / "ipt_hashlimit.caphl", tmp_path / "net" / "ipt_hashlimit" / "caphl")
    shutil.copy(DATA / "nf_conntrack", tmp_path / "net" / "nf_conntrack")
    shutil.copy(DATA / "timer_list", tmp_path / "timer_list")
    text = ("*filter\n:INPUT ACCEPT [0:0]\n"
            "-A INPUT -p tcp -m tcp --dport 9 -m recent --set --name cap --rsource\n"
            "-A INPUT -p tcp -m tcp --dport 9 -m hashlimit --hashlimit-above 1/min --hashlimit-burst 2 "
            "--hashlimit-mode srcip --hashlimit-name caphl -j DROP\n"
            "-A INPUT -p tcp -m tcp --dport 10 -m connlimit --connlimit-above 5 -j DROP\nCOMMIT\n")
    rs, _ = build_ruleset([(text, "ip", "iptables")])
    facts = read_stateful(LocalHost(proc_root=str(tmp_path)), rs)
    assert facts is not None and not facts.notes
    assert [e.address for e in facts.recent["cap"]] == ["127.0.0.5", "127.0.0.1"]
    assert facts.recent["cap"][0].ages[0] > 10  # recorded minutes before the timer_list lines
    assert {b.src for b in facts.hashlimit["caphl"]} == {"127.0.0.5", "127.0.0.1"}
    assert facts.connections_source == "conntrack" and len(facts.connections) == 2
    assert facts.bridges is None and facts.uid is None  # no physdev rule; not this machine's /proc
    fw = FirewallFacts(ruleset=rs, stateful=facts)
    assert from_plain(FirewallFacts, to_plain(fw)).stateful == facts
    # a ruleset without stateful matches reads nothing
    plain, _ = build_ruleset([("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n", "ip", "iptables")])
    assert read_stateful(LocalHost(proc_root=str(tmp_path)), plain) is None


def test_the_handshakes_ack_carries_the_stamp_its_syn_left() -> None:
    """`--set` without `--ctstate NEW` stamps every packet: the SYN (1) and its ACK (2), so a
    `--rcheck --hitcount 2` lets the SYN in and resets the connection at its ACK, as the kernel does."""
    text = ("*filter\n:INPUT ACCEPT [0:0]\n"
            "-A INPUT -p tcp -m tcp --dport 8002 -m recent --set --name pdr --rsource\n"
            "-A INPUT -p tcp -m tcp --dport 8002 -m recent --rcheck --hitcount 2 --name pdr --rsource "
            "-j REJECT --reject-with tcp-reset\nCOMMIT\n")
    rs, _ = build_ruleset([(text, "ip", "iptables")])
    ev = Evaluator(rs, HostInfo({"10.0.0.2": IF}, stateful=StatefulFacts(recent={"pdr": ()})))
    e = ev.evaluate(Flow(dst="10.0.0.2", dport=8002, src="10.0.0.1", iif=IF, not_lo=True))
    (o,) = e.outcomes
    assert o.verdict is FlowVerdict.ACCEPT and o.flow.recent == ("pdr",)
    (a,) = ev.evaluate_established(e, o).outcomes
    assert (a.verdict, a.reject_with) == (FlowVerdict.REJECT, "tcp-reset")
