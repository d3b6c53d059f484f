"""TCP forwarders holding this host's listening sockets, where they forward, and what answers there.

A forwarder (socat, ssh -L/-R, docker-proxy, kubectl port-forward, systemd-socket-proxyd,
rinetd) accepts a client and opens its own connection to a backend; when that connection is
refused it closes (or resets) the client's at once, so the client never sees the refusal. For
each listening socket on the asked port held by one, this collector reads where it forwards
from the forwarder's own facts (its command line from /proc, never run; rinetd's configuration
file, read under the owner rule of `Host.readable_for`) and connects to that backend from the
side that makes the real connection: the forwarder's network namespace, or, for an ssh -L
tunnel whose server runs in another namespace of this machine, that sshd's namespace (whose
listeners on the backend port are read too). With port 0 (the port map) every forwarder is
listed and nothing is probed. Only gathering: checks/forwarder.py decides.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import os
import socket
import time
from dataclasses import replace

from portdoctor import forwardspec, redact
from portdoctor.addresses import is_loopback
from portdoctor.collectors import Facts, Request, procfs
from portdoctor.collectors.containers import ns_addresses
from portdoctor.forwardspec import Forward
from portdoctor.host import Host, NotLive
from portdoctor.hostfacts import BackendProbe, Forwarder, ForwarderFacts, ForwardTarget, NetnsListener
from portdoctor.model import Limitation, Listener

PROBE_TIMEOUT = 1.5
RESOLVE_TIMEOUT = 2.0
MAX_FORWARDERS = 64
_STATE = {errno_mod.ECONNREFUSED: "refused", errno_mod.ETIMEDOUT: "timeout", errno_mod.EHOSTUNREACH: "unreachable",
          errno_mod.ENETUNREACH: "unreachable", errno_mod.EACCES: "unreachable", errno_mod.EPERM: "error"}


def _binds_take(bind: str | None, sock: Listener) -> bool:
    """Whether a forwarding's bind address (None: the tool's default) fits the listening socket."""
    if not bind or bind in ("*", "0.0.0.0", "::", "localhost"):
        return True
    try:
        return ipaddress.ip_address(bind) == ipaddress.ip_address(sock.address)
    except ValueError:
        return True


def _resolve(host: str, port: int) -> tuple[list[tuple[int, tuple]], str | None]:
    """(family, sockaddr) of host, literals directly; names through this host's resolver, as the
    forwarder resolves them (given up after RESOLVE_TIMEOUT)."""
    from portdoctor.probe import ResolverTimeout, gai_text, resolve_within

    name = "127.0.0.1" if host in ("", "localhost") else host
    try:
        return resolve_within(name, port, RESOLVE_TIMEOUT), None
    except ResolverTimeout as exc:
        return [], str(exc)
    except socket.gaierror as exc:
        return [], gai_text(exc)
    except UnicodeError:
        return [], "the name is not valid"


def probe_backend(host: Host, pid: int, target_host: str, port: int) -> tuple[tuple[BackendProbe, ...], str | None]:
    """Connect to target_host:port from the network namespace of `pid`: one BackendProbe per address."""
    addrs, err = _resolve(target_host, port)
    if err is not None:
        return (), err
    out: list[BackendProbe] = []
    for fam, sa in addrs[:4]:
        start = time.monotonic()
        try:
            host.connect_from(pid, fam, sa, PROBE_TIMEOUT).close()
            out.append(BackendProbe(sa[0], "open", None, round(time.monotonic() - start, 4)))
        except NotLive:
            raise
        except (TimeoutError, socket.timeout):
            out.append(BackendProbe(sa[0], "timeout", None, PROBE_TIMEOUT))
        except OSError as exc:
            code = exc.errno or 0
            out.append(BackendProbe(sa[0], _STATE.get(code, "error"), errno_mod.errorcode.get(code, str(code)),
                                    round(time.monotonic() - start, 4)))
    return tuple(out), None


def _ns_listeners(host: Host, pid: int, port: int) -> tuple[NetnsListener, ...] | None:
    socks: list[NetnsListener] = []
    seen = False
    for table in ("tcp", "tcp6"):
        raw = procfs.read_file(host, f"{host.proc_root}/{pid}/net/{table}")
        if raw is None:
            continue
        seen = True
        for x in procfs.parse_proc_net_tcp(raw.decode("ascii", "replace")):
            if x.port == port and NetnsListener(x.address, x.port, x.family) not in socks:
                socks.append(NetnsListener(x.address, x.port, x.family))
    return tuple(socks) if seen else None


def _own_addresses(host: Host) -> set[str]:
    return set(ns_addresses(host, "self"))


def _namespace_label(host: Host, net: int) -> str:
    from portdoctor.collectors.netns import namespace_names

    names = namespace_names(host)
    return f"network namespace {names[net]}" if net in names else f"network namespace net:[{net}]"


def parse_arp_macs(text: str) -> set[str]:
    """Hardware addresses of the complete entries of a /proc/net/arp table."""
    out: set[str] = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[2] != "0x0" and parts[3] != "00:00:00:00:00:00":
            out.add(parts[3].lower())
    return out


def own_macs(host: Host) -> set[str]:
    """Hardware addresses of this namespace's interfaces (/sys/class/net, as mounted here)."""
    out: set[str] = set()
    try:
        names = host.listdir("/sys/class/net")
    except OSError:
        return out
    for n in names:
        try:
            mac = host.read_text(f"/sys/class/net/{n}/address", 64).strip().lower()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00":
            out.add(mac)
    return out


