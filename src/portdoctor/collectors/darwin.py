"""macOS collectors: listeners from `netstat -anv -p tcp` (every socket, with its pid) and
`lsof -F` (owners and users; without root only the caller's own processes), accept queues from
`netstat -Lan`; launchd and Homebrew services, pf, the Application Firewall and Docker Desktop.

Everything runs through the Host (`host.run`), so a recorded macOS host replays it on Linux.
"""

from __future__ import annotations

from portdoctor import services as service_table
from portdoctor.bsdtools.misc import parse_alf, parse_docker_ps
from portdoctor.bsdtools.services import exit_code, parse_brew_services, parse_launchctl_list, parse_launchctl_print
from portdoctor.bsdtools.sockets import LSOF_ARGV, SocketRow, parse_lsof, parse_netstat_anv
from portdoctor.collectors import Facts, Request
from portdoctor.collectors.bsd import HOW_ROOT, collect_pf, listen_queues, merge_listeners, processes
from portdoctor.hostfacts import PortPublish
from portdoctor.host import CommandResult, Host
from portdoctor.model import Limitation
from portdoctor.platformfacts import AppFirewall, BrewService, BsdFacts, DesktopContainer, LaunchdJob

SOCKETFILTERFW = "/usr/libexec/ApplicationFirewall/socketfilterfw"


def lsof_sockets(host: Host, res: CommandResult | None = None) -> tuple[list[SocketRow], list[Limitation]]:
    """Listening TCP sockets and their owners from `lsof -F` (runs on Linux's lsof too); `res`:
    its output when the caller already ran it."""
    res = res if res is not None else host.run(list(LSOF_ARGV))
    if res.missing:
        return [], [Limitation("lsof is not installed: listener owners come from netstat alone", "install lsof")]
    # lsof exits 1 when it found nothing (and when some processes could not be read)
    rows = parse_lsof(res.stdout)
    lims = []
    if not host.is_root:
        lims.append(Limitation("lsof without root shows only your own processes: owners of other users' "
                               "listeners (and their user names) are not seen", HOW_ROOT))
    return rows, lims


def collect_listeners(req: Request) -> Facts:
    """Every TCP listener (netstat -anv), owners (lsof), queues (netstat -Lan), owner processes."""
    host = req.system
    lims: list[Limitation] = []
    ns, lsof_res = host.run_all([["netstat", "-anv", "-p", "tcp"], list(LSOF_ARGV)])  # at once: lsof is slow
    rows: list[SocketRow] = parse_netstat_anv(ns.stdout) if ns.ok else []
    if not ns.ok:
        lims.append(Limitation("netstat -anv -p tcp failed: only lsof's listeners are known", "run netstat -anv -p tcp"))
    lrows, llims = lsof_sockets(host, lsof_res)
    lims += llims
    queues, qlims = listen_queues(host)
    lims += qlims
    # netstat knows IPV6_V6ONLY (tcp6 vs tcp46), lsof does not: carry it over to lsof's rows
    v6 = {(r.address, r.port): r.v6only for r in rows if r.family == 6}
    lrows = [SocketRow(r.address, r.port, r.family, v6.get((r.address, r.port)) if r.family == 6 else None, r.pid,
                       r.command, r.user, r.fd) for r in lrows]
    all_rows = rows + lrows
    listeners = merge_listeners(all_rows, queues)
    unknown = [li for li in listeners if not li.pids]
    if unknown:
        lims.append(Limitation(f"owners of {len(unknown)} listening sockets are unknown", HOW_ROOT))
    return Facts(fields={"listeners": listeners, "processes": processes(host, all_rows)}, limitations=lims)


def _related_labels(req: Request, labels: list[str]) -> list[str]:
    """launchd labels worth a `launchctl print`: those naming the asked service or a usual server
    of the port (homebrew.mxcl.postgresql@16 for 5432)."""
    words = {w.lower() for w in ([req.service] if req.service else [])}
    for info in service_table.by_port(req.port):
        words.add(info.name.lower())
        words.update(n.lower() for n in info.process_names)
    out = []
    for label in labels:
        low = label.lower()
        tail = low.rsplit(".", 1)[-1].split("@")[0]
        if any(w and (w == tail or w in low.split(".")) for w in words):
            out.append(label)
    return out


