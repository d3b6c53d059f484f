"""FreeBSD collectors: listeners and owners from `sockstat` (libxo JSON where the release has
it, its table otherwise), accept queues from `netstat -Lan`, rc.d services, pf and ipfw.
Everything runs through the Host, so a recorded FreeBSD host replays it anywhere.
"""

from __future__ import annotations

from portdoctor import services as service_table
from portdoctor.bsdtools.services import (
    needs_onestatus, parse_service_enabled, parse_service_listing, parse_service_status,
)
from portdoctor.bsdtools.sockets import SocketRow, parse_sockstat, parse_sockstat_json
from portdoctor.collectors import Facts, Request
from portdoctor.collectors.bsd import HOW_ROOT, collect_pf, listen_queues, merge_listeners, processes
from portdoctor.firewall import ipfw as ipfwparse
from portdoctor.host import Host
from portdoctor.model import Limitation
from portdoctor.platformfacts import BsdFacts, PacketFilter, RcService


def sockstat_sockets(host: Host) -> tuple[list[SocketRow], list[Limitation]]:
    """Listening TCP sockets with owners: `sockstat --libxo json -46lq`, else `sockstat -46lq`."""
    res = host.run(["sockstat", "--libxo", "json", "-46lq"])
    if res.ok and res.stdout.lstrip().startswith("{"):
        try:
            return parse_sockstat_json(res.stdout), []
        except ValueError:
            pass
    res = host.run(["sockstat", "-46lq"])
    if not res.ok:
        res = host.run(["sockstat", "-46l"])
    if not res.ok:
        return [], [Limitation("sockstat failed: listeners are not known", "run sockstat -46l")]
    return parse_sockstat(res.stdout), []


def collect_listeners(req: Request) -> Facts:
    """Every TCP listener with owners (sockstat) and accept queues (netstat -Lan)."""
    host = req.system
    rows, lims = sockstat_sockets(host)
    queues, qlims = listen_queues(host)
    lims += qlims
    if not host.is_root:
        lims.append(Limitation("without root, sockstat may not name other users' processes "
                               "(security.bsd.see_other_uids)", HOW_ROOT))
    listeners = merge_listeners(rows, queues)
    return Facts(fields={"listeners": listeners, "processes": processes(host, rows)}, limitations=lims)


def _rcd(req: Request) -> list[RcService]:
    """rc.d scripts named like the port's usual servers (or --service): enabled or not, running or not."""
    host = req.system
    res = host.run(["service", "-e"])
    enabled = parse_service_enabled(res.stdout) if res.ok else []
    listed = host.run(["service", "-l"])
    available = parse_service_listing(listed.stdout) if listed.ok else []
    words = {req.service.lower()} if req.service else set()
    for info in service_table.by_port(req.port):
        words.add(info.name.lower())
        words.update(n.lower() for n in info.process_names)
    names = sorted({n for n in set(enabled) | set(available) if n.lower() in words}
                   | ({req.service} if req.service else set()))
    out = []
    for name in names:
        st = host.run(["service", name, "status"])
        text = st.stdout + st.stderr
        if needs_onestatus(text):
            st = host.run(["service", name, "onestatus"])
            text = st.stdout + st.stderr
        if st.missing or not text.strip():
            continue
        running, pid = parse_service_status(text)
        out.append(RcService(name, name in enabled, running, pid, text.strip().splitlines()[0]))
    return out


def _ipfw(host: Host) -> tuple[PacketFilter | None, list[Limitation]]:
    if host.which("ipfw") is None:
        return None, []
    res = host.run(["ipfw", "-a", "list"])
    if not res.ok:
        text = (res.stderr or "").strip()
        if "not loaded" in text.lower() or "protocol not available" in text.lower():
            return None, []
        if not host.is_root:
            return None, [Limitation("ipfw rules were not read (ipfw list needs root)", "run portdoctor with sudo")]
        return None, [Limitation(f"ipfw rules could not be read ({text[:120]})", "run `sudo ipfw -a list`")]
    rules = ipfwparse.parse_rules(res.stdout)
    return PacketFilter("ipfw", True, tuple(rules), {}, ipfwparse.default_verdict(rules), "", "ipfw -a list"), []


def collect_platform(req: Request) -> Facts:
    """pf, ipfw and the rc.d services related to the port."""
    host = req.system
    lims: list[Limitation] = []
    filters = []
    pf, plims = collect_pf(host)
    lims += plims
    if pf is not None:
        filters.append(pf)
    fw, flims = _ipfw(host)
    lims += flims
    if fw is not None:
        filters.append(fw)
    return Facts(fields={"bsd": BsdFacts(filters=tuple(filters), rcd=tuple(_rcd(req)))}, limitations=lims)
