"""Service managers of macOS and FreeBSD: launchd (`launchctl list` / `print`), Homebrew services
(`brew services list --json`, or its table), rc.d (`service -e`, `service NAME status`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LaunchctlRow:
    """One line of `launchctl list`: pid (None: not running), last exit status, label."""

    label: str
    pid: int | None
    status: int | None


def parse_launchctl_list(text: str) -> list[LaunchctlRow]:
    """`launchctl list` ("PID<TAB>Status<TAB>Label"; "-" for no pid)."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) != 3 or parts[0] == "PID":
            continue
        pid = int(parts[0]) if parts[0].isdigit() else None
        status = int(parts[1]) if re.fullmatch(r"-?\d+", parts[1]) else None
        out.append(LaunchctlRow(parts[2].strip(), pid, status))
    return out


def parse_launchctl_print(text: str) -> dict[str, str]:
    """The top-level `key = value` lines of `launchctl print DOMAIN/LABEL` (state, program, pid,
    last exit code, stdout path, stderr path, path, runs, ...); the `arguments` and
    `environment` blocks are joined into one line each ("-D /var/db", "PORT=3000 HOME=/x"), other
    nested blocks are skipped."""
    out: dict[str, str] = {}
    depth = 0
    block: str | None = None
    items: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if s.endswith("{"):
            depth += 1
            if depth == 2:
                block = s[:-1].strip().rstrip("=").strip()
                items = []
            continue
        if s == "}":
            if depth == 2 and block in ("arguments", "environment"):
                out.setdefault(block, " ".join(items))
            depth -= 1
            block = None if depth < 2 else block
            continue
        if depth == 2 and block in ("arguments", "environment"):
            items.append(s.replace(" => ", "="))
            continue
        if depth != 1 or " = " not in s:
            continue
        key, _, value = s.partition(" = ")
        out.setdefault(key.strip(), value.strip())
    return out


def exit_code(text: str | None) -> int | None:
    """The number of a launchd "last exit code" ("1", "78: EX_CONFIG", "(never exited)" -> None)."""
    m = re.match(r"\s*(-?\d+)", text or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class BrewRow:
    """One service of `brew services list`."""

    name: str
    status: str  # started, stopped, none, error, scheduled, unknown, other
    user: str | None = None
    file: str | None = None
    exit_code: int | None = None
    label: str | None = None  # homebrew.mxcl.NAME


def parse_brew_services(text: str) -> list[BrewRow]:
    """`brew services list --json` (a JSON list) or its table ("Name Status User File";
    an `error` status is followed by the exit code)."""
    s = text.strip()
    if s.startswith("["):
        out = []
        try:
            items = json.loads(s)
        except ValueError:
            return []  # a truncated answer: no services rather than a failed collector
        for it in items if isinstance(items, list) else []:
            if not isinstance(it, dict):
                continue
            code = it.get("exit_code")
            out.append(BrewRow(str(it.get("name")), str(it.get("status") or "unknown"), it.get("user"),
                               it.get("file"), int(code) if isinstance(code, int) else None,
                               it.get("service_name") or f"homebrew.mxcl.{it.get('name')}"))
        return out
    out = []
    for line in s.splitlines():
        w = line.split()
        if len(w) < 2 or w[0] == "Name":
            continue
        name, status, rest = w[0], w[1], w[2:]
        code = None
        if status == "error" and rest and re.fullmatch(r"-?\d+", rest[0]):
            code, rest = int(rest[0]), rest[1:]
        out.append(BrewRow(name, status, rest[0] if rest else None, " ".join(rest[1:]) or None, code,
                           f"homebrew.mxcl.{name}"))
    return out


def parse_service_enabled(text: str) -> list[str]:
    """rc.d script names from FreeBSD `service -e` ("/usr/local/etc/rc.d/nginx" -> "nginx")."""
    return [line.strip().rsplit("/", 1)[-1] for line in text.splitlines() if line.strip().startswith("/")]


def parse_service_listing(text: str) -> list[str]:
    """Script names from FreeBSD `service -l` (one name a line)."""
    return [w for w in (line.strip() for line in text.splitlines()) if w and "/" not in w and " " not in w]


def needs_onestatus(text: str) -> bool:
    """`service NAME status` refused because NAME_enable is not set ("Cannot 'status' nginx. Set
    nginx_enable to YES in /etc/rc.conf or use 'onestatus' instead of 'status'.")."""
    return "onestatus" in text


def parse_service_status(text: str) -> tuple[bool | None, int | None]:
    """(running, pid) from `service NAME status` ("nginx is running as pid 812." /
    "nginx is not running.")."""
    for line in text.splitlines():
        m = re.search(r"is running as pid\s+(\d+)", line)
        if m:
            return True, int(m.group(1))
        if "is not running" in line:
            return False, None
    return None, None