def _pick(cands: list[tuple[str, set[str], object]], mine: set[str]) -> object | None:
    """The one candidate namespace that is really ours to reach: the only one, or the only one
    whose ARP table holds a hardware address of this namespace (a neighbour of ours: other
    namespaces of the machine may carry the same address on networks of their own)."""
    if len(cands) == 1:
        return cands[0][2]
    near = [c for c in cands if c[1] & mine]
    return near[0][2] if len(near) == 1 else None


def _far_sshd(host: Host, dest: str, ssh_port: int, own_net: int | None) -> tuple[int, str] | None:
    """An sshd of this machine, in another network namespace that has address `dest` and listens
    on `ssh_port`: (pid, description)."""
    cands: list[tuple[str, set[str], object]] = []
    nets: set[int] = set()
    for pid in procfs.pids(host):
        if procfs.read_comm(host, pid) != "sshd":
            continue
        net = procfs.netns_inode(host, pid)
        if net is None or net == own_net or net in nets or dest not in ns_addresses(host, pid):
            continue
        if not _ns_listeners(host, pid, ssh_port):
            continue
        nets.add(net)
        arp = parse_arp_macs((procfs.read_file(host, f"{host.proc_root}/{pid}/net/arp") or b"").decode("ascii", "replace"))
        cands.append((str(net), arp, (pid, f"{_namespace_label(host, net)} of the ssh server {dest}:{ssh_port} "
                                           f"(sshd, pid {pid})")))
    return _pick(cands, own_macs(host) if len(cands) > 1 else set())  # type: ignore[return-value]


def _owner_namespace(host: Host, address: str, port: int,
                     own_net: int | None) -> tuple[str, tuple[NetnsListener, ...] | None] | None:
    """Another network namespace of this machine that has `address` (one a process runs in, or one
    `ip netns` names, which may hold none): (its label, its listeners on `port`). A backend at such
    an address lives on this machine, so what listens there can be read."""
    from portdoctor.collectors.containers import parse_fib_trie_local, parse_if_inet6
    from portdoctor.collectors.netns import NETNS_DIRS

    cands: list[tuple[str, set[str], object]] = []
    seen: set[int] = set()
    for pid in procfs.pids(host):
        net = procfs.netns_inode(host, pid)
        if net is None or net == own_net or net in seen:
            continue
        seen.add(net)
        if address in ns_addresses(host, pid):
            arp = parse_arp_macs((procfs.read_file(host, f"{host.proc_root}/{pid}/net/arp") or b"").decode("ascii", "replace"))
            cands.append((str(net), arp, (_namespace_label(host, net), _ns_listeners(host, pid, port))))
    for d in NETNS_DIRS:  # namespaces without a process in them
        try:
            names = sorted(host.listdir(d))
        except OSError:
            continue
        for n in names:
            path = os.path.join(d, n)
            try:
                ino = host.stat(path).ino
                if ino in seen or ino == own_net:
                    continue
                seen.add(ino)
                text = host.read_netns_file(path, "fib_trie").decode("ascii", "replace")
                addrs = parse_fib_trie_local(text)
                if ":" in address:
                    addrs += parse_if_inet6(host.read_netns_file(path, "if_inet6").decode("ascii", "replace"))
                if address not in addrs:
                    continue
                arp = parse_arp_macs(host.read_netns_file(path, "arp").decode("ascii", "replace"))
            except (OSError, NotLive):
                continue
            socks: list[NetnsListener] = []
            for table in ("tcp", "tcp6"):
                try:
                    raw = host.read_netns_file(path, table).decode("ascii", "replace")
                except OSError:
                    continue
                socks += [NetnsListener(x.address, x.port, x.family) for x in procfs.parse_proc_net_tcp(raw)
                          if x.port == port]
            cands.append((str(ino), arp, (f"network namespace {n}", tuple(socks))))
    return _pick(cands, own_macs(host) if len(cands) > 1 else set())  # type: ignore[return-value]


