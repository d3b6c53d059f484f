"""Typed host facts owned by the later collectors: firewall, containers, proxies, supervisors, names.

A Snapshot holds one of each (or None when its collector saw nothing or did not run). They are
frozen dataclasses, so a check reads `snap.containers.containers[0].ports[0].host_port` instead
of digging through dictionaries, and they round-trip through JSON with `portdoctor.plain`.
Collectors only fill them in; checks decide.

Field names are the keys of the snapshot JSON (docs/snapshot.md), so the format is readable
without this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portdoctor.firewall.model import Ruleset, ruleset_from_plain, ruleset_to_plain
from portdoctor.firewall.stateful import StatefulFacts
from portdoctor.plain import codec
from portdoctor.proxyconf import ProxyConfig

# --------------------------------------------------------------------------- firewall


@dataclass(frozen=True, slots=True)
class FirewallTool:
    """One ruleset dump that was run: `iptables-save -c`, `nft -j list ruleset`, ..."""

    tool: str
    ok: bool
    family: str | None = None
    variant: str | None = None


@dataclass(frozen=True, slots=True)
class FirewallFacts:
    """Rulesets with their counters, and the routing facts the evaluator needs."""

    ruleset: Ruleset = field(default_factory=Ruleset, metadata=codec(ruleset_to_plain, ruleset_from_plain))
    tools: tuple[FirewallTool, ...] = ()
    # local address -> interface that owns it
    local_addresses: dict[str, str] = field(default_factory=dict)
    # (destination prefix, device, kind) of the routing tables main and local
    routes: tuple[tuple[str, ...], ...] = ()
    # "4"/"6" -> IP forwarding on (None: unknown)
    forwarding: dict[str, bool | None] = field(default_factory=dict)
    # counter_key -> packets, sampled just before and just after the probe
    counters_before: dict[str, int] | None = None
    counters_after: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # the kernel state stateful rules consult (recent lists, hashlimit tables, connections per
    # client, ...), read only for the kinds the ruleset uses; None when it uses none
    stateful: StatefulFacts | None = None


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True, slots=True)
class ContainerNetwork:
    """A network a container is attached to."""

    name: str
    address: str | None = None
    gateway: str | None = None
    prefixlen: int | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PortPublish:
    """A published port: host_ip:host_port on the host -> container_port in the container."""

    host_ip: str
    host_port: int
    container_port: int
    proto: str = "tcp"


@dataclass(frozen=True, slots=True)
class NetnsListener:
    """A LISTEN socket seen in another network namespace (a container's, the host's)."""

    address: str
    port: int
    family: int = 4


@dataclass(frozen=True, slots=True)
class Container:
    """What the engine knows of one container, and what really listens inside it."""

    id: str
    name: str
    image: str | None = None
    state: str | None = None  # running, exited, restarting, created, paused
    status: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    error: str | None = None
    restart_count: int = 0
    restart_policy: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    pid: int | None = None
    cmd: tuple[str, ...] = ()
    networks: tuple[ContainerNetwork, ...] = ()
    network_mode: str | None = None
    ports: tuple[PortPublish, ...] = ()
    listeners: tuple[NetnsListener, ...] | None = None  # None: its namespace could not be read
    addresses: tuple[str, ...] = ()
    local: bool | None = None  # its network's gateway is an address of this host
    same_netns: bool = False  # portdoctor runs in this very container's namespace
    # its published ports and network live in THIS network namespace (its conmon or
    # containerd-shim runs here, or, when stopped, its network's gateway is ours)
    here: bool | None = None
    logs: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The container's name, or its id when it has none."""
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class ContainerFacts:
    """Containers of the engine(s) this host runs."""

    engine: str | None = None  # docker, podman
    source: str | None = None  # "api unix:///...", "cli podman", "proc"
    self: str | None = None  # the container whose network namespace portdoctor runs in
    gateway: str | None = None  # this namespace's default gateway (the host, seen from a container)
    # when `self` is set: what listens in, and which addresses has, the host's namespace
    host_listeners: tuple[NetnsListener, ...] | None = None
    host_addresses: tuple[str, ...] | None = None
    containers: tuple[Container, ...] = ()


