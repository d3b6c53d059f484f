"""The data portdoctor passes between its stages: targets, probe results, host facts, findings.

Everything here is a frozen dataclass or an enum valued as the strings of SPEC.md, so that a
probe result, a snapshot or a diagnosis converts to JSON and back without loss (a recorded
snapshot is both a test fixture and a bug report).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portdoctor.snapshot import Snapshot


class State(str, enum.Enum):
    """What a client saw when it connected to one address."""

    OPEN = "open"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    DNS_ERROR = "dns_error"
    ERROR = "error"


class Cause(str, enum.Enum):
    """The cause vocabulary of SPEC.md."""

    OK = "ok"
    SERVICE_NOT_RUNNING = "service_not_running"
    WRONG_PORT = "wrong_port"
    FIREWALL_REJECT = "firewall_reject"
    FIREWALL_DROP = "firewall_drop"
    WRONG_INTERFACE = "wrong_interface"
    RESOURCE_EXHAUSTION = "resource_exhaustion"
    PORT_MAPPING = "port_mapping"
    PROXY_UPSTREAM = "proxy_upstream"
    HOST_UNREACHABLE = "host_unreachable"
    DNS = "dns"
    UNKNOWN = "unknown"


class Severity(str, enum.Enum):
    """How much a finding matters to the failing client."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Scope(str, enum.Enum):
    """Which addresses a listening socket accepts connections on."""

    LOOPBACK = "loopback"
    ALL = "all"
    SPECIFIC = "specific"


# --------------------------------------------------------------------------- client side


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client wants to connect: a host (name or literal) and a TCP port."""

    input: str
    host: str
    port: int
    scheme: str | None = None

    @property
    def is_this_host(self) -> bool:
        """True for the `:port` form, which means "this host, any local address"."""
        return self.input.startswith(":") and self.input[1:].isdigit()

    def to_json(self) -> dict[str, Any]:
        """The `target` object of the JSON contract."""
        return {"input": self.input, "host": self.host, "port": self.port}


@dataclass(frozen=True, slots=True)
class AddressResult:
    """The outcome of connecting to one resolved address (possibly several attempts)."""

    address: str
    family: int
    state: State
    errno: str | None
    seconds: float
    # state -> count over all attempts, when more than one attempt was made
    attempts: dict[str, int] = field(default_factory=dict)
    detail: str | None = None
    # the errno's number on the platform the probe ran on (111 on Linux, 61 on macOS / BSD)
    errno_number: int | None = None

    def to_json(self) -> dict[str, Any]:
        """One entry of the `addresses` list of the JSON contract (`errno_number` is an addition)."""
        out: dict[str, Any] = {
            "address": self.address,
            "family": self.family,
            "state": self.state.value,
            "errno": self.errno,
            "seconds": round(self.seconds, 4),
        }
        if self.errno_number is not None:
            out["errno_number"] = self.errno_number
        if self.attempts:
            out["attempts"] = dict(self.attempts)
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class RefusalOrigin:
    """Who sent the refusal of a remote target (docs/scan.md): the packet that answered the
    probe's SYN, where it came from, and what it was compared with.

    where: "target" (the target's own TCP stack: nothing listens there), "target_firewall" (a
    firewall rule on the target host), "path" (a device between this host and the target),
    "this_host" (a rule in this host's own OUTPUT chain answered), "unknown" (not enough was
    seen; `limitation` says what it would need).
    """

    address: str  # the target address that was probed
    port: int
    packet: str  # "tcp-reset" | "icmp" | "none"
    where: str
    sender: str | None = None  # the address that sent it, when known
    icmp: str | None = None  # "port-unreachable", "admin-prohibited", ... for ICMP answers
    ttl: int | None = None
    ip_id: int | None = None
    tos: int | None = None
    hops: int | None = None  # routers between this host and the sender, when it could be told
    reference: str | None = None  # the target's own packet it was compared with
    summary: str = ""
    evidence: tuple[str, ...] = ()
    limitation: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `refusal` object added to `portdoctor.probe/1`."""
        return {"address": self.address, "port": self.port, "packet": self.packet, "where": self.where,
                "sender": self.sender, "icmp": self.icmp, "ttl": self.ttl, "ip_id": self.ip_id,
                "tos": self.tos, "hops": self.hops, "reference": self.reference, "summary": self.summary,
                "evidence": list(self.evidence), "limitation": self.limitation}


