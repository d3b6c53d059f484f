"""The port map of this host (`portdoctor ports`): every listening socket, who owns it, its bind
scope, whether clients from outside can reach it, and what leads to it (published container
ports, DNAT rules, proxy routes). `build` is pure: it only arranges a Snapshot.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from portdoctor.checks.proxy import process_name
from portdoctor.model import Listener, Snapshot

SCHEMA = "portdoctor.ports/1"
_HOLDERS = ("conmon", "docker-proxy", "rootlessport", "rootlessport-child", "slirp4netns", "pasta")


def _ep(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _scope(address: str) -> str:
    return Listener(address, 0, 6 if ":" in address else 4).scope.value


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return addr == "localhost"


def _accepts(address: str, v6only: bool | None, dst: str) -> bool:
    fam = 6 if ":" in dst else 4
    if address == dst:
        return True
    if address == "0.0.0.0":
        return fam == 4
    if address == "::":
        return fam == 6 or v6only is not True
    return False


def _containers(snap: Snapshot) -> list[dict[str, Any]]:
    """The containers of this network namespace (other namespaces' ones are not this host's ports)."""
    from portdoctor.checks.mapping import container_here

    return [c for c in (snap.extra.get("containers") or {}).get("containers", []) if container_here(snap, c)]


def _container_name(snap: Snapshot, cid: str | None) -> str | None:
    if not cid:
        return None
    for c in _containers(snap):
        if c.get("id") and (cid.startswith(c["id"]) or c["id"].startswith(cid[:12])):
            return c.get("name") or c["id"]
    return cid[:12]


def _publisher(snap: Snapshot, port: int) -> str | None:
    for c in _containers(snap):
        if any(p.get("host_port") == port for p in c.get("ports") or []):
            return c.get("name") or c.get("id")
    return None


def _processes(snap: Snapshot, ln: Listener) -> list[dict[str, Any]]:
    out = []
    for pid in ln.pids:
        p = snap.processes.get(pid)
        if p is None:
            out.append({"pid": pid, "name": None, "user": None, "unit": None, "container": None})
            continue
        container = _container_name(snap, p.container)
        if container is None and p.name in _HOLDERS:
            from portdoctor.checks.mapping import holder_container

            held = holder_container(snap, ln)  # the engine's process holding a published port
            container = (held.get("name") or held.get("id")) if held else _publisher(snap, ln.port)
        out.append({"pid": pid, "name": process_name(snap, pid), "user": p.user, "unit": p.unit,
                    "container": container})
    return out


class _Exposure:
    """Would a client from elsewhere reach address:port through this host's firewall?"""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.ev = None
        self.has_fw = "firewall" in snap.extra
        self.cache: dict[tuple[str, int], bool | None] = {}
        if self.has_fw:
            try:
                from portdoctor.checks.firewall import evaluator

                self.ev = evaluator(snap)
            except Exception:  # an evaluator bug must not take the port map down
                self.ev = None
                self.has_fw = False
        self.external = [a for a in snap.addresses if not _is_loopback(a.address)
                         and not a.address.startswith("fe80")]

    def _flow(self, dst: str, port: int, iif: str) -> bool | None:
        key = (dst, port)
        if key in self.cache:
            return self.cache[key]
        result: bool | None
        if self.ev is None:
            result = True if self.has_fw else None
        else:
            from portdoctor.firewall.evaluate import Flow

            outcomes = self.ev.evaluate(Flow(dst=dst, dport=port, src=None, iif=iif, not_lo=True)).outcomes
            verdicts = {o.verdict for o in outcomes}
            if "accept" in verdicts:  # some client from elsewhere gets through
                result = True
            elif verdicts and verdicts <= {"drop", "reject"}:
                result = False
            else:
                result = None
        self.cache[key] = result
        return result

    def of(self, address: str, port: int, v6only: bool | None) -> bool | None:
        if _is_loopback(address) or address.startswith("::ffff:127."):
            return False
        dests = [a for a in self.external if _accepts(address, v6only, a.address)]
        if not dests:
            return False if self.snap.addresses else None
        results = [self._flow(a.address, port, a.ifname) for a in dests]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False


def _dnats(snap: Snapshot) -> list[dict[str, Any]]:
    """Hand-made and engine DNAT / REDIRECT rules: {from_addr, from_port, to_addr, to_port, text}."""
    fw = snap.extra.get("firewall") or {}
    out: list[dict[str, Any]] = []
    for table in (fw.get("ruleset") or {}).get("tables", []):
        for chain in table.get("chains", []):
            for rule in chain.get("rules", []):
                act = rule.get("action") or {}
                if act.get("kind") not in ("dnat", "redirect"):
                    continue
                dports = [v for m in rule.get("matches", []) if m.get("kind") == "dport" and not m.get("neg")
                          for v in m.get("values", [])]
                daddrs = [v for m in rule.get("matches", []) if m.get("kind") == "daddr" and not m.get("neg")
                          for v in m.get("values", [])]
                for dp in dports or [None]:
                    if dp is None or not str(dp).isdigit():
                        continue
                    to_port = str(act.get("port") or dp).split("-")[0].split(":")[0]
                    out.append({"from_addr": daddrs[0] if daddrs else "*", "from_port": int(dp),
                                "to_addr": act.get("addr") or ("local" if act.get("kind") == "redirect" else None),
                                "to_port": int(to_port) if to_port.isdigit() else int(dp),
                                "text": rule.get("text", "")})
    return out


