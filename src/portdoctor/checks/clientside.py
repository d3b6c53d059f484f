"""What the client alone can tell about a refused remote target: who sent the refusal (a router
in the path, a firewall rule on the target, or the target's TCP stack) and which ports around it
answer instead. Reads only the probe's `refusal` and `nearby` (clientview.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portdoctor.addresses import endpoint
from portdoctor.checks import facts
from portdoctor.model import Cause, Finding, Fix, NearbyPort, Severity, State
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context

CHECK = "client_view"


def _label(p: NearbyPort) -> str:
    return p.speaks or (f"{p.service}, by its port number" if p.service else "unknown service")


def _best(ports: tuple[NearbyPort, ...], port: int, wanted: str | None) -> NearbyPort:
    """The answering port a lost client most likely meant: one speaking what `port` should
    speak, then the closest."""
    def score(p: NearbyPort) -> tuple[int, int]:
        return (0 if wanted and (p.speaks or "").lower() == wanted.lower() else 1, abs(p.port - port))
    return sorted(ports, key=score)[0]


def _expected(port: int, service: str | None) -> str | None:
    from portdoctor import services

    names = [service] if service else []
    names += [s.name for s in services.by_port(port)]
    for n in names:
        n = (n or "").lower()
        if n in ("http", "nginx", "apache", "node", "python", "gunicorn", "uvicorn", "haproxy"):
            return "HTTP"
        if n in ("redis",):
            return "Redis"
        if n in ("sshd", "ssh"):
            return "SSH"
        if n in ("mysql", "mariadb"):
            return "MySQL"
    return None


def check_client_view(snap: Snapshot, ctx: Context) -> list[Finding]:
    """firewall_reject when the refusal came from a router or a firewall rule on the target;
    wrong_port when the target's own stack refused and a port nearby answers."""
    probe = ctx.probe
    if probe.state is not State.REFUSED or facts.target_is_local(snap, ctx):
        return []
    t = ctx.target
    out: list[Finding] = []
    r = probe.refusal
    near = probe.nearby
    near_ev = []
    if near is not None:
        listed = ", ".join(f"{p.port} ({_label(p)})" for p in near.open)
        near_ev.append(f"short scan of {len(near.scanned)} ports around {t.port} on {near.address} in "
                       f"{near.seconds * 1000:.0f} ms: " + (f"open: {listed}" if listed else "none open"))
    if r is not None and r.where == "this_host":
        out.append(Finding(Cause.FIREWALL_REJECT, CHECK, Severity.ERROR, r.summary[:1].upper() + r.summary[1:] + ".",
                           tuple(r.evidence), (Fix("List this host's OUTPUT rules for the port",
                                                   f"iptables -S OUTPUT; nft list ruleset | grep -n 'dport {t.port}'"),),
                           0.8))
        return out
    if r is not None and r.where in ("path", "target_firewall"):
        sender = r.sender or r.address
        if r.where == "path":
            fixes = (Fix(f"Find the rule on {sender} that rejects traffic to {endpoint(r.address, r.port)} "
                         f"(FORWARD chain or nft forward hook) and allow this client",
                         f"portdoctor diagnose {endpoint(r.address, r.port)} --from <this host's address>   # run on {sender}"),)
        else:
            fixes = (Fix(f"On {r.address}, find the rule that rejects port {r.port} for this client",
                         f"portdoctor diagnose :{r.port} --from <this host's address>   # run on {r.address}"),)
        out.append(Finding(Cause.FIREWALL_REJECT, CHECK, Severity.ERROR, r.summary[:1].upper() + r.summary[1:] + ".",
                           tuple(r.evidence) + tuple(near_ev), fixes, 0.85 if r.where == "path" else 0.8))
        return out
    if near is not None and near.open:
        best = _best(near.open, t.port, _expected(t.port, ctx.service))
        what = _label(best)
        summary = (f"Nothing on {t.port}, but {best.port} answers ({what}): the service probably listens on "
                   f"another port than the client uses.")
        ev = [f"connect to {endpoint(near.address, t.port)}: refused"] + near_ev
        if r is not None and r.where == "target":
            ev += list(r.evidence)
        fixes = (Fix(f"Point the client at port {best.port} if that is the service it means",
                     f"portdoctor probe {endpoint(t.host, best.port)}"),
                 Fix(f"Or make the service listen on {t.port} again: on the server, see what it listens on",
                     f"portdoctor diagnose :{t.port}   # run on {near.address}"))
        weight = 0.6 if (r is not None and r.where == "target") else 0.5
        out.append(Finding(Cause.WRONG_PORT, CHECK, Severity.ERROR, summary, tuple(ev), fixes, weight))
        return out
    if r is not None and r.where in ("target", "unknown") and r.packet != "none":
        ev = list(r.evidence) + near_ev
        if r.limitation:
            ev.append(f"not seen: {r.limitation}")
        out.append(Finding(Cause.UNKNOWN, CHECK, Severity.INFO, r.summary[:1].upper() + r.summary[1:] + ".",
                           tuple(ev), (), 0.2))
    return out
