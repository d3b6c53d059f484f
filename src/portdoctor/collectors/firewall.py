"""Firewall facts: every ruleset of this host (iptables nft and legacy, ip6tables, nftables, ipset),
with rule counters, plus what the evaluator needs to route a packet (local addresses, routes,
forwarding switches). Facts only: what the rules mean for a flow is the check's business.

The tools run in parallel through the Host (`Host.run_all`), each with a timeout, found in the
safe PATH when root. A missing tool or a missing privilege becomes a Limitation ("iptables
rules not read: iptables-save needs root (run with sudo)").
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from portdoctor.collectors import Facts, Request
from portdoctor.collectors.fwstate import read_stateful
from portdoctor.host import Host
from portdoctor.firewall.iptables import parse_ipset_save, parse_iptables_save
from portdoctor.firewall.model import Ruleset, Table, counters_of, problems_of
from portdoctor.hostfacts import FirewallFacts, FirewallTool
from portdoctor.firewall.nftables import chain_devices, parse_nft_json, rule_texts
from portdoctor.model import Limitation

TIMEOUT = 5.0
BEFORE_KEY = "portdoctor.collectors.firewall:sample_counters"


@dataclass(frozen=True)
class _Job:
    name: str  # what the limitation calls it ("iptables rules", ...)
    argv: tuple[str, ...]
    family: str = ""
    source: str = ""


@dataclass(frozen=True)
class _Result:
    job: _Job
    out: str = ""
    err: str = ""
    rc: int = 0
    missing: bool = False


def _proc_has_tables(system: Host, path: str) -> bool:
    """True when legacy x_tables has tables loaded in this namespace (/proc/net/ip_tables_names)."""
    try:
        return bool(system.read_text(path).strip())
    except OSError:
        return False


def _save_tool(system: Host, variant: str, v6: bool) -> str | None:
    """The iptables-save binary of a variant ("nft" or "legacy"), or None."""
    base = "ip6tables" if v6 else "iptables"
    for name in (f"{base}-{variant}-save",) + ((f"{base}-save",) if variant == "nft" else ()):
        path = system.which(name)
        if path:
            return path
    return None


def _jobs(system: Host, routes: bool) -> tuple[list[_Job], list[Limitation]]:
    jobs: list[_Job] = []
    limits: list[Limitation] = []
    for v6 in (False, True):
        fam = "ip6" if v6 else "ip"
        tool = _save_tool(system, "nft", v6)
        base = "ip6tables" if v6 else "iptables"
        if tool is None:
            limits.append(Limitation(f"{base} rules not read: {base}-save is not installed",
                                     "install the iptables package"))
        else:
            jobs.append(_Job(f"{base} rules", (tool, "-c"), fam, "iptables"))
        if _proc_has_tables(system, f"{system.proc_root}/net/{base.replace('tables', '_tables')}_names"):
            legacy = _save_tool(system, "legacy", v6)
            if legacy is None:
                limits.append(Limitation(f"{base}-legacy rules not read: {base}-legacy-save is not installed",
                                         "install the iptables package"))
            else:
                jobs.append(_Job(f"{base}-legacy rules", (legacy, "-c"), fam, "iptables-legacy"))
    nft = system.which("nft")
    if nft is None:
        limits.append(Limitation("nftables rules not read: nft is not installed", "install the nftables package"))
    else:
        jobs.append(_Job("nftables rules", (nft, "-j", "list", "ruleset"), source="nft-json"))
        jobs.append(_Job("nftables rules", (nft, "-a", "list", "ruleset"), source="nft-text"))
    ipset = system.which("ipset")
    if ipset is not None and system.exists("/sys/module/ip_set"):
        jobs.append(_Job("ipsets", (ipset, "save"), source="ipset"))
    ip = system.which("ip")
    if routes and ip is not None:
        jobs.append(_Job("routes", (ip, "-j", "-4", "route", "show", "table", "all"), source="routes4"))
        jobs.append(_Job("routes", (ip, "-j", "-6", "route", "show", "table", "all"), source="routes6"))
    return jobs, limits


def _run_all(system: Host, jobs: list[_Job]) -> list[_Result]:
    """Start every job at once; collect each within TIMEOUT."""
    out: list[_Result] = []
    for j, r in zip(jobs, system.run_all([j.argv for j in jobs], TIMEOUT), strict=True):
        if r.missing:
            out.append(_Result(j, missing=True))
        elif r.timed_out:
            out.append(_Result(j, err=f"timed out after {TIMEOUT:g} s", rc=-1))
        else:
            out.append(_Result(j, r.stdout, r.stderr, r.rc if r.rc is not None else -1))
    return out


def _limitation(r: _Result) -> Limitation:
    tool = os.path.basename(r.job.argv[0])
    err = r.err.strip().splitlines()[-1] if r.err.strip() else f"exit status {r.rc}"
    if r.missing:
        return Limitation(f"{r.job.name} not read: {tool} is not installed")
    low = r.err.lower()
    if "permission denied" in low or "operation not permitted" in low or "must be root" in low:
        return Limitation(f"{r.job.name} not read: {tool} needs root", "run with sudo")
    return Limitation(f"{r.job.name} not read: {tool} failed: {err}")


def _read(system: Host, routes: bool) -> tuple[Ruleset, dict[str, Any], list[Limitation]]:
    """Run the tools and parse what they printed."""
    jobs, limits = _jobs(system, routes)
    results = _run_all(system, jobs)
    tools: list[dict[str, Any]] = []
    saves: list[tuple[str, str, str]] = []
    nft_json: str | None = None
    nft_text = ""
    ipset_text = ""
    host: dict[str, Any] = {"local_addresses": {}, "routes": []}
    for r in results:
        ok = not r.missing and r.rc == 0
        if r.job.source in ("iptables", "iptables-legacy", "nft-json", "ipset"):
            tools.append({"tool": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(r.job.argv)),
                          "ok": ok, "family": r.job.family or None,
                          "variant": ("nf_tables" if "(nf_tables)" in r.out else "legacy" if r.out.strip()
                                      else None) if r.job.source.startswith("iptables") else None})
        if not ok:
            if r.job.source not in ("nft-text", "routes4", "routes6"):
                limits.append(_limitation(r))
            continue
        if r.job.source in ("iptables", "iptables-legacy"):
            saves.append((r.out, r.job.family, r.job.source))
        elif r.job.source == "nft-json":
            nft_json = r.out
        elif r.job.source == "nft-text":
            nft_text = r.out
        elif r.job.source == "ipset":
            ipset_text = r.out
        elif r.job.source in ("routes4", "routes6"):
            _routes(r.out, host, r.job.source == "routes6")
    ruleset, problems = build_ruleset(saves, nft_json, nft_text, ipset_text)
    limits.extend(problems)
    if routes:
        host["forwarding"] = {"4": _sysctl(system, "net/ipv4/ip_forward"),
                              "6": _sysctl(system, "net/ipv6/conf/all/forwarding")}
    host["tools"] = tools
    return ruleset, host, limits


def build_ruleset(saves: list[tuple[str, str, str]], nft_json: str | None = None, nft_text: str = "",
                  ipset_text: str = "") -> tuple[Ruleset, list[Limitation]]:
    """One Ruleset from the tools' output: saves are (iptables-save text, "ip"/"ip6", source).

    An iptables-save without "(nf_tables)" in its header is the legacy variant. nftables tables
    that iptables-nft-save already reported are not read twice, and tables it could not report
    are not dropped: iptables-nft-save prints a native nft table named like its own (`table ip
    filter` of the nftables wiki) as an empty `*filter` under a note "# Table `filter' is
    incompatible" or "... contains incompatible base-chains". Such a table is read from nft: all
    of it, or, when iptables-save printed rules of some of its chains, every other chain (each
    chain is read from one tool only, so no base chain is walked twice).
    """
    tables: list[Table] = []
    limits: list[Limitation] = []
    partial: set[tuple[str, str]] = set()  # nf_tables tables iptables-save showed only in part
    for text, family, source in saves:
        if source == "iptables" and text.strip() and "(nf_tables)" not in text:
            source = "iptables-legacy"
        try:
            parsed = parse_iptables_save(text, family, source)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not hide the other facts
            limits.append(Limitation(f"{'ip6tables' if family == 'ip6' else 'iptables'} rules not understood: "
                                     f"{type(exc).__name__}: {exc}"))
            continue
        notes = incompatible_tables(text) if source == "iptables" else {}
        for t in parsed:
            how = notes.get(t.name)
            if how == "whole":
                continue  # nothing of it is iptables': all of it comes from nft
            if how == "partial":
                partial.add((family, t.name))
            tables.append(t)
        tool = "ip6tables" if family == "ip6" else "iptables"
        if notes and not nft_json:
            limits.append(Limitation(
                f"{tool}-save cannot show the nftables chains of table {', '.join(sorted(notes))} and nft "
                "could not be read: those chains were not evaluated", "install nftables (nft) and run as root"))
    if nft_json:
        try:
            doc = json.loads(nft_json)
        except json.JSONDecodeError as exc:
            limits.append(Limitation(f"nftables rules not read: nft -j printed invalid JSON ({exc})"))
        else:
            items = doc.get("nftables", []) if isinstance(doc, dict) else []
            handles = {(x["table"].get("family"), x["table"].get("name")): x["table"].get("handle")
                       for x in items if isinstance(x, dict) and isinstance(x.get("table"), dict)}
            kept: list[Table] = []
            owned: set[tuple[str, ...]] = set()
            for t in tables:
                if t.source != "iptables":
                    kept.append(t)
                    continue
                if (t.family, t.name) in partial:
                    # iptables-save prints its built-in chains empty, with policy ACCEPT, whether they
                    # exist or not, and also in place of a chain of that name it cannot show (another
                    # priority): only a chain it printed rules for is surely its; nft has the rest
                    t = replace(t, chains=tuple(c for c in t.chains if c.rules))
                    owned.update((t.family, t.name, c.name) for c in t.chains)
                    if not t.chains:
                        continue  # a native nft table with iptables' name: nft shows all of it
                else:
                    owned.add((t.family, t.name))
                # iptables-nft tables are nft tables too: their handles give the creation order
                kept.append(replace(t, handle=handles.get((t.family, t.name))))
            tables = kept
            try:
                tables.extend(parse_nft_json(doc, rule_texts(nft_text), owned, chain_devices(nft_text)))
            except Exception as exc:  # noqa: BLE001
                limits.append(Limitation(f"nftables rules not understood: {type(exc).__name__}: {exc}"))
    try:
        ipsets = parse_ipset_save(ipset_text) if ipset_text else []
    except Exception as exc:  # noqa: BLE001
        ipsets = []
        limits.append(Limitation(f"ipsets not understood: {type(exc).__name__}: {exc}"))
    ruleset = Ruleset(tuple(tables), tuple(ipsets))
    # what a parser could not read is kept out of the evaluation (an unreadable rule stays in its
    # chain and forks the walk); the rest of what it noted is said here
    limits.extend(Limitation(f"firewall rules not fully read: {p}", "report it with `portdoctor diagnose ... "
                             "--record FILE`") for p in problems_of(ruleset)[:20])
    return ruleset, limits


def _sysctl(system: Host, key: str) -> bool | None:
    try:
        return system.read_text(f"{system.proc_root}/sys/{key}").strip() != "0"
    except OSError:
        return None


def _routes(text: str, host: dict[str, Any], v6: bool = False) -> None:
    """Fill local addresses and routes from `ip -j -4|-6 route show table all`."""
    try:
        items = json.loads(text or "[]")
    except json.JSONDecodeError:
        return
    for r in items:
        dst = r.get("dst", "")
        kind = r.get("type", "unicast")
        dev = r.get("dev")
        table = r.get("table", "main")
        if kind == "local" and dst and dst != "default":
            addr = dst.split("/")[0]
            if "/" not in dst or dst.endswith("/32") or dst.endswith("/128"):
                host["local_addresses"].setdefault(addr, dev)
            else:
                host["routes"].append([dst, dev, "local"])
            continue
        if table not in ("main", "local", "default", 254, 255, 253):
            continue
        if kind in ("broadcast", "multicast", "anycast"):
            continue
        if dst == "default":
            dst = "::/0" if v6 else "0.0.0.0/0"
        if dst:
            if "/" not in dst:
                dst += "/128" if ":" in dst else "/32"
            host["routes"].append([dst, dev, kind])


def collect_firewall(req: Request) -> Facts:
    """Rulesets (with counters), local addresses, routes and forwarding, as FirewallFacts."""
    start = time.monotonic()
    rs, host, limits = _read(req.system, routes=True)
    before = req.before.get(BEFORE_KEY) if req.before else None
    before_time = before.get("time") if isinstance(before, dict) else None
    try:
        stateful = read_stateful(req.system, rs, before_time)
    except Exception as exc:  # noqa: BLE001 - the rules are worth more than the state they consult
        stateful = None
        limits.append(Limitation(f"stateful firewall state not read: {type(exc).__name__}: {exc}"))
    if stateful is not None:
        limits.extend(Limitation(n, "run as root") for n in stateful.notes)
    facts = FirewallFacts(
        ruleset=rs,
        tools=tuple(FirewallTool(**t) for t in host["tools"]),
        local_addresses=host["local_addresses"],
        routes=tuple(tuple(r) for r in host["routes"]),
        forwarding=host.get("forwarding", {}),
        counters_before=(before or {}).get("counters") if isinstance(before, dict) else None,
        counters_after=counters_of(rs),
        seconds=round(time.monotonic() - start, 4),
        stateful=stateful,
    )
    return Facts(fields={"firewall": facts}, limitations=limits)


def sample_counters(req: Request) -> dict[str, Any]:
    """Per-rule packet counters just before the probe: {"counters": {key: packets}}.

    Reads only the counters (no rule parsing), keyed as `counter_key` keys them.
    """
    jobs, _limits = _jobs(req.system, routes=False)
    jobs = [j for j in jobs if j.source in ("iptables", "iptables-legacy", "nft-json")]
    counters: dict[str, int] = {}
    owned: set[tuple[str, ...]] = set()
    results = _run_all(req.system, jobs)
    for r in results:
        if r.missing or r.rc != 0 or r.job.source == "nft-json":
            continue
        source = r.job.source
        if source == "iptables" and r.out.strip() and "(nf_tables)" not in r.out:
            source = "iptables-legacy"
        counters.update(iptables_counters(r.out, r.job.family, source, owned))
    for r in results:
        if r.job.source == "nft-json" and not r.missing and r.rc == 0:
            counters.update(nft_counters(r.out, owned))
    return {"counters": counters, "time": time.time()}


_COUNTED = re.compile(r"^\[(\d+):\d+\]\s+-A\s+(\S+)")


_INCOMPATIBLE = re.compile(r"^# Table `([^']+)' (is incompatible|contains incompatible)", re.M)


def incompatible_tables(text: str) -> dict[str, str]:
    """Tables iptables-nft-save says it cannot show: name -> "whole" or "partial".

    "# Table `filter' is incompatible, use 'nft' tool." (nothing of it printed: "whole");
    "# Table `filter' contains incompatible base-chains, use 'nft' tool to list them." (the
    compatible chains printed, plus empty built-in chains that may not exist: "partial").
    """
    return {m.group(1): "whole" if m.group(2) == "is incompatible" else "partial"
            for m in _INCOMPATIBLE.finditer(text)}


def iptables_counters(text: str, family: str, source: str, owned: set[tuple[str, ...]] | None = None
                      ) -> dict[str, int]:
    """Rule packet counters from iptables-save -c text, without parsing the rules.

    `owned` collects what nft_counters must skip: (family, table) of the tables printed in
    full, (family, table, chain) of the chains it printed rules for in a table it shows only in
    part (as `build_ruleset` divides such a table).
    """
    out: dict[str, int] = {}
    table = ""
    pos: dict[str, int] = {}
    notes = incompatible_tables(text) if source == "iptables" and "(nf_tables)" in text else {}
    for line in text.splitlines():
        if line.startswith("*"):
            table, pos = line[1:].strip(), {}
            if owned is not None and source == "iptables" and table not in notes:
                owned.add((family, table))
            continue
        m = _COUNTED.match(line)
        if m:
            chain = m.group(2)
            if notes.get(table) == "whole":
                continue
            if owned is not None and notes.get(table) == "partial":
                owned.add((family, table, chain))
            pos[chain] = pos.get(chain, 0) + 1
            out[f"{source}/{family}/{table}/{chain}/{pos[chain]}"] = int(m.group(1))
    return out


def nft_counters(text: str, skip: set[tuple[str, ...]]) -> dict[str, int]:
    """Rule packet counters from nft -j list ruleset, for tables (and chains) not in `skip`."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return {}
    out: dict[str, int] = {}
    for it in (doc.get("nftables", []) if isinstance(doc, dict) else []):
        r = it.get("rule") if isinstance(it, dict) else None
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("family", "table", "chain")):
            continue
        if (r["family"], r["table"]) in skip or (r["family"], r["table"], r["chain"]) in skip:
            continue
        for e in r.get("expr", []) if isinstance(r.get("expr"), list) else []:
            c = e.get("counter") if isinstance(e, dict) else None
            if isinstance(c, dict) and isinstance(c.get("packets"), int):
                out[f"nft/{r['family']}/{r['table']}/{r['chain']}/h{r.get('handle')}"] = c["packets"]
    return out