def build(snap: Snapshot) -> dict[str, Any]:
    """The `portdoctor.ports/1` document of a snapshot."""
    exposure = _Exposure(snap)
    entries: list[dict[str, Any]] = []
    seen: set[tuple[str, int, int]] = set()
    for ln in sorted(snap.listeners, key=lambda x: (x.port, x.family, x.address)):
        key = (ln.address, ln.port, ln.family)
        if key in seen:
            continue
        seen.add(key)
        entries.append({"address": ln.address, "port": ln.port, "family": ln.family, "scope": ln.scope.value,
                        "v6only": ln.v6only, "processes": _processes(snap, ln),
                        "exposed": exposure.of(ln.address, ln.port, ln.v6only), "via": []})
    # listeners inside containers, reached through published ports
    for c in _containers(snap):
        if c.get("same_netns") or c.get("state") != "running":
            continue
        name = c.get("name") or c.get("id")
        engine = (snap.extra.get("containers") or {}).get("engine") or "container"
        for x in c.get("listeners") or []:
            via = []
            exposed: bool | None = False
            for p in c.get("ports") or []:
                if p.get("container_port") == x["port"] and p.get("proto", "tcp") == "tcp":
                    hip = p.get("host_ip") or "0.0.0.0"
                    via.append({"kind": "publish", "from": _ep(hip, p["host_port"]),
                                "detail": f"{engine} container {name}: {_ep(hip, p['host_port'])}->{x['port']}/tcp"
                                          + (" (the app listens on the container's loopback: unreachable)"
                                             if _is_loopback(x["address"]) else "")})
                    if not _is_loopback(x["address"]):
                        e = exposure.of(hip, p["host_port"], None)
                        exposed = e if exposed is False else (exposed or e)
            if _is_loopback(x["address"]):
                exposed = False
            cmd = c.get("cmd") or []
            entries.append({"address": x["address"], "port": x["port"], "family": x.get("family", 4),
                            "scope": _scope(x["address"]), "v6only": None,
                            "processes": [{"pid": c.get("pid"), "name": os.path.basename(cmd[0]) if cmd else None,
                                           "user": None, "unit": None, "container": name}],
                            "exposed": exposed, "via": via, "container": name,
                            "container_addresses": list(c.get("addresses") or [])})
    entries.sort(key=lambda e: (e["port"], bool(e.get("container")), e["family"], e["address"]))
    _add_proxy_routes(snap, entries)
    _add_dnats(snap, entries)
    return {"schema": SCHEMA, "host": snap.hostname, "listeners": entries,
            "limitations": [str(x) for x in snap.limitations]}


def _local(snap: Snapshot, host: str) -> bool:
    return _is_loopback(host) or any(a.address == host for a in snap.addresses)


def _find(snap: Snapshot, entries: list[dict[str, Any]], host: str, port: int) -> dict[str, Any] | None:
    """The listener entry that a connection to host:port reaches (a container's, by address)."""
    for e in entries:
        if e.get("container"):
            if host in e.get("container_addresses", []) and e["port"] == port and not _is_loopback(e["address"]):
                return e
        elif e["port"] == port and _local(snap, host) and _accepts(e["address"], e["v6only"], host):
            return e
    return None


def _add_proxy_routes(snap: Snapshot, entries: list[dict[str, Any]]) -> None:
    for proxy in (snap.extra.get("proxies") or {}).get("proxies", []):
        kind = proxy.get("kind")
        for route in (proxy.get("config") or {}).get("routes", []):
            froms = [_ep(b["address"], b["port"]) for b in route.get("binds", [])]
            for up in route.get("upstreams", []):
                host = up.get("host") or ""
                host = "127.0.0.1" if host in ("localhost", "") else host
                if up.get("unix") or not up.get("port"):
                    continue
                e = _find(snap, entries, host, up["port"])
                if e is None:
                    continue
                where = f"{up.get('file')}:{up.get('line')}" if up.get("line") else str(up.get("file"))
                loc = f" location {route['location']}" if route.get("location") else ""
                for f in froms:
                    item = {"kind": "proxy", "from": f, "detail": f"{kind}{loc}: {where}: {up.get('text')}"}
                    if item not in e["via"]:
                        e["via"].append(item)


def _add_dnats(snap: Snapshot, entries: list[dict[str, Any]]) -> None:
    for d in _dnats(snap):
        to = d["to_addr"]
        targets = [e for e in entries if e["port"] == d["to_port"] and not e.get("container")] if to in (None, "local") \
            else [e for e in [_find(snap, entries, to, d["to_port"])] if e is not None]
        for e in targets:
            frm = f"{d['from_addr']}:{d['from_port']}"
            if any(v["kind"] == "publish" and v["from"].endswith(f":{d['from_port']}") for v in e["via"]):
                continue  # the engine's own DNAT for a published port: already listed
            item = {"kind": "dnat", "from": frm, "detail": d["text"]}
            if item not in e["via"]:
                e["via"].append(item)


def port_map() -> dict[str, Any]:
    """Collect a full snapshot of this host and build its port map."""
    from portdoctor.collectors import Request, collect

    return build(collect(Request(port=0)))