# --------------------------------------------------------------------------- proxies


@dataclass(frozen=True, slots=True)
class LogTail:
    """The lines of a log file that matter to the diagnosis."""

    path: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UnixSocketState:
    """A unix socket path a proxy forwards to: does it exist, is it a socket, does it accept."""

    state: str | None = None  # ok, missing, refused, busy, not_socket, denied, error (None: unknown)
    kind: str | None = None  # socket, file, directory
    mode: str | None = None
    owner: str | None = None
    error: str | None = None
    others: tuple[str, ...] = ()  # other sockets in the same folder


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """One plain `GET /` to a proxy's port: its status line and Server header, or the error."""

    address: str
    port: int
    status: int | None = None
    reason: str | None = None
    server: str | None = None
    error: str | None = None
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ProxyInstance:
    """One running reverse proxy: its configuration reduced to routes, and what it says."""

    kind: str  # nginx, haproxy, caddy
    pid: int
    source: str  # where the configuration came from ("nginx -T", a file, the admin API)
    config: ProxyConfig
    argv: tuple[str, ...] = ()
    exe: str | None = None
    error_log: tuple[LogTail, ...] = ()
    unix: dict[str, UnixSocketState] = field(default_factory=dict)
    http: tuple[HttpAnswer, ...] = ()


@dataclass(frozen=True, slots=True)
class ProxyFacts:
    """The reverse proxies running in this network namespace."""

    proxies: tuple[ProxyInstance, ...] = ()


# --------------------------------------------------------------------------- supervisors


@dataclass(frozen=True, slots=True)
class SupervisedProgram:
    """A supervisord program: its state from the XML-RPC interface, its settings from the config."""

    name: str
    group: str | None = None
    state: str | None = None  # RUNNING, BACKOFF, FATAL, EXITED, STOPPED, STARTING (None: no answer)
    exitstatus: int | None = None
    spawnerr: str | None = None
    description: str | None = None
    pid: int | None = None
    start: int | None = None
    stop: int | None = None
    stdout_logfile: str | None = None
    stderr_logfile: str | None = None
    command: str | None = None
    autostart: str | None = None
    autorestart: str | None = None
    startretries: str | None = None
    events: tuple[str, ...] = ()  # supervisord's own log lines about the program
    log: tuple[str, ...] = ()  # the tail of the program's log (when not running)
    log_file: str | None = None


@dataclass(frozen=True, slots=True)
class Supervisord:
    """One supervisord of this network namespace."""

    pid: int
    config: str | None = None
    socket: str | None = None
    error: str | None = None
    logfile: str | None = None
    programs: tuple[SupervisedProgram, ...] = ()


@dataclass(frozen=True, slots=True)
class SystemdUnit:
    """A service unit as `systemctl show` describes it, with its journal tail."""

    id: str | None
    active_state: str | None = None
    sub_state: str | None = None
    result: str | None = None
    n_restarts: int | None = None
    exec_main_status: int | None = None
    exec_main_code: str | None = None
    unit_file_state: str | None = None
    exec_start: str | None = None
    main_pid: int | None = None
    journal: tuple[str, ...] = ()
    listen: tuple[str, ...] = ()  # a .socket unit's listening addresses ("[::]:8087 (Stream)")
    triggers: tuple[str, ...] = ()  # what a .socket unit starts
    triggered_by: tuple[str, ...] = ()  # the .socket unit that starts this service


@dataclass(frozen=True, slots=True)
class SystemdFacts:
    """Failed or restarting units, and the one the user named (only with systemd as PID 1)."""

    units: tuple[SystemdUnit, ...] = ()


@dataclass(frozen=True, slots=True)
class SupervisorFacts:
    """What the supervisors of this host know about services."""

    supervisord: tuple[Supervisord, ...] = ()
    systemd: SystemdFacts | None = None


# --------------------------------------------------------------------------- names