@dataclass(frozen=True, slots=True)
class NearbyPort:
    """A port near a refused one that answered the short scan, and what it speaks."""

    port: int
    state: str
    reason: str
    service: str | None = None  # the name the port is known by (/etc/services, services.py)
    speaks: str | None = None  # what its first bytes said: "HTTP", "SSH", "Redis", ...

    def to_json(self) -> dict[str, Any]:
        return {"port": self.port, "state": self.state, "reason": self.reason, "service": self.service,
                "speaks": self.speaks}


@dataclass(frozen=True, slots=True)
class NearbyScan:
    """The short scan around a refused remote port: the ports tried and those that answered open."""

    address: str
    port: int
    scanned: tuple[int, ...]
    open: tuple[NearbyPort, ...] = ()
    seconds: float = 0.0
    cut_short: bool = False

    def to_json(self) -> dict[str, Any]:
        """The `nearby` object added to `portdoctor.probe/1`."""
        return {"address": self.address, "port": self.port, "scanned": list(self.scanned),
                "open": [p.to_json() for p in self.open], "seconds": round(self.seconds, 3),
                "cut_short": self.cut_short}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a client on this host sees when it connects to a target."""

    target: Target
    state: State
    addresses: tuple[AddressResult, ...]
    timeout: float
    dns_error: str | None = None
    source: str | None = None  # where the probe ran (hostname), for the reader
    # a refused remote target: who sent the refusal, and what answers on the ports around it
    refusal: RefusalOrigin | None = None
    nearby: NearbyScan | None = None

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.probe/1` document."""
        out: dict[str, Any] = {
            "schema": "portdoctor.probe/1",
            "target": self.target.to_json(),
            "state": self.state.value,
            "addresses": [a.to_json() for a in self.addresses],
        }
        if self.dns_error:
            out["dns_error"] = self.dns_error
        if self.refusal is not None:
            out["refusal"] = self.refusal.to_json()
        if self.nearby is not None:
            out["nearby"] = self.nearby.to_json()
        return out


# --------------------------------------------------------------------------- host facts


@dataclass(frozen=True, slots=True)
class Limitation:
    """Something a collector could not see, and how a user could let it see it."""

    what: str
    how: str = ""

    def __str__(self) -> str:
        return f"{self.what} ({self.how})" if self.how else self.what


@dataclass(frozen=True, slots=True)
class Process:
    """A process that owns a listening socket or may be the service the user means."""

    pid: int
    name: str
    cmdline: tuple[str, ...] = ()
    user: str | None = None
    unit: str | None = None
    container: str | None = None
    # environment variables that name ports or addresses (PORT=8080, REDIS_PORT=...)
    env: dict[str, str] = field(default_factory=dict)
    open_fds: int | None = None
    fd_soft_limit: int | None = None
    cwd: str | None = None
    state: str | None = None  # /proc/PID/stat state letter: R, S, D, T (stopped), t (traced), Z
    # paths of the listening unix sockets it holds (read for servers that may serve no TCP port)
    unix_listeners: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The command line as one string, or the name when it is unknown."""
        return " ".join(self.cmdline) if self.cmdline else self.name


@dataclass(frozen=True, slots=True)
class Listener:
    """One TCP socket in LISTEN state."""

    address: str
    port: int
    family: int
    v6only: bool | None = None
    queue: int = 0  # connections waiting in the accept queue (ss Recv-Q)
    backlog: int = 0  # the accept queue's capacity (ss Send-Q)
    inode: int = 0
    pids: tuple[int, ...] = ()

    @property
    def scope(self) -> Scope:
        """loopback, all (wildcard) or specific, from the bind address."""
        from portdoctor.addresses import scope

        return Scope(scope(self.address))

    @property
    def endpoint(self) -> str:
        """address:port as a user writes it ([v6]:port for IPv6)."""
        return f"[{self.address}]:{self.port}" if self.family == 6 else f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """An address configured on one of this host's interfaces."""

    address: str
    prefixlen: int
    family: int
    ifname: str
    up: bool = True


@dataclass(frozen=True, slots=True)
class RouteLookup:
    """How this host would send a packet to one address (`ip route get`)."""

    destination: str
    kind: str  # local, unicast, unreachable, prohibit, blackhole, none
    ifname: str | None = None
    gateway: str | None = None
    source: str | None = None


# ServiceConfig.path of a setting given on the server's command line rather than in a file
COMMAND_LINE = "(command line)"


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """A bind or port setting read from a server's configuration file (or its command line)."""

    service: str
    path: str
    line: int
    key: str
    value: str
    text: str


# --------------------------------------------------------------------------- conclusions


