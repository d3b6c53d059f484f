"""Typed facts of macOS and FreeBSD hosts that Linux has no counterpart for: pf and ipfw
rulesets, launchd jobs, Homebrew services, rc.d services, the Application Firewall, Docker
Desktop's containers. A Snapshot holds them in `bsd` (None on Linux). Collectors fill them in
(portdoctor.collectors.darwin / freebsd); checks decide (portdoctor.checks.bsd).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portdoctor.firewall.bsdfilter import FilterRule
from portdoctor.hostfacts import PortPublish


@dataclass(frozen=True, slots=True)
class PacketFilter:
    """One packet filter's ruleset: pf (last match wins unless quick) or ipfw (first match)."""

    tool: str  # pf, ipfw
    enabled: bool | None = None
    rules: tuple[FilterRule, ...] = ()
    tables: dict[str, tuple[str, ...]] = field(default_factory=dict)  # pf tables: name -> addresses
    default: str = "pass"  # the verdict when no rule matches (pf: pass; ipfw: rule 65535)
    block_policy: str = "drop"  # pf's `set block-policy`: what a plain `block` does
    source: str = ""  # the command that printed the rules
    skip: tuple[str, ...] = ()  # pf's `set skip on IFACE`: interfaces it does not filter


@dataclass(frozen=True, slots=True)
class LaunchdJob:
    """A launchd job (`launchctl list` + `launchctl print`)."""

    label: str
    pid: int | None = None
    last_exit: int | None = None
    state: str | None = None  # running, not running, spawn scheduled, ...
    program: str | None = None
    path: str | None = None  # its plist
    stdout_path: str | None = None
    stderr_path: str | None = None
    domain: str | None = None  # gui/501, system


@dataclass(frozen=True, slots=True)
class BrewService:
    """A Homebrew service (`brew services list`): Homebrew's wrapper around a launchd job."""

    name: str
    status: str
    user: str | None = None
    file: str | None = None
    exit_code: int | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class RcService:
    """A FreeBSD rc.d service: enabled in rc.conf (`service -e`), running (`service NAME status`)."""

    name: str
    enabled: bool = False
    running: bool | None = None
    pid: int | None = None
    status: str = ""  # the status line as printed


@dataclass(frozen=True, slots=True)
class AppFirewall:
    """The macOS Application Firewall (socketfilterfw)."""

    enabled: bool | None = None
    block_all: bool | None = None
    stealth: bool | None = None
    blocked_apps: tuple[str, ...] = ()
    allowed_apps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DesktopContainer:
    """A container of Docker Desktop (`docker ps -a`), with its published ports."""

    id: str
    name: str
    image: str = ""
    state: str = ""
    ports: tuple[PortPublish, ...] = ()


@dataclass(frozen=True, slots=True)
class BsdFacts:
    """What the macOS / FreeBSD collectors saw beyond listeners, processes and addresses."""

    filters: tuple[PacketFilter, ...] = ()
    launchd: tuple[LaunchdJob, ...] = ()
    brew: tuple[BrewService, ...] = ()
    rcd: tuple[RcService, ...] = ()
    app_firewall: AppFirewall | None = None
    docker: tuple[DesktopContainer, ...] | None = None  # None: no docker CLI answered