@dataclass(frozen=True, slots=True)
class HostsEntry:
    """A line of /etc/hosts that names the target's host."""

    line: int
    address: str
    text: str


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """What the resolvers of resolv.conf say of a name, bypassing /etc/hosts."""

    addresses: tuple[str, ...] = ()
    error: str | None = None  # NXDOMAIN, NoAnswer, Timeout, "no resolver: ..."
    qname: str | None = None  # the name that answered (after the search list)
    qnames: tuple[str, ...] = ()  # the names tried, for NXDOMAIN
    cname: tuple[str, ...] = ()  # CNAME chain of a NoAnswer
    canonical: str | None = None


@dataclass(frozen=True, slots=True)
class NameFacts:
    """How this host resolves the target's name: resolvers, hosts-file lines, DNS's own answer."""

    nameservers: tuple[str, ...] = ()
    hosts_entries: tuple[HostsEntry, ...] = ()
    dns_answers: DnsAnswer | None = None


# --------------------------------------------------------------------------- other network namespaces


@dataclass(frozen=True, slots=True)
class ForeignListener:
    """A LISTEN socket on the asked port in another network namespace of this machine."""

    netns: int  # the namespace's inode (equal inodes: the same namespace)
    name: str | None  # its `ip netns` name, when it has one
    address: str
    port: int
    family: int = 4
    pids: tuple[int, ...] = ()  # the processes holding the socket
    programs: tuple[str, ...] = ()  # their program names (no command lines: those may carry secrets)
    container: str | None = None  # the container id its cgroup names, if any
    addresses: tuple[str, ...] = ()  # the namespace's own addresses (loopback left out)


@dataclass(frozen=True, slots=True)
class NamespaceFacts:
    """Listeners on the asked port in the other network namespaces of this machine."""

    listeners: tuple[ForeignListener, ...] = ()
    namespaces: int = 0  # how many other namespaces were looked at


# --------------------------------------------------------------------------- TCP forwarders


@dataclass(frozen=True, slots=True)
class BackendProbe:
    """One connection to a forwarder's backend, made from the side that connects to it."""

    address: str
    state: str  # open, refused, timeout, unreachable, error (the probe's states)
    errno: str | None = None
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ForwardTarget:
    """Where a forwarder sends what it accepts, and what a connection there does."""

    host: str  # as configured: a name or a literal ("" for a unix socket); kubectl: the resource
    port: int | None
    unix: str | None = None
    text: str = ""  # the argument or configuration line that names it
    file: str | None = None  # the configuration file (rinetd), None for the command line
    line: int | None = None
    # where the connection to it starts: "here" (the forwarder's own network namespace, which is
    # this one), "netns" (another namespace of this machine: an ssh tunnel's far end), "remote"
    # (another host), "cluster" (kubectl: the pod's namespace, through the API server)
    side: str = "here"
    side_detail: str | None = None  # "network namespace b (sshd, pid 42)", "ssh server 10.0.1.2:22"
    probes: tuple[BackendProbe, ...] | None = None  # None: not probed
    resolve_error: str | None = None  # the name did not resolve there
    # LISTEN sockets on its port in the other namespace the connection starts in (side "netns")
    listeners: tuple[NetnsListener, ...] | None = None


@dataclass(frozen=True, slots=True)
class Forwarder:
    """A process that accepts TCP connections and opens one to a backend for each (socat, ssh -L/-R,
    docker-proxy, kubectl port-forward, systemd-socket-proxyd, rinetd)."""

    kind: str
    pid: int
    program: str  # the name the process shows (argv[0]'s base name)
    address: str  # the listening socket it holds
    port: int
    family: int = 4
    targets: tuple[ForwardTarget, ...] = ()
    text: str = ""  # its forwarding as written (redacted command-line words, or the config line)
    via: str | None = None  # ssh: the server "user@host:22"; kubectl: "pod/web -n shop"
    note: str | None = None  # what could not be read about it


@dataclass(frozen=True, slots=True)
class ForwarderFacts:
    """TCP forwarders holding listening sockets (on the asked port, or all for the port map)."""

    forwarders: tuple[Forwarder, ...] = ()