class ActionKind(str, enum.Enum):
    """What kind of change a fix's action makes (docs/fix.md)."""

    COMMAND = "command"  # run a command (argv)
    EDIT_SETTING = "edit_setting"  # change one setting in a config file (or on the command line)
    RESTART = "restart"  # restart or reload a service through whoever supervises it
    START = "start"  # start a stopped service through its supervisor
    SYSCTL = "sysctl"  # set a kernel parameter now and persist it in /etc/sysctl.d
    FD_LIMIT = "fd_limit"  # raise a process's, unit's or program's open-files limit
    FIREWALL_RULE = "firewall_rule"  # insert an accept rule with the tool that owns the ruleset
    MANUAL = "manual"  # a person has to do it (or decide it): never applied automatically


@dataclass(frozen=True, slots=True)
class Action:
    """The machine-readable side of a Fix: what `portdoctor fix` would change, and how to undo it.

    `refused` says why it must not be automated (the manual steps are the Fix's description and
    command); `undo` is None when the way back is not known, which also keeps it manual.
    """

    kind: ActionKind
    changes: str  # what it changes, in one line ("/etc/redis/redis.conf line 87: bind ...")
    needs_root: bool = True
    argv: tuple[str, ...] = ()  # the command it runs (command, firewall_rule, sysctl, start, fd_limit)
    undo: str | None = None  # how it is undone (a command, or "restore the backup of PATH")
    exposes: str | None = None  # who can reach the port afterwards, when it binds wider or opens a port
    refused: str | None = None
    # edit_setting: the file (or "(command line)"), its line, the setting and its old and new values
    path: str | None = None
    line: int | None = None
    key: str | None = None
    old: str | None = None
    new: str | None = None
    service: str | None = None  # the service it concerns (program, unit, container, server name)
    # firewall_rule: iptables, ip6tables, nft, ufw, firewall-cmd; restart/start: systemd,
    # supervisord, nginx (reload), podman, docker, respawn (a server started by hand)
    tool: str | None = None
    pid: int | None = None  # the process it acts on (restart of a server started by hand, fd_limit)
    persist: str | None = None  # how the change survives a reboot, when applying it does not do that

    @property
    def automatic(self) -> bool:
        """True when `portdoctor fix` may apply it: not manual, not refused, its undo known."""
        return self.kind is not ActionKind.MANUAL and self.refused is None and self.undo is not None

    def to_json(self) -> dict[str, Any]:
        """The `action` object of a fix (docs/fix.md); keys without a value are left out."""
        out: dict[str, Any] = {"kind": self.kind.value, "changes": self.changes, "needs_root": self.needs_root,
                               "undo": self.undo, "exposes": self.exposes, "automatic": self.automatic}
        for key in ("refused", "path", "line", "key", "old", "new", "service", "tool", "pid", "persist"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.argv:
            out["argv"] = list(self.argv)
        return out


@dataclass(frozen=True, slots=True)
class Fix:
    """One thing to do: what it does, and the command (or config line) that does it."""

    description: str
    command: str | None = None
    action: Action | None = None

    def to_json(self) -> dict[str, Any]:
        """`description` and `command` as the contract has them, plus the structured `action`."""
        action = self.action or Action(
            ActionKind.MANUAL, self.command or self.description, needs_root=False,
            refused="no automatic change is known for this step: follow the description")
        return {"description": self.description, "command": self.command, "action": action.to_json()}


@dataclass(frozen=True, slots=True)
class Finding:
    """A conclusion of one check, with the facts that support it and how to fix it."""

    cause: Cause
    check: str
    severity: Severity
    summary: str
    evidence: tuple[str, ...] = ()
    fix: tuple[Fix, ...] = ()
    # how strongly the evidence points at this cause (0..1), used to rank; not in the contract
    weight: float = 0.5

    def to_json(self) -> dict[str, Any]:
        return {
            "cause": self.cause.value,
            "check": self.check,
            "severity": self.severity.value,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "fix": [f.to_json() for f in self.fix],
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The single most likely cause, with a confidence and one sentence."""

    cause: Cause
    confidence: float
    summary: str

    def to_json(self) -> dict[str, Any]:
        return {"cause": self.cause.value, "confidence": round(self.confidence, 2), "summary": self.summary}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The answer of `diagnose`: probe, verdict, ranked findings, what could not be seen."""

    target: Target
    probe: ProbeResult
    verdict: Verdict
    findings: tuple[Finding, ...]
    limitations: tuple[str, ...] = ()
    snapshot: Snapshot | None = None
    followups: dict[str, ProbeResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.diagnosis/1` document."""
        return {
            "schema": "portdoctor.diagnosis/1",
            "target": self.target.to_json(),
            "probe": self.probe.to_json(),
            "verdict": self.verdict.to_json(),
            "findings": [f.to_json() for f in self.findings],
            "limitations": list(self.limitations),
        }