MAX_CRASHED = 10  # crashed launchd jobs looked at for the port in their arguments


def _names_port(info: dict[str, str], port: int) -> bool:
    """Whether a job's arguments or environment name the port ("--port 3000", "PORT=3000", ":3000")."""
    words = (info.get("arguments", "") + " " + info.get("environment", "")).replace("=", " ").replace(":", " ").split()
    return str(port) in words


def _launchd(req: Request) -> tuple[list[LaunchdJob], list[Limitation]]:
    host = req.system
    res = host.run(["launchctl", "list"])
    if not res.ok:
        return [], [Limitation("launchd jobs could not be listed (launchctl list failed)", "run launchctl list")]
    rows = parse_launchctl_list(res.stdout)
    ident = host.run(["id", "-u"])
    uid = ident.stdout.strip() if ident.ok and ident.stdout.strip().isdigit() else None
    domain = "system" if host.is_root else f"gui/{uid}" if uid else None
    jobs = []
    related = set(_related_labels(req, [r.label for r in rows]))
    # jobs that exited with an error: kept when their arguments or environment name the port
    crashed = [r.label for r in rows if r.pid is None and r.status not in (None, 0) and r.label not in related
               and not r.label.startswith("com.apple.")][:MAX_CRASHED]
    for r in rows:
        if r.label not in related and r.label not in crashed:
            continue
        info: dict[str, str] = {}
        if domain:
            pr = host.run(["launchctl", "print", f"{domain}/{r.label}"])
            info = parse_launchctl_print(pr.stdout) if pr.ok else {}
        if r.label not in related and not _names_port(info, req.port):
            continue
        code = exit_code(info.get("last exit code"))
        jobs.append(LaunchdJob(r.label, r.pid, code if code is not None else r.status,
                               info.get("state"), info.get("program") or info.get("arguments", "").split(" ")[0] or None,
                               info.get("path"), info.get("stdout path"), info.get("stderr path"), domain))
    lims = []
    if host.is_root:
        lims.append(Limitation("as root, launchctl lists the system domain only: the logged-in user's agents "
                               "(Homebrew services) are not seen", "run portdoctor without sudo to see them"))
    return jobs, lims


def _brew(req: Request) -> list[BrewService]:
    host = req.system
    if host.which("brew") is None:
        return []
    res = host.run(["brew", "services", "list", "--json"])
    if not res.ok:
        res = host.run(["brew", "services", "list"])
    if not res.ok:
        return []
    return [BrewService(b.name, b.status, b.user, b.file, b.exit_code, b.label) for b in parse_brew_services(res.stdout)]


def _alf(host: Host) -> AppFirewall | None:
    outs = host.run_all([[SOCKETFILTERFW, "--getglobalstate"], [SOCKETFILTERFW, "--getstealthmode"],
                         [SOCKETFILTERFW, "--getblockall"], [SOCKETFILTERFW, "--listapps"]])
    if not outs[0].ok:
        return None
    st = parse_alf(outs[0].stdout, outs[1].stdout, outs[2].stdout, outs[3].stdout)
    return AppFirewall(st.enabled, st.block_all, st.stealth, st.blocked_apps, st.allowed_apps)


def _docker(host: Host) -> tuple[DesktopContainer, ...] | None:
    if host.which("docker") is None:
        return None
    # Docker Desktop that is starting or stopped makes the CLI wait: a short timeout
    res = host.run(["docker", "ps", "-a", "--no-trunc", "--format", "{{json .}}"], timeout=5.0)
    if not res.ok:
        return None
    return tuple(DesktopContainer(c.id, c.name, c.image, c.state,
                                  tuple(PortPublish(ip, hp, cp) for ip, hp, cp in c.ports))
                 for c in parse_docker_ps(res.stdout))


def collect_platform(req: Request) -> Facts:
    """pf, the Application Firewall, launchd jobs and Homebrew services, Docker Desktop."""
    host = req.system
    lims: list[Limitation] = []
    pf, plims = collect_pf(host)
    lims += plims
    jobs, jlims = _launchd(req)
    lims += jlims
    facts = BsdFacts(filters=(pf,) if pf else (), launchd=tuple(jobs), brew=tuple(_brew(req)),
                     app_firewall=_alf(host), docker=_docker(host))
    return Facts(fields={"bsd": facts}, limitations=lims)