def _target(host: Host, fw_pid: int, fwd: Forward, probe: bool, own: set[str], own_net: int | None) -> ForwardTarget:
    t = fwd.target
    base = ForwardTarget(host=redact.text(t.host), port=t.port, unix=t.unix, text=redact.text(t.text),
                         file=fwd.file, line=fwd.line)
    if fwd.direction == "cluster":
        return replace(base, side="cluster", side_detail=f"the pod's network namespace ({fwd.via})")
    connect_pid = fw_pid
    side, detail, listeners = "here", None, None
    if fwd.direction == "remote-end":  # ssh -L: the ssh server opens the connection
        dest = fwd.via_host or ""
        server = f"ssh server {fwd.via_host}:{fwd.via_port}"
        literal = dest if _is_literal(dest) else None
        if literal is None and dest:  # a name: where this host's resolver (and so ssh) sends it
            found_addrs, _err = _resolve(dest, fwd.via_port or 22)
            literal = found_addrs[0][1][0] if found_addrs else None
        if literal and (literal in own or is_loopback(literal)):
            side, detail = "here", f"the {server}, on this host"
        else:
            found = _far_sshd(host, literal, fwd.via_port or 22, own_net) if literal else None
            if found is None:
                return replace(base, side="remote", side_detail=f"the {server}")
            connect_pid, detail = found
            side = "netns"
    else:
        net = procfs.netns_inode(host, connect_pid)
        if net is not None and own_net is not None and net != own_net:  # ssh -R's client elsewhere
            side = "netns"
            detail = f"{_namespace_label(host, net)} of {fwd.kind} (pid {connect_pid})"
    if side == "netns" and t.port:
        listeners = _ns_listeners(host, connect_pid, t.port)
    if t.unix or not t.port or not probe:
        return replace(base, side=side, side_detail=detail, listeners=listeners)
    probes, err = probe_backend(host, connect_pid, t.host, t.port)
    if side == "here" and probes and all(p.state != "open" for p in probes):
        # the backend's address belongs to another network namespace of this machine: its
        # listeners there tell why it refuses
        first = probes[0].address
        if first not in own and not is_loopback(first):
            found = _owner_namespace(host, first, t.port, own_net)
            if found is not None:
                label, lns = found
                return replace(base, side="here", side_detail=f"{label}, which has {first}", probes=probes,
                               resolve_error=err, listeners=lns)
    return replace(base, side=side, side_detail=detail, probes=probes, resolve_error=err, listeners=listeners)


def _is_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _remote_clients(host: Host, port: int) -> list[tuple[int, tuple[str, ...], Forward]]:
    """ssh clients of this machine whose -R forwarding makes an sshd here listen on `port`."""
    out = []
    for pid in procfs.pids(host):
        if procfs.read_comm(host, pid) != "ssh":
            continue
        argv = procfs.read_cmdline(host, pid)
        for f in forwardspec.ssh(argv):
            if f.direction == "client-end" and f.listen_port == port:
                out.append((pid, argv, f))
    return out


