"""Judge a `verify` spec against this host: every expectation passes, fails (with the diagnosis:
the cause and the fix) or could not be observed.

Host facts come from one snapshot of the whole host (the collectors of `ports`), judged through
the shared facts layer (hostview: listeners, owners, the compiled firewall of `Exposure`), and
are confirmed by probes of both address families. A failure is handed to the library's
`diagnose` for its cause and fix; an expectation the facts cannot settle (no privilege to see
owners or the firewall, a listener table that could not be read) is `unknown`, never a failure
and never a pass: "could not observe" is not "not listening".
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from portdoctor import addresses, hostview
from portdoctor.errors import ExitCode
from portdoctor.observed import firewall_blind, listeners_blind, owners_blind
from portdoctor.model import AddressResult, Diagnosis, Fix, InterfaceAddress, Listener, State, Target
from portdoctor.snapshot import Snapshot
from portdoctor.verify.spec import Entry, Spec

if TYPE_CHECKING:
    from portdoctor.firewall.evaluate import Evaluation

SCHEMA = "portdoctor.verify/1"
LOOPBACK = {4: "127.0.0.1", 6: "::1"}
# stand-ins for "some address of this family" in bind-scope predicates; never connected to
SOME_ADDRESS = {4: "192.0.2.1", 6: "2001:db8::1"}
FAMILY = {4: "IPv4", 6: "IPv6"}
MAX_DIAGNOSES = 12


class Status(str, enum.Enum):
    """The outcome of one expectation."""

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"  # could not be observed: says what is missing


@dataclass(frozen=True, slots=True)
class Result:
    """One expectation of one entry, judged."""

    entry: str
    line: int
    check: str  # listening, bind, process, reachable_from 10.0.0.7, blocked_from ..., http
    status: Status
    expected: str
    observed: str
    evidence: tuple[str, ...] = ()
    cause: str | None = None  # the diagnosis' cause id (SPEC vocabulary), when one was made
    summary: str | None = None  # why, in one sentence
    fix: tuple[Fix, ...] = ()
    diagnosis: Diagnosis | None = None

    def to_json(self) -> dict[str, Any]:
        """One entry of the `results` list of `portdoctor.verify/1`."""
        return {"check": self.check, "status": self.status.value, "expected": self.expected,
                "observed": self.observed, "evidence": list(self.evidence), "cause": self.cause,
                "summary": self.summary, "fix": [f.to_json() for f in self.fix],
                "diagnosis": self.diagnosis.to_json() if self.diagnosis is not None else None}


@dataclass(frozen=True, slots=True)
class Report:
    """Every result of a spec, in the spec's order."""

    spec: str
    host: str
    entries: tuple[tuple[Entry, tuple[Result, ...]], ...]
    limitations: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def results(self) -> list[Result]:
        return [r for _e, rs in self.entries for r in rs]

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def status(self) -> Status:
        """fail when any expectation failed, else unknown when any could not be observed, else pass."""
        got = {r.status for r in self.results}
        return Status.FAIL if Status.FAIL in got else Status.UNKNOWN if Status.UNKNOWN in got else Status.PASS

    @property
    def exit_code(self) -> ExitCode:
        return {Status.PASS: ExitCode.OK, Status.FAIL: ExitCode.PROBLEM, Status.UNKNOWN: ExitCode.INCOMPLETE}[
            self.status]

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.verify/1` document."""
        return {
            "schema": SCHEMA, "spec": self.spec, "host": self.host, "status": self.status.value,
            "counts": {s.value: self.count(s) for s in Status}, "seconds": round(self.seconds, 3),
            "checks": [{"name": e.name, "line": e.line, "subject": e.subject,
                        "results": [r.to_json() for r in rs]} for e, rs in self.entries],
            "limitations": list(self.limitations)}


# --------------------------------------------------------------------------- what the facts can see


def effective_v6only(snap: Snapshot, sock: Listener) -> bool | None:
    """IPV6_V6ONLY of an IPv6 socket; when the kernel did not say, net.ipv6.bindv6only decides."""
    if sock.family != 6:
        return None
    if sock.v6only is not None:
        return sock.v6only
    value = snap.sysctls.get("net.ipv6.bindv6only")
    return None if value is None else value.strip() == "1"


def takes(snap: Snapshot, sock: Listener, dest: str) -> bool:
    """Whether `sock` takes a connection to `dest`, judged by family, V6ONLY and bindv6only."""
    return addresses.accepts(sock.address, sock.family, effective_v6only(snap, sock), dest)


def covers_all(snap: Snapshot, sock: Listener, fam: int) -> bool:
    """Whether `sock` listens on every address of family `fam` (a wildcard that takes it)."""
    return addresses.is_wildcard(sock.address) and takes(snap, sock, SOME_ADDRESS[fam])


def external(snap: Snapshot, fam: int) -> list[InterfaceAddress]:
    """This host's addresses of family `fam` that another host can use."""
    return [a for a in snap.addresses if a.family == fam and not addresses.is_loopback(a.address)
            and not addresses.is_link_local(a.address)]


def default_families(snap: Snapshot) -> tuple[int, ...]:
    """IPv4, and IPv6 when this host has IPv6 addresses (::1 included)."""
    return (4, 6) if any(a.family == 6 for a in snap.addresses) else (4,)


def _in_subnet(addr: str, net: InterfaceAddress) -> bool:
    try:
        return ipaddress.ip_address(addresses.unmapped(addr)) in ipaddress.ip_network(
            f"{net.address.split('%')[0]}/{net.prefixlen}", strict=False)
    except ValueError:
        return False


def destination(snap: Snapshot, entry: Entry, source: str) -> tuple[str | None, str | None]:
    """(address a client at `source` connects to, interface it arrives on) for a port entry."""
    fam = addresses.family(source)
    if entry.address:
        ifname = next((a.ifname for a in snap.addresses if addresses.same_address(a.address, entry.address)), None)
        near = next((a.ifname for a in snap.addresses if _in_subnet(source, a)), None)
        return entry.address, near or ifname
    if addresses.is_loopback(source):
        return LOOPBACK[fam], "lo"
    if hostview.is_local(snap, source):
        return addresses.unmapped(source), "lo"
    for a in external(snap, fam):
        if _in_subnet(source, a):
            return a.address, a.ifname
    ext = external(snap, fam)
    return (ext[0].address, ext[0].ifname) if ext else (None, None)


# --------------------------------------------------------------------------- probes


@dataclass
class Prober:
    """Connections made from this host, each (source, destination, port) once."""

    timeout: float
    done: dict[tuple[str | None, str, int], AddressResult] = field(default_factory=dict)

    def many(self, dests: list[str], port: int) -> dict[str, AddressResult]:
        """Connect to every address in `dests` at once; address -> result."""
        from portdoctor.probe import connect_all, merge_attempts

        todo = [d for d in dict.fromkeys(dests) if (None, d, port) not in self.done]
        if todo:
            addrs = [(socket.AF_INET6 if addresses.family(d) == 6 else socket.AF_INET,
                      (d, port, 0, 0) if addresses.family(d) == 6 else (d, port)) for d in todo]
            for d, attempt in zip(todo, connect_all(addrs, self.timeout)):
                self.done[(None, d, port)] = merge_attempts([attempt])
        return {d: self.done[(None, d, port)] for d in dests}

    def from_source(self, source: str, dest: str, port: int) -> AddressResult:
        """Connect to dest:port from the local address `source` (the socket is bound to it)."""
        key = (source, dest, port)
        if key not in self.done:
            self.done[key] = connect_from(source, dest, port, self.timeout)
        return self.done[key]


def connect_from(source: str, dest: str, port: int, timeout: float) -> AddressResult:
    """One connection from `source` (an address of this host) to dest:port, classified as `probe` does."""
    from portdoctor.probe import finish_failed, merge_attempts

    fam = addresses.family(dest)
    start = time.monotonic()
    s = socket.socket(socket.AF_INET6 if fam == 6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        src = source if fam == 6 or addresses.family(source) == 4 else addresses.unmapped(source)
        try:
            s.bind((src, 0))
        except OSError as exc:
            return AddressResult(dest, fam, State.ERROR, None, 0.0,
                                 detail=f"could not use {source} as the source: {exc.strerror}")
        try:
            s.connect((dest, port))
        except socket.timeout:
            return AddressResult(dest, fam, State.TIMEOUT, None, timeout, detail=f"no answer within {timeout:g} s")
        except OSError as exc:
            return merge_attempts([finish_failed(dest, fam, exc.errno or 0, time.monotonic() - start)])
        return AddressResult(dest, fam, State.OPEN, None, time.monotonic() - start)
    finally:
        s.close()


def _state_words(r: AddressResult) -> str:
    """'[::1] refused (ECONNREFUSED)'."""
    where = f"[{r.address}]" if ":" in r.address else r.address
    return f"{where} {r.state.value}" + (f" ({r.errno})" if r.errno else "")


# --------------------------------------------------------------------------- the judge


@dataclass
class Judge:
    """Judges entries against one snapshot; failures are diagnosed after all are judged."""

    snap: Snapshot
    prober: Prober
    exposure: hostview.Exposure = field(init=False)

    def __post_init__(self) -> None:
        self.exposure = hostview.Exposure(self.snap)

    # ------------------------------------------------------------ helpers

    def sockets(self, port: int) -> list[Listener]:
        return hostview.listeners_on_port(self.snap, port)

    def described(self, socks: list[Listener]) -> list[str]:
        return [hostview.describe(self.snap, s) for s in socks]

    def bound(self, socks: list[Listener]) -> str:
        if not socks:
            return "nothing listens"
        words = []
        for s in socks:
            extra = ""
            if s.family == 6 and addresses.is_wildcard(s.address):
                v6 = effective_v6only(self.snap, s)
                extra = " (IPv6 only)" if v6 else " (IPv4 too)" if v6 is False else ""
            words.append(f"{s.endpoint}{extra}")
        return "bound to " + ", ".join(dict.fromkeys(words))

    def probe_targets(self, entry: Entry, fams: tuple[int, ...]) -> list[str]:
        """Where to connect to see a port on this host: loopback and one outside address per family."""
        out = [LOOPBACK[f] for f in fams]
        for f in fams:
            out += [a.address for a in external(self.snap, f)[:1]]
        if entry.address:
            out.append(entry.address)
        if isinstance(entry.bind, tuple):
            out += [LOOPBACK[addresses.family(a)] if addresses.is_wildcard(a) else a for a in entry.bind]
        # only this host's own addresses: verify never connects anywhere else for a `port:` check
        return [a for a in dict.fromkeys(out) if hostview.is_local(self.snap, a)]

    def firewall(self, source: str, dest: str, ifname: str | None, port: int) -> Evaluation | str:
        """The evaluation of a connection from `source` to dest:port, or why there is none."""
        from portdoctor.firewall.evaluate import Flow

        if self.exposure.unreadable:
            return "the firewall rules could not be compiled"
        blind = firewall_blind(self.snap)
        if blind:
            return f"the firewall rules could not be read: {blind}"
        ev = self.exposure.evaluator
        if ev is None:
            return "no rules"
        local = hostview.is_local(self.snap, source)
        flow = Flow(dst=dest, dport=port, src=addresses.unmapped(source), local_src=local,
                    iif=None if local else ifname, not_lo=not local)
        return ev.evaluate(flow)

    # ------------------------------------------------------------ entries

    def judge(self, entry: Entry) -> list[Result]:
        """Every expectation of one entry."""
        if entry.target is not None:
            return self.judge_target(entry)
        return self.judge_port(entry)

    def judge_target(self, entry: Entry) -> list[Result]:
        import asyncio

        from portdoctor.monitor.aprobe import aprobe
        from portdoctor.monitor.config import HttpCheck

        assert entry.target is not None
        http = None
        if entry.http is not None and entry.listening:
            h = entry.http
            http = HttpCheck(path=h.path, expect=h.status, tls=h.tls, verify=h.verify, host_header=h.host)
        probe, got = asyncio.run(aprobe(entry.target, self.prober.timeout, http=http))
        states = ", ".join(_state_words(a) for a in probe.addresses) or (probe.dns_error or "no address")
        ev = tuple(f"{entry.target.input}: {_state_words(a)}" for a in probe.addresses)
        out: list[Result] = []
        r = _Result(entry, "listening")
        if probe.state is State.DNS_ERROR:  # a client fails the same way: a failure, with cause dns
            observed = f"{entry.target.host} does not resolve: {probe.dns_error}"
            out.append(r.failed("accepts", observed, ev, diagnose=entry.target) if entry.listening
                       else r.unknown("nothing accepts", observed + ": nothing was probed", ev))
        elif entry.listening:
            out.append(r.passed("accepts", states, ev) if probe.state is State.OPEN
                       else r.failed("accepts", states, ev, diagnose=entry.target))
        else:
            out.append(r.failed("nothing accepts", states, ev,
                                summary=f"{entry.target.input} accepts connections; the spec says nothing may",
                                fix=(Fix("stop the service on that host, or block the port in its firewall"),))
                       if probe.state is State.OPEN else r.passed("nothing accepts", states, ev))
        if http is not None and probe.state is State.OPEN:
            out.append(self._http_result(entry, got, entry.target))
        return out

    def judge_port(self, entry: Entry) -> list[Result]:
        snap = self.snap
        port = entry.port
        socks = self.sockets(port)
        fams = entry.families or default_families(snap)
        probed = self.prober.many(self.probe_targets(entry, fams), port)
        opened = [d for d, r in probed.items() if r.state is State.OPEN]
        blind = listeners_blind(snap)
        ev = tuple(self.described(socks)) + tuple(f"connect to {addresses.endpoint(d, port)}: "
                                                  f"{_state_words(r).split(' ', 1)[1]}" for d, r in probed.items())
        r = _Result(entry, "listening")
        this = Target(f":{port}", "localhost", port)
        if entry.listening:
            if socks:
                listening = r.passed("listening", self.bound(socks), ev)
            elif opened:
                listening = r.passed("listening", "accepts on " + ", ".join(opened)
                                     + (f" (listener table not read: {blind})" if blind else ""), ev)
            elif blind:
                return [r.unknown("listening", f"could not be observed: {blind}", ev)]
            else:
                return [r.failed("listening", "nothing listens on port %d" % port, ev, diagnose=this)]
            out = [listening]
        else:
            if socks or opened:
                return [r.failed("nothing listening", self.bound(socks) if socks else
                                 "accepts on " + ", ".join(opened), ev,
                                 summary=f"port {port} accepts connections; the spec says nothing may listen there",
                                 fix=self.stop_fixes(socks, port))]
            if blind:
                return [r.unknown("nothing listening", f"could not be observed: {blind}", ev)]
            return [r.passed("nothing listening", "nothing listens; every probe refused", ev)]
        if entry.bind is not None:
            out.append(self.judge_bind(entry, socks, fams, probed, ev))
        if entry.process is not None:
            out.append(self.judge_process(entry, socks))
        for src in entry.reachable_from:
            out.append(self.judge_source(entry, src, socks, want=True))
        for src in entry.blocked_from:
            out.append(self.judge_source(entry, src, socks, want=False))
        if entry.http is not None:
            out.append(self.judge_http(entry, socks, fams))
        return out

    def judge_bind(self, entry: Entry, socks: list[Listener], fams: tuple[int, ...],
                   probed: dict[str, AddressResult], ev: tuple[str, ...]) -> Result:
        snap, port = self.snap, entry.port
        r = _Result(entry, "bind")
        famwords = " and ".join(FAMILY[f] for f in fams)
        observed = self.bound(socks)
        if entry.bind == "all":
            expected = f"all addresses ({famwords})"
            missing = [f for f in fams if not any(covers_all(snap, s, f) for s in socks)]
            if not missing:
                refused = [d for d, x in probed.items() if x.state is not State.OPEN
                           and addresses.family(d) in fams]
                if refused:
                    return r.failed(expected, observed + "; refused at " + ", ".join(refused), ev,
                                    diagnose=Target(addresses.endpoint(refused[0], port), refused[0], port))
                return r.passed(expected, observed, ev)
            f = missing[0]
            dest = next((a.address for a in external(snap, f)), LOOPBACK[f])
            where = ", ".join(FAMILY[m] for m in missing)
            return r.failed(expected, f"{observed}: not every {where} address", ev,
                            diagnose=Target(addresses.endpoint(dest, port), dest, port))
        if entry.bind == "loopback":
            expected = f"loopback only ({famwords})"
            wide = [s for s in socks if not addresses.is_loopback(s.address)]
            if wide:
                reached = [d for d, x in probed.items() if x.state is State.OPEN and not addresses.is_loopback(d)]
                return r.failed(expected, observed, ev + tuple(f"{d} accepts from this host" for d in reached),
                                summary=f"port {port} is open beyond this host: {observed}; the spec says loopback "
                                        "only",
                                fix=self.narrow_fixes(wide, port))
            missing = [f for f in fams if not any(takes(snap, s, LOOPBACK[f]) for s in socks)]
            if missing:
                lo = LOOPBACK[missing[0]]
                return r.failed(expected, f"{observed}: {lo} is not served", ev,
                                diagnose=Target(addresses.endpoint(lo, port), lo, port))
            return r.passed(expected, observed, ev)
        want = {addresses.unmapped(a) for a in entry.bind or ()}
        have = {addresses.unmapped(s.address) for s in socks}
        expected = "bound to " + ", ".join(sorted(want))
        if want == have:
            return r.passed(expected, observed, ev)
        lacking = sorted(want - have)
        extra = sorted(have - want)
        words = "; ".join(x for x in (("not on " + ", ".join(lacking)) if lacking else "",
                                      ("also on " + ", ".join(extra)) if extra else "") if x)
        if lacking:
            a = lacking[0]
            dest = LOOPBACK[addresses.family(a)] if addresses.is_wildcard(a) else a
            if not hostview.is_local(snap, dest):
                return r.failed(expected, f"{observed} ({words})", ev,
                                summary=f"{dest} is not an address of this host: no socket can be bound to it here",
                                fix=(Fix(f"add {dest} to an interface of this host, or correct the spec"),))
            return r.failed(expected, f"{observed} ({words})", ev, diagnose=Target(addresses.endpoint(dest, port),
                                                                                  dest, port))
        return r.failed(expected, f"{observed} ({words})", ev,
                        summary=f"port {port} listens on more addresses than the spec allows: {', '.join(extra)}",
                        fix=self.narrow_fixes([s for s in socks if addresses.unmapped(s.address) in extra], port))

    def owner_words(self, sock: Listener) -> list[str]:
        """Every name a user may call the holder of `sock` by: process, command, unit, container."""
        out: list[str] = []
        for p in hostview.owners(self.snap, sock):
            out += [hostview.process_name(self.snap, p.pid), p.name, p.command]
            out += [p.unit] if p.unit else []
            c = hostview.container_named(self.snap, p.container)
            out += [c.label, c.name or ""] if c else ([p.container] if p.container else [])
        held = hostview.holder_container(self.snap, sock)
        if held is not None:
            out += [held.label, held.name or ""]
        return [w for w in out if w]

    def judge_process(self, entry: Entry, socks: list[Listener]) -> Result:
        r = _Result(entry, "process")
        want = (entry.process or "").lower().removesuffix(".service")
        ev = tuple(self.described(socks))
        names = [(s, self.owner_words(s)) for s in socks]
        if any(_names_match(want, words) for _s, words in names):
            holders = sorted({w[0] for _s, w in names if w})
            return r.passed(entry.process or "", "held by " + ", ".join(holders), ev)
        if all(not s.pids for s in socks):
            why = owners_blind(self.snap) or "the kernel did not say which process holds it"
            return r.unknown(entry.process or "", f"owner not known: {why}", ev)
        holders = sorted({w[0] for _s, w in names if w} | {f"pid {p}" for s in socks for p in s.pids
                                                          if p not in self.snap.processes})
        # the port accepts, so `diagnose` has nothing to name: the finding is this one
        return r.failed(entry.process or "", "held by " + ", ".join(holders), ev,
                        summary=f"port {entry.port} is held by {', '.join(holders)}, not by {entry.process}",
                        fix=self.stop_fixes(socks, entry.port, then=entry.process))

    def judge_source(self, entry: Entry, source: str, socks: list[Listener], want: bool) -> Result:
        snap, port = self.snap, entry.port
        r = _Result(entry, f"{'reachable_from' if want else 'blocked_from'} {source}")
        expected = "reachable" if want else "blocked"
        dest, ifname = destination(snap, entry, source)
        if dest is None:
            return r.unknown(expected, f"this host has no {FAMILY[addresses.family(source)]} address a client at "
                                       f"{source} could use; set `address:`", ())
        at = addresses.endpoint(dest, port)
        target = Target(at, dest, port)
        ev: list[str] = []
        listener = [s for s in socks if takes(snap, s, dest)]
        ev.append(f"listener taking {at}: " + (", ".join(s.endpoint for s in listener) if listener else "none")
                  + f" ({self.bound(socks)})")
        fw = self.firewall(source, dest, ifname, port)
        verdicts: set[str] = set()
        definite_block = False
        if isinstance(fw, str):
            ev.append(f"firewall: {fw}")
            if fw == "no rules":
                verdicts = {"accept"}
        else:
            verdicts = {o.verdict.value for o in fw.outcomes}
            for o in fw.outcomes:
                where = o.step.where if o.step is not None else (o.note or "no rule")
                rule = f": {o.step.rule.text}" if o.step is not None and o.step.rule is not None else ""
                cond = f" (if {', '.join(a.reason for a in o.assumptions)})" if o.assumptions else ""
                ev.append(f"firewall, {source} -> {at}: {o.verdict.value} by {where}{rule}{cond}")
            definite_block = any(o.verdict.value in ("drop", "reject") and o.definite for o in fw.outcomes)
        probe = None
        if hostview.is_local(snap, source) and hostview.is_local(snap, dest):
            probe = self.prober.from_source(source, dest, port)
            ev.append(f"connect from {source} to {at}: {probe.state.value}" + (f" ({probe.errno})" if probe.errno
                                                                              else ""))
        gets_in: bool | None
        if probe is not None:
            gets_in = probe.state is State.OPEN
        elif not listener:
            gets_in = False if not listeners_blind(snap) else None
        elif verdicts == {"accept"}:
            gets_in = True
        elif definite_block and "accept" not in verdicts:
            gets_in = False
        elif definite_block:
            gets_in = None if want else True  # some of the sources' packets pass: not blocked
        else:
            gets_in = None
        observed = ("reachable" if gets_in else "blocked" if gets_in is False else "not known")
        if probe is not None:
            observed += f" (probe: {probe.state.value})"
        if gets_in is None:
            why = next((e for e in ev if e.startswith("firewall:")), "the firewall's verdict depends on what it "
                                                                     "cannot evaluate")
            return r.unknown(expected, f"could not be judged: {why}", tuple(ev))
        if gets_in == want:
            return r.passed(expected, observed, tuple(ev))
        if want:
            return r.failed(expected, observed, tuple(ev), diagnose=target if hostview.is_local(snap, dest) else None,
                            from_addr=None if addresses.is_loopback(source) else source)
        fam = addresses.family(dest)
        tool = "ip6tables" if fam == 6 else "iptables"
        return r.failed(expected, observed, tuple(ev),
                        summary=f"{source} can connect to {at}; the spec says it must be blocked",
                        fix=(Fix(f"reject {source} on port {port}",
                                 f"{tool} -I INPUT -s {addresses.unmapped(source)} -p tcp --dport {port} -j REJECT "
                                 "--reject-with tcp-reset"),))

    def judge_http(self, entry: Entry, socks: list[Listener], fams: tuple[int, ...]) -> Result:
        import asyncio

        from portdoctor.monitor.aprobe import aprobe
        from portdoctor.monitor.config import HttpCheck

        h = entry.http
        assert h is not None
        own = entry.address if entry.address and hostview.is_local(self.snap, entry.address) else None
        dest = own or next((LOOPBACK[f] for f in fams if any(takes(self.snap, s, LOOPBACK[f])
                                                                         for s in socks)), None)
        if dest is None:
            dest = next((s.address for s in socks if not addresses.is_wildcard(s.address)), LOOPBACK[fams[0]])
        t = Target(addresses.endpoint(dest, entry.port), dest, entry.port, "https" if h.tls else "http")
        check = HttpCheck(path=h.path, expect=h.status, tls=h.tls, verify=h.verify, host_header=h.host)
        probe, got = asyncio.run(aprobe(t, self.prober.timeout, http=check))
        if probe.state is not State.OPEN:
            return _Result(entry, "http").failed(_http_expected(h.status), f"{t.input} {probe.state.value}", (),
                                                 diagnose=t)
        return self._http_result(entry, got, t)

    def _http_result(self, entry: Entry, got: Any, t: Target) -> Result:
        h = entry.http
        assert h is not None
        r = _Result(entry, "http")
        url = f"{'https' if h.tls else 'http'}://{t.input}{h.path}"
        expected = _http_expected(h.status)
        if got is not None and got.ok:
            return r.passed(expected, f"GET {url}: {got.status}", ())
        seen = got.error if got is not None else "no answer"
        return r.failed(expected, f"GET {url}: {seen}", (f"GET {url}: {seen}",), diagnose=t,
                        summary=f"GET {url} answered {seen}, expected {expected}",
                        fix=(Fix("look at the service's own log for why it answers so"),))

    # ------------------------------------------------------------ fixes of our own findings

    def stop_fixes(self, socks: list[Listener], port: int, then: str | None = None) -> tuple[Fix, ...]:
        out: list[Fix] = []
        for s in socks:
            for p in hostview.owners(self.snap, s):
                held = hostview.holder_container(self.snap, s)
                if held is not None:
                    engine = (self.snap.containers.engine if self.snap.containers else None) or "podman"
                    out.append(Fix(f"stop the container {held.label} that publishes port {port}",
                                   f"{engine} stop {held.name or held.id}"))
                elif p.unit:
                    out.append(Fix(f"stop {p.unit}, which holds port {port}", f"systemctl stop {p.unit}"))
                else:
                    out.append(Fix(f"stop {hostview.process_name(self.snap, p.pid)} (pid {p.pid}), which holds "
                                   f"port {port}", f"kill {p.pid}"))
        if then:
            out.append(Fix(f"then start {then} (or move one of them to another port)"))
        if not out:
            out.append(Fix(f"find and stop what listens on port {port}", f"ss -ltnp 'sport = :{port}'"))
        return tuple(dict.fromkeys(out))

    def narrow_fixes(self, socks: list[Listener], port: int) -> tuple[Fix, ...]:
        names = sorted({hostview.process_name(self.snap, p.pid) for s in socks for p in hostview.owners(self.snap, s)})
        who = ", ".join(names) or f"the server on port {port}"
        cfg = [c for c in self.snap.configs if any(n and n in c.service for n in names)]
        out = [Fix(f"make {who} listen on 127.0.0.1 (and ::1) only: set its bind/listen address")]
        out += [Fix(f"{c.path}:{c.line}: change `{c.text.strip()}`") for c in cfg[:3]]
        out.append(Fix(f"or keep other hosts out with the firewall",
                       f"iptables -I INPUT -p tcp --dport {port} ! -i lo -j REJECT --reject-with tcp-reset"))
        return tuple(out)


def _http_expected(status: tuple[int, ...]) -> str:
    return "HTTP status " + " or ".join(str(s) for s in status)


def _names_match(want: str, words: list[str]) -> bool:
    for w in words:
        lw = w.lower()
        if lw.removesuffix(".service") == want or (" " in lw and want in lw) or lw.startswith(want + " "):
            return True
        if "/" in lw and lw.rsplit("/", 1)[-1] == want:
            return True
    return False


@dataclass
class _Result:
    """Builds the Results of one expectation (and remembers what a failure should diagnose)."""

    entry: Entry
    check: str

    def passed(self, expected: str, observed: str, ev: tuple[str, ...] | list[str]) -> Result:
        return Result(self.entry.name, self.entry.line, self.check, Status.PASS, expected, observed, tuple(ev))

    def unknown(self, expected: str, observed: str, ev: tuple[str, ...] | list[str]) -> Result:
        return Result(self.entry.name, self.entry.line, self.check, Status.UNKNOWN, expected, observed, tuple(ev))

    def failed(self, expected: str, observed: str, ev: tuple[str, ...] | list[str], *,
               diagnose: Target | None = None, from_addr: str | None = None, service: str | None = None,
               summary: str | None = None, fix: tuple[Fix, ...] = ()) -> Result:
        return _Pending(self.entry.name, self.entry.line, self.check, Status.FAIL, expected, observed, tuple(ev),
                        summary=summary, fix=fix, target=diagnose, from_addr=from_addr, service=service)


@dataclass(frozen=True, slots=True)
class _Pending(Result):
    """A Result waiting for its diagnosis."""

    target: Target | None = None
    from_addr: str | None = None
    service: str | None = None


def _diagnosed(r: Result, run: Callable[[Target, str | None, str | None], Diagnosis] | None) -> Result:
    """The final Result: a failure with the cause, summary and fix of its diagnosis."""
    if not isinstance(r, _Pending):
        return r
    base = Result(r.entry, r.line, r.check, r.status, r.expected, r.observed, r.evidence, r.cause, r.summary, r.fix)
    if r.target is None or run is None:
        return base
    try:
        d = run(r.target, r.from_addr, r.service)
    except Exception as exc:  # noqa: BLE001 - a diagnosis that breaks must not hide the failure
        return Result(base.entry, base.line, base.check, base.status, base.expected, base.observed,
                      base.evidence + (f"the diagnosis failed ({type(exc).__name__}: {exc})",), base.cause,
                      base.summary, base.fix)
    cause = d.verdict.cause.value
    if cause == "ok":
        # the port accepts from here (a wrong owner, an HTTP status): nothing for diagnose to name;
        # the result keeps its own sentence and fix, the diagnosis goes along in the JSON
        return Result(base.entry, base.line, base.check, base.status, base.expected, base.observed,
                      base.evidence, None, base.summary or d.verdict.summary, base.fix, d)
    top = next((f for f in d.findings if f.cause is d.verdict.cause), None)
    fixes = top.fix if top is not None else ()
    summary = d.verdict.summary if base.summary is None else f"{base.summary}: {d.verdict.summary}"
    evidence = base.evidence + (top.evidence if top is not None else ())
    return Result(base.entry, base.line, base.check, base.status, base.expected, base.observed,
                  tuple(dict.fromkeys(evidence)), cause, summary, tuple(fixes) + base.fix, d)


def verify(spec: Spec, snapshot: Snapshot | None = None, diagnose: bool = True) -> Report:
    """Judge every entry of `spec` on this host (or on `snapshot`, still probing from here).

    Failures are diagnosed (at most MAX_DIAGNOSES) with the library's `diagnose`.
    """
    start = time.monotonic()
    if snapshot is None:
        from portdoctor.collectors import Request, collect

        snapshot = collect(Request(port=0))
    judge = Judge(snapshot, Prober(spec.timeout))
    judged = [(e, judge.judge(e)) for e in spec.entries]

    def run(t: Target, from_addr: str | None, service: str | None) -> Diagnosis:
        from portdoctor.diagnose import diagnose as run_diagnose

        return run_diagnose(t, from_addr=from_addr, service=service, timeout=spec.timeout)

    # failures are diagnosed two at a time (each collects its own facts about its port)
    pending = [r for _e, rs in judged for r in rs if isinstance(r, _Pending) and r.target is not None
               and r.status is Status.FAIL][:MAX_DIAGNOSES if diagnose else 0]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {id(r): pool.submit(_diagnosed, r, run) for r in pending}
        entries = tuple((e, tuple(futures[id(r)].result() if id(r) in futures else _diagnosed(r, None) for r in rs))
                        for e, rs in judged)
    return Report(spec.path, snapshot.hostname, entries, tuple(str(x) for x in snapshot.limitations),
                  time.monotonic() - start)
