"""What macOS and FreeBSD collectors share: interface addresses (`ifconfig -a`), sysctls,
accept queues (`netstat -Lan`), process details (`ps`), pf (`pfctl`) and the merge of socket
rows from several tools into Listeners. Every command runs through the Host, so a recorded
host replays them.
"""

from __future__ import annotations

from dataclasses import replace

from portdoctor import redact
from portdoctor.bsdtools.misc import parse_ifconfig, parse_sysctl
from portdoctor.bsdtools.sockets import QueueRow, SocketRow, parse_listen_queues
from portdoctor.collectors import Facts, Request
from portdoctor.firewall import pf as pfparse
from portdoctor.host import Host
from portdoctor.model import InterfaceAddress, Limitation, Listener, Process
from portdoctor.platformfacts import PacketFilter

HOW_ROOT = "run portdoctor with sudo to see every process's sockets and the firewall rules"
SYSCTLS = ("kern.ipc.somaxconn", "kern.ipc.soacceptqueue", "net.inet.tcp.blackhole", "net.inet.udp.blackhole",
           "net.inet6.ip6.v6only", "net.inet.ip.fw.enable", "net.inet.ip.forwarding")


def collect_addresses(req: Request) -> Facts:
    """Interface addresses from `ifconfig -a`."""
    res = req.system.run(["ifconfig", "-a"])
    if not res.ok:
        return Facts(limitations=[Limitation("interface addresses could not be read (ifconfig -a failed)",
                                             "check that ifconfig is installed")])
    addrs = tuple(InterfaceAddress(a.address, a.prefixlen, a.family, a.ifname, a.up)
                  for a in parse_ifconfig(res.stdout))
    return Facts(fields={"addresses": addrs})


def collect_sysctls(req: Request) -> Facts:
    """The kernel settings the checks read (kern.ipc.somaxconn: the cap on every backlog)."""
    res = req.system.run(["sysctl", *SYSCTLS])
    values = parse_sysctl(res.stdout)  # unknown names make sysctl exit 1 but print the others
    return Facts(fields={"sysctls": values})


def listen_queues(host: Host) -> tuple[list[QueueRow], list[Limitation]]:
    """Accept queues of every listener (`netstat -Lan`)."""
    res = host.run(["netstat", "-Lan"])
    if not res.ok:
        return [], [Limitation("accept queues could not be read (netstat -Lan failed)", "run netstat -Lan")]
    return parse_listen_queues(res.stdout), []


def processes(host: Host, rows: list[SocketRow]) -> dict[int, Process]:
    """Process records for the owners of `rows`: name and user from the socket tool, the command
    line from `ps` (redacted)."""
    pids = sorted({r.pid for r in rows if r.pid})
    if not pids:
        return {}
    by_pid: dict[int, Process] = {}
    for r in rows:
        if r.pid and r.pid not in by_pid:
            by_pid[r.pid] = Process(pid=r.pid, name=r.command or "?", user=r.user)
        elif r.pid:
            p = by_pid[r.pid]
            by_pid[r.pid] = replace(p, name=p.name if p.name != "?" else (r.command or "?"), user=p.user or r.user)
    res = host.run(["ps", "-ww", "-o", "pid=,user=,command=", "-p", ",".join(str(p) for p in pids)])
    for line in res.stdout.splitlines() if res.ok or res.stdout else []:
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if pid not in by_pid:
            continue
        argv = tuple(parts[2].split()) if len(parts) > 2 else ()
        p = by_pid[pid]
        base = argv[0].rsplit("/", 1)[-1].rstrip(":") if argv else ""
        # the socket tools cut names (lsof at 9 characters, sockstat at 10: "redis-serv", netstat's
        # process:pid at 16): the program's own name is better then
        cut = len(p.name) >= 9 and base.startswith(p.name) and len(base) > len(p.name)
        name = base if base and (p.name == "?" or cut) else p.name
        by_pid[pid] = replace(p, name=name, user=p.user or parts[1], cmdline=redact.argv(argv))
    return by_pid


def merge_listeners(rows: list[SocketRow], queues: list[QueueRow]) -> tuple[Listener, ...]:
    """One Listener per (address, port, family), owners united, queues from `netstat -Lan`."""
    merged: dict[tuple[str, int, int], Listener] = {}
    for r in rows:
        key = (r.address, r.port, r.family)
        old = merged.get(key)
        pids = tuple(sorted(set((old.pids if old else ()) + ((r.pid,) if r.pid else ()))))
        v6 = r.v6only if r.v6only is not None else (old.v6only if old else None)
        merged[key] = Listener(address=r.address, port=r.port, family=r.family, v6only=v6, pids=pids)
    out = []
    for key, li in merged.items():
        q = _queue_for(li, queues)
        if q is not None:
            li = replace(li, queue=q.qlen, backlog=q.maxqlen)
        out.append(li)
    return tuple(sorted(out, key=lambda x: (x.port, x.family, x.address)))


def _queue_for(li: Listener, queues: list[QueueRow]) -> QueueRow | None:
    wild = li.address in ("0.0.0.0", "::")
    for q in queues:
        if q.port != li.port:
            continue
        if q.family is not None and q.family != li.family:
            continue
        if q.address == "*" and wild:
            return q
        if q.address == li.address or (wild and q.address in ("0.0.0.0", "::")):
            return q
    return None


def collect_pf(host: Host) -> tuple[PacketFilter | None, list[Limitation]]:
    """pf's rules (`pfctl -vvsr`), tables and state (`pfctl -s info`); root only."""
    if host.which("pfctl") is None:
        return None, []
    info = host.run(["pfctl", "-s", "info"])
    if not info.ok:
        if "no such file" in (info.stderr or "").lower():
            return None, []  # /dev/pf is missing: pf is not loaded, so it filters nothing
        if not host.is_root:
            return None, [Limitation("pf rules were not read (pfctl needs root)", "run portdoctor with sudo")]
        return None, [Limitation(f"pf's state is unknown ({(info.stderr or '').strip()[:120] or 'pfctl -s info failed'})",
                                 "check `sudo pfctl -s info`")]
    enabled = pfparse.enabled(info.stdout)
    rules_res = host.run(["pfctl", "-vvsr"])
    try:
        conf = host.read_text("/etc/pf.conf")
    except OSError:
        conf = None
    policy = pfparse.block_policy(conf)
    rules = tuple(pfparse.parse_rules(rules_res.stdout, policy)) if rules_res.ok else ()
    tables: dict[str, tuple[str, ...]] = {}
    names = host.run(["pfctl", "-s", "Tables"])
    for name in pfparse.parse_tables(names.stdout) if names.ok else []:
        shown = host.run(["pfctl", "-t", name, "-T", "show"])
        if shown.ok:
            tables[name] = pfparse.parse_table_entries(shown.stdout)
    lims = []
    if not rules_res.ok:
        lims.append(Limitation("pf rules could not be listed (pfctl -vvsr failed)", "run `sudo pfctl -vvsr`"))
    if any(r.text.startswith("anchor") for r in rules):
        lims.append(Limitation("rules inside pf anchors were not read (pfctl -a NAME -sr)",
                               "run `sudo pfctl -a '*' -vvsr` to see them"))
    return PacketFilter("pf", enabled, rules, tables, "pass", policy, "pfctl -vvsr", pfparse.skip_interfaces(conf)), lims
