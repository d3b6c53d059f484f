"""HAProxy: parse haproxy.cfg into routes (frontend / listen -> backends -> servers)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from portdoctor.proxyconf import Bind, ProxyConfig, Route, Upstream

_SECTIONS = {"global", "defaults", "frontend", "backend", "listen", "peers", "resolvers",
             "userlist", "mailers", "program", "http-errors", "cache", "ring", "log-forward"}


@dataclass
class _Line:
    words: list[str]
    file: str
    line: int
    text: str


@dataclass
class _Section:
    kind: str
    name: str
    file: str
    line: int
    lines: list[_Line] = field(default_factory=list)


def _words(text: str) -> list[str]:
    """Split a config line into words, dropping a trailing comment (quotes respected)."""
    lex = shlex.shlex(text, posix=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        return list(lex)
    except ValueError:  # unbalanced quote
        return text.split("#", 1)[0].split()


def sections(text: str, path: str) -> list[_Section]:
    """The sections of one haproxy.cfg, each with its lines."""
    out: list[_Section] = []
    current: _Section | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        words = _words(raw)
        if not words:
            continue
        if words[0] in _SECTIONS:
            current = _Section(words[0], words[1] if len(words) > 1 else "", path, no)
            out.append(current)
        elif current is not None:
            current.lines.append(_Line(words, path, no, raw.strip()))
    return out


def parse_address(spec: str) -> list[tuple[str, int | None, int]]:
    """One HAProxy address ("*:80", ":::80", "ipv6@::1:80", "1.2.3.4:80-82") -> (host, port, family).

    >>> parse_address("ipv4@127.0.0.1:8404")
    [('127.0.0.1', 8404, 4)]
    """
    fam = 0
    for prefix, f in (("ipv4@", 4), ("ipv6@", 6), ("tcp4@", 4), ("tcp6@", 6), ("tcp@", 0)):
        if spec.startswith(prefix):
            spec, fam = spec[len(prefix):], f
    if "@" in spec or spec.startswith("/"):
        return []  # unix@, abns@, fd@, sockpair@ or a unix path
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port_s = rest[1:]
    elif ":" in spec:
        host, _, port_s = spec.rpartition(":")
    else:
        host, port_s = spec, ""
    if host in ("", "*"):
        host = "::" if fam == 6 or host == "" and spec.startswith(":::") else "0.0.0.0"
    if host == "::" and spec.startswith(":::"):
        fam = 6
    family = fam or (6 if ":" in host else 4)
    if host == "localhost":
        host = "127.0.0.1"
    if "-" in port_s:
        lo, _, hi = port_s.partition("-")
        if lo.isdigit() and hi.isdigit():
            return [(host, p, family) for p in range(int(lo), min(int(hi), int(lo) + 31) + 1)]
    return [(host, int(port_s) if port_s.isdigit() else None, family)]


def _binds(sec: _Section) -> list[Bind]:
    out: list[Bind] = []
    for ln in sec.lines:
        if ln.words[0] != "bind" or len(ln.words) < 2:
            continue
        v6only = True if "v6only" in ln.words else (False if "v4v6" in ln.words else None)
        for spec in ln.words[1].split(","):
            for host, port, fam in parse_address(spec):
                if port is not None:
                    if fam == 6 and v6only is None:
                        v6only = False  # HAProxy binds :: dual-stack unless told v6only
                    out.append(Bind(host, port, ln.file, ln.line, ln.text, fam, v6only if fam == 6 else None))
    return out


def _servers(sec: _Section, group: str, via: _Line | None) -> list[Upstream]:
    out: list[Upstream] = []
    for ln in sec.lines:
        if ln.words[0] != "server" or len(ln.words) < 3:
            continue
        if "disabled" in ln.words[3:]:  # in maintenance: configured, takes no traffic
            out.append(Upstream(ln.words[2], None, ln.file, ln.line, ln.text, "server", group, disabled=True,
                                via_file=via.file if via else None, via_line=via.line if via else None,
                                via_text=via.text if via else None))
            continue
        addrs = parse_address(ln.words[2])
        if not addrs:
            out.append(Upstream("", None, ln.file, ln.line, ln.text, "server", group, unix=ln.words[2]))
            continue
        host, port, _fam = addrs[0]
        if host == "0.0.0.0":
            host = "127.0.0.1"
        out.append(Upstream(host, port, ln.file, ln.line, ln.text, "server", group,
                            via_file=via.file if via else None, via_line=via.line if via else None,
                            via_text=via.text if via else None))
    return out


def _mode(sec: _Section, default: str) -> str:
    for ln in sec.lines:
        if ln.words[0] == "mode" and len(ln.words) > 1:
            default = ln.words[1]
    return default


def parse(text: str, path: str = "haproxy.cfg") -> ProxyConfig:
    """Parse one haproxy.cfg."""
    return parse_many([(path, text)])


def parse_many(files: list[tuple[str, str]]) -> ProxyConfig:
    """Parse several files loaded together (haproxy -f A -f B, or a directory)."""
    secs: list[_Section] = []
    for path, text in files:
        secs.extend(sections(text, path))
    backends = {s.name: s for s in secs if s.kind in ("backend", "listen")}
    routes: list[Route] = []
    problems: list[str] = []
    default_mode = "tcp"  # HAProxy's own default
    for sec in secs:
        if sec.kind == "defaults":
            default_mode = _mode(sec, default_mode)
        if sec.kind not in ("frontend", "listen"):
            continue
        binds = _binds(sec)
        ups: list[Upstream] = _servers(sec, sec.name, None) if sec.kind == "listen" else []
        for ln in sec.lines:
            if ln.words[0] in ("default_backend", "use_backend") and len(ln.words) > 1:
                name = ln.words[1]
                if "%[" in name:
                    problems.append(f"{ln.file}:{ln.line}: dynamic backend {name}; not followed")
                elif name in backends:
                    ups.extend(_servers(backends[name], name, ln))
                else:
                    problems.append(f"{ln.file}:{ln.line}: backend {name} is not defined")
        routes.append(Route(f"{sec.kind} {sec.name}", tuple(binds), tuple(ups), sec.file, sec.line,
                            None, "http" if _mode(sec, default_mode) == "http" else "tcp"))
    main = files[0][0] if files else ""
    return ProxyConfig("haproxy", main, tuple(routes), tuple(p for p, _ in files), (), tuple(problems))