def _rinetd(host: Host, pid: int, argv: tuple[str, ...]) -> tuple[list[Forward], list[Limitation]]:
    path = forwardspec.rinetd_config_path(argv)
    uid = procfs.read_uid(host, pid)
    ok, why = host.readable_for(path, uid)
    if not ok:
        return [], [Limitation(f"rinetd configuration {path}, named by process {pid}, was not read: {why}",
                               "check that file by hand; portdoctor reads for a process only what its user "
                               "could read")]
    try:
        text = host.read_text(path)
    except OSError as exc:
        return [], [Limitation(f"cannot read rinetd configuration {path} ({exc.strerror or exc})", "run as root")]
    return forwardspec.rinetd_conf(text, path), []


def forwarders_of(host: Host, listeners: list[Listener], port: int, probe: bool) -> tuple[list[Forwarder], list[Limitation]]:
    """The forwarders holding `listeners` (those on `port`, or all with port 0), their targets probed
    from the side that connects to them when `probe`."""
    lims: list[Limitation] = []
    out: list[Forwarder] = []
    own = _own_addresses(host) if probe else set()
    own_net = procfs.netns_inode(host, "self")
    done: set[tuple[int, str, int]] = set()
    known: dict[int, tuple[tuple[str, ...], str | None, str | None]] = {}  # pid -> argv, comm, kind
    rinetd: dict[int, list[Forward]] = {}
    for sock in listeners:
        if port > 0 and sock.port != port:
            continue
        for pid in sock.pids:
            if len(out) >= MAX_FORWARDERS or (pid, sock.address, sock.port) in done:
                continue
            if pid not in known:  # one read per process (the port map asks about every socket)
                comm0 = procfs.read_comm(host, pid)
                argv0 = procfs.read_cmdline(host, pid)
                known[pid] = (argv0, comm0, forwardspec.program_kind(argv0, comm0))
            argv, comm, kind = known[pid]
            if kind is None and comm != "sshd":
                continue
            shown = redact.argv(argv)
            holder = pid
            if kind == "rinetd":
                if pid not in rinetd:
                    rinetd[pid], more = _rinetd(host, pid, argv)
                    lims += more
                fwds = rinetd[pid]
            elif kind is not None:
                fwds = forwardspec.parse_command(kind, argv)
            elif comm == "sshd":  # ssh -R: the server listens, the client connects
                clients = _remote_clients(host, sock.port)
                if not clients:
                    continue
                holder, argv, f = clients[0]
                shown, fwds, kind = redact.argv(argv), [f], "ssh"
            else:
                continue
            matching = [f for f in fwds if (f.listen_port in (None, sock.port))
                        and _binds_take(f.listen_address, sock)]
            done.add((pid, sock.address, sock.port))
            program = os.path.basename(argv[0]) if argv else (comm or "?")
            if not matching:
                if kind in ("socat", "ssh", "docker-proxy", "kubectl", "systemd-socket-proxyd", "rinetd",
                            "systemd-socket-activate"):
                    out.append(Forwarder(kind, pid, program, sock.address, sock.port, sock.family,
                                         text=" ".join(shown[1:])[:300],
                                         note=f"where {program} forwards port {sock.port} could not be read "
                                              f"from its command line" + (" or configuration" if kind == "rinetd"
                                                                           else "")))
                continue
            f0 = matching[0]
            targets = tuple(_target(host, holder, f, probe and sock.port == port, own, own_net)
                            for f in matching[:4])
            if kind == "ssh" and f0.direction == "client-end":
                program, text = f"ssh (pid {holder}) through sshd", f0.text
            else:
                text = f0.text
            out.append(Forwarder(f0.kind, pid, program, sock.address, sock.port, sock.family, targets,
                                 redact.text(text), f0.via))
    return out, lims


def collect_forwarders(req: Request) -> Facts:
    """Forwarders holding listeners on req.port (every forwarder with port 0, unprobed)."""
    from portdoctor.collectors.linux import listener_facts

    host = req.system
    listeners = listener_facts(req).listeners
    probe = req.port > 0 and host.live
    try:
        found, lims = forwarders_of(host, listeners, req.port, probe)
    except NotLive:
        found, lims = forwarders_of(host, listeners, req.port, False)
    if not found:
        return Facts(limitations=lims)
    if probe and not host.is_root and any(t.side == "netns" for f in found for t in f.targets):
        lims.append(Limitation("a tunnel's far end in another network namespace was not probed", "run as root"))
    return Facts(fields={"forwarders": ForwarderFacts(tuple(found))}, limitations=lims)
