"""Benchmark: evaluate 1,000 flows against a 10,000-rule ruleset (target: under 1 s).

The ruleset is tests/data/firewall/large.iptables-save.gz, real `iptables-save -c` output of a
generated 10,000-rule filter table (per-client accepts and rejects, multiport rules, 50 user
chains reached by jumps, a final reject). Reported: parse, compile, and evaluate times.

    python bench/bench_firewall.py
"""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

from portdoctor.firewall.evaluate import Evaluator, Flow, HostInfo
from portdoctor.firewall.iptables import parse_iptables_save
from portdoctor.firewall.model import Ruleset, ruleset_from_plain, ruleset_to_plain

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "firewall" / "large.iptables-save.gz"


def flows(n: int, seed: int = 7) -> list[Flow]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        src = f"10.{rnd.randrange(0, 40)}.{rnd.randrange(0, 250)}.{rnd.randrange(1, 250)}"
        out.append(Flow(dst="10.0.0.2", dport=rnd.randrange(1000, 6100), src=src if i % 10 else None,
                        iif="eth0", not_lo=True))
    return out


def main() -> None:
    with gzip.open(DATA, "rt") as f:
        text = f.read()
    t0 = time.perf_counter()
    rs = Ruleset(tuple(parse_iptables_save(text, "ip")))
    t1 = time.perf_counter()
    ev = Evaluator(rs, HostInfo({"10.0.0.2": "eth0"}, [("10.0.0.0/8", "eth0", "unicast")]))
    t2 = time.perf_counter()
    fl = flows(1000)
    verdicts: dict[str, int] = {}
    for f in fl:
        for o in ev.evaluate(f).outcomes:
            verdicts[o.verdict] = verdicts.get(o.verdict, 0) + 1
    t3 = time.perf_counter()
    plain = json.dumps(ruleset_to_plain(rs))
    t4 = time.perf_counter()
    ruleset_from_plain(json.loads(plain))
    t5 = time.perf_counter()
    n_rules = sum(len(c.rules) for t in rs.tables for c in t.chains)
    print(f"rules: {n_rules}, flows: {len(fl)} (100 of them 'any source')")
    print(f"parse iptables-save: {t1 - t0:.3f} s")
    print(f"compile:             {t2 - t1:.3f} s")
    print(f"evaluate 1000 flows: {t3 - t2:.3f} s  ({(t3 - t2) / len(fl) * 1e6:.0f} us per flow)")
    print(f"outcomes: {verdicts}")
    print(f"snapshot JSON: {len(plain) / 1e6:.1f} MB, written in {t4 - t3:.3f} s, read back in {t5 - t4:.3f} s")


if __name__ == "__main__":
    main()
