"""Small host facts of macOS / FreeBSD: `ifconfig -a`, `sysctl NAME`, the Application Firewall
(`socketfilterfw`) and Docker Desktop's `docker ps --format '{{json .}}'`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IfAddress:
    """An inet / inet6 line of ifconfig."""

    ifname: str
    address: str
    prefixlen: int
    family: int
    up: bool


def parse_ifconfig(text: str) -> list[IfAddress]:
    """Interface addresses from BSD `ifconfig -a` (netmask in hex for inet, prefixlen for inet6)."""
    out: list[IfAddress] = []
    ifname, up = "", False
    for line in text.splitlines():
        if line and not line[0].isspace():
            ifname = line.split(":", 1)[0]
            flags = re.search(r"<([^>]*)>", line)
            up = bool(flags and "UP" in flags.group(1).split(","))
            continue
        w = line.split()
        if len(w) >= 2 and w[0] == "inet":
            plen = 32
            if "netmask" in w:
                mask = w[w.index("netmask") + 1]
                try:
                    plen = bin(int(mask, 16) if mask.startswith("0x") else 0).count("1") if mask.startswith("0x") \
                        else sum(bin(int(x)).count("1") for x in mask.split("."))
                except ValueError:
                    plen = 32
            out.append(IfAddress(ifname, w[1], plen, 4, up))
        elif len(w) >= 2 and w[0] == "inet6":
            plen = int(w[w.index("prefixlen") + 1]) if "prefixlen" in w else 128
            out.append(IfAddress(ifname, w[1].split("%")[0], plen, 6, up))
    return out


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl a b` output ("kern.ipc.somaxconn: 128") as name -> value."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            out[name.strip()] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class AlfState:
    """What `socketfilterfw` says: on/off, block-all, stealth, and apps set to block."""

    enabled: bool | None = None
    block_all: bool | None = None
    stealth: bool | None = None
    blocked_apps: tuple[str, ...] = ()
    allowed_apps: tuple[str, ...] = ()


def _on(text: str) -> bool | None:
    t = text.lower()
    if "state = 2" in t or "block all non-essential" in t:
        return True
    if any(x in t for x in ("disabled", " is off", "state = 0", "set to disabled")):
        return False
    if any(x in t for x in ("enabled", " is on", "state = 1", "set to enabled")):
        return True
    return None


def parse_alf(globalstate: str, stealth: str, blockall: str, listapps: str) -> AlfState:
    """The outputs of `socketfilterfw --getglobalstate / --getstealthmode / --getblockall / --listapps`."""
    blocked, allowed = [], []
    current = None
    for line in listapps.splitlines():
        m = re.match(r"\s*\d+\s*:\s*(.+?)\s*$", line)
        if m:
            current = m.group(1)
            continue
        low = line.lower()
        if current and "block incoming" in low:
            blocked.append(current)
            current = None
        elif current and "allow incoming" in low:
            allowed.append(current)
            current = None
    block_all = _on(blockall) if blockall.strip() else (True if "state = 2" in globalstate.lower() else None)
    return AlfState(_on(globalstate), block_all, _on(stealth), tuple(blocked), tuple(allowed))


@dataclass(frozen=True, slots=True)
class DockerRow:
    """A container as `docker ps --format '{{json .}}'` prints it, with its published TCP ports."""

    id: str
    name: str
    image: str
    state: str
    ports: tuple[tuple[str, int, int], ...]  # (host_ip, host_port, container_port)


_PORT = re.compile(r"^(?P<ip>\[?[0-9a-fA-F.:]*\]?):(?P<hp>\d+)(?:-\d+)?->(?P<cp>\d+)(?:-\d+)?/tcp$")


def parse_docker_ps(text: str) -> list[DockerRow]:
    """One JSON object a line (docker ps -a --format '{{json .}}'); Ports "0.0.0.0:8080->3000/tcp, ..."."""
    out = []
    for line in text.splitlines():
        if not line.strip().startswith("{"):
            continue
        try:
            it = json.loads(line)
        except ValueError:
            continue  # a line docker cut short: keep the others
        if not isinstance(it, dict):
            continue
        ports = []
        for part in str(it.get("Ports") or "").split(","):
            m = _PORT.match(part.strip())
            if m:
                ports.append((m.group("ip").strip("[]") or "0.0.0.0", int(m.group("hp")), int(m.group("cp"))))
        out.append(DockerRow(str(it.get("ID", "")), str(it.get("Names", "")), str(it.get("Image", "")),
                             str(it.get("State", "")), tuple(ports)))
    return out
