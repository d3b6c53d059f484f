"""What `portdoctor run` found: the program's exit, each target it failed to connect to (how
often, when, by which process, under which name) and the diagnosis of each target.

`RunReport.to_json()` is the `portdoctor.run/1` document described in README.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portdoctor.model import Diagnosis, ProbeResult
    from portdoctor.runtrace.attempts import Endpoint
    from portdoctor.runtrace.runner import Exit

SCHEMA = "portdoctor.run/1"


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A process that made failed attempts, and how many."""

    pid: int
    ppid: int | None
    command: tuple[str, ...]
    count: int

    @property
    def shown(self) -> str:
        """The command line with secrets masked, as one string (the pid's name when unknown)."""
        return shown(self.command) if self.command else f"pid {self.pid}"

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "ppid": self.ppid, "command": self.shown, "attempts": self.count}


@dataclass(frozen=True, slots=True)
class AttemptRef:
    """One failed attempt: when (seconds after the program started), who, what came back."""

    seconds: float
    pid: int
    errno: str | None
    waited: float
    how: str

    def to_json(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 6), "pid": self.pid, "errno": self.errno,
                "waited": round(self.waited, 6), "how": self.how}


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the client side alone can say about a target (remote hosts, Unix sockets)."""

    cause: str  # a cause id of SPEC.md
    summary: str
    next: str | None = None  # the command to run where the cause can be seen

    def to_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "summary": self.summary, "next": self.next}


@dataclass(frozen=True, slots=True)
class FailedTarget:
    """Every failed attempt at one endpoint, folded, with its diagnosis."""

    endpoint: Endpoint
    count: int
    errnos: dict[str, int]  # errno (or "none": given up without an answer) -> attempts
    first: float  # seconds after the program started
    last: float
    first_at: float  # epoch seconds of the first attempt
    processes: tuple[ProcessRef, ...]
    attempts: tuple[AttemptRef, ...]  # the first ATTEMPTS_KEPT of them
    name: str | None = None
    name_source: str | None = None  # "dns", "/etc/hosts" or None
    succeeded: int = 0  # connects to the same endpoint that worked
    local: bool | None = None  # the address is this host's (None: a Unix socket)
    diagnosis: Diagnosis | None = None
    probe: ProbeResult | None = None
    explanation: Explanation | None = None
    note: str | None = None  # why it was not diagnosed, when it was not

    @property
    def errno(self) -> str | None:
        """The most frequent outcome (None: no answer before the program gave up)."""
        top = max(self.errnos.items(), key=lambda kv: kv[1])[0]
        return None if top == "none" else top

    @property
    def state(self) -> str:
        """refused, timeout, unreachable, error: what the program saw most often."""
        from portdoctor.explain import errnos

        return "timeout" if self.errno is None else errnos.STATE.get(self.errno, "error")

    @property
    def gave_up_after(self) -> float | None:
        """How long the program waited before it gave up, when it gave up (median)."""
        waits = sorted(a.waited for a in self.attempts if a.errno is None)
        return waits[len(waits) // 2] if waits else None

    @property
    def cause(self) -> str | None:
        """The cause id of the diagnosis or of the client-side explanation."""
        if self.diagnosis is not None:
            return self.diagnosis.verdict.cause.value
        if self.explanation is not None:
            return self.explanation.cause
        return None

    def to_json(self) -> dict[str, Any]:
        e = self.endpoint
        return {
            "target": str(e),
            "kind": e.kind,
            "address": e.address if e.kind == "tcp" else None,
            "port": e.port,
            "path": e.address if e.kind == "unix" else None,
            "family": e.family or None,
            "name": self.name,
            "name_source": self.name_source,
            "errno": self.errno,
            "state": self.state,
            "errnos": dict(self.errnos),
            "count": self.count,
            "first_seconds": round(self.first, 6),
            "last_seconds": round(self.last, 6),
            "first_at": _iso(self.first_at),
            "gave_up_after": round(self.gave_up_after, 3) if self.gave_up_after is not None else None,
            "succeeded": self.succeeded,
            "processes": [p.to_json() for p in self.processes],
            "attempts": [a.to_json() for a in self.attempts],
            "local": self.local,
            "cause": self.cause,
            "diagnosis": self.diagnosis.to_json() if self.diagnosis is not None else None,
            "probe": self.probe.to_json() if self.probe is not None else None,
            "explanation": self.explanation.to_json() if self.explanation is not None else None,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class FailedLookup:
    """A name the program asked DNS for and never got an address for."""

    name: str
    rcode: str  # NXDOMAIN, SERVFAIL, REFUSED, NOERROR (no address)
    count: int
    first: float  # seconds after the program started
    processes: tuple[ProcessRef, ...]

    @property
    def meaning(self) -> str:
        """What the response code means for the program."""
        from portdoctor.runtrace.names import RCODE_MEANING

        return RCODE_MEANING.get(self.rcode, f"the resolver answered {self.rcode}")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rcode": self.rcode, "meaning": self.meaning, "count": self.count,
                "first_seconds": round(self.first, 6), "cause": "dns",
                "processes": [p.to_json() for p in self.processes]}


@dataclass(frozen=True, slots=True)
class RunReport:
    """The answer of `portdoctor run`."""

    argv: tuple[str, ...]
    exit_code: int | None
    exit_signal: int | None
    traced: bool
    limitation: str | None = None  # why the program ran untraced
    started_at: float | None = None
    seconds: float | None = None
    processes: int = 0  # processes traced (the program and its descendants)
    connected: int = 0  # connections that worked
    failures: tuple[FailedTarget, ...] = ()
    lookups: tuple[FailedLookup, ...] = ()  # names that did not resolve
    ignored: dict[str, int] = field(default_factory=dict)  # optional glibc sockets probed
    unparsed_lines: int = 0

    @property
    def status(self) -> int:
        """The exit status portdoctor ends with: the program's (128 + N when killed by signal N)."""
        if self.exit_signal is not None:
            return 128 + self.exit_signal
        return self.exit_code if self.exit_code is not None else 0

    @property
    def command(self) -> str:
        """The program's command line, secrets masked."""
        return shown(self.argv)

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.run/1` document."""
        import signal

        sig = None
        if self.exit_signal is not None:
            try:
                sig = signal.Signals(self.exit_signal).name
            except ValueError:
                sig = str(self.exit_signal)
        return {
            "schema": SCHEMA,
            "command": self.command,
            "exit": {"code": self.exit_code, "signal": sig, "status": self.status},
            "traced": self.traced,
            "limitation": self.limitation,
            "started_at": _iso(self.started_at) if self.started_at else None,
            "seconds": round(self.seconds, 3) if self.seconds is not None else None,
            "processes": self.processes,
            "connected": self.connected,
            "failures": [f.to_json() for f in self.failures],
            "failed_lookups": [x.to_json() for x in self.lookups],
            "ignored_probes": dict(self.ignored),
            "unparsed_lines": self.unparsed_lines,
        }


def with_exit(report: RunReport, exit_: Exit) -> RunReport:
    """A copy of `report` carrying `exit_`."""
    import dataclasses

    return dataclasses.replace(report, exit_code=exit_.code, exit_signal=exit_.signal)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- secrets

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
_SECRET_KEY = re.compile(r"(?i)(pass|secret|token|api[-_]?key|auth)")
_VALUE_OPTIONS = {"--password", "--pass", "--passwd", "--token", "--secret", "--api-key", "--auth",
                  "--user-password"}


def shown(argv: tuple[str, ...] | list[str]) -> str:
    """A command line as one line a shell would accept, secrets masked, newlines escaped.

    >>> shown(["curl", "http://u:pw@h/", "a b"])
    "curl 'http://u:***@h/' 'a b'"
    """
    import shlex

    return shlex.join(redact(argv)).replace("\n", "\\n")


def redact(argv: tuple[str, ...] | list[str]) -> list[str]:
    """The command line with passwords and tokens replaced by ***.

    >>> redact(["psql", "postgres://app:s3cret@db/prod", "--password=x", "PGPASSWORD=y"])
    ['psql', 'postgres://app:***@db/prod', '--password=***', 'PGPASSWORD=***']
    >>> redact(["redis-cli", "-a", "hunter2", "ping"])
    ['redis-cli', '-a', '***', 'ping']
    """
    out: list[str] = []
    prog = argv[0].rsplit("/", 1)[-1] if argv else ""
    hide_next = False
    for i, arg in enumerate(argv):
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        text = _URL_PASSWORD.sub(r"\1:***@", arg)
        key, eq, _value = text.partition("=")
        if i and eq and _SECRET_KEY.search(key) and not key.startswith("-" * 3):
            text = key + "=***"
        elif i and (text in _VALUE_OPTIONS or (text == "-a" and prog.startswith("redis-cli"))):
            hide_next = True
        elif i and prog in ("mysql", "mariadb", "mysqladmin") and text.startswith("-p") and len(text) > 2:
            text = "-p***"
        out.append(text)
    return out
