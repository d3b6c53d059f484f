"""Caddy: reverse_proxy routes from a Caddyfile (with lines) or from Caddy's JSON config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from portdoctor.proxyconf import Bind, ProxyConfig, Route, Upstream, family_of, split_hostport

_SCHEME_PORT = {"http": 80, "https": 443, "h2c": 80}


@dataclass
class _Dir:
    words: list[str]
    line: int
    text: str
    children: list[_Dir] | None = None


@dataclass
class _Tok:
    value: str
    line: int
    quoted: bool = False
    eol: bool = False  # last token of its line


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    for no, raw in enumerate(text.splitlines(), 1):
        i, n, line_toks = 0, len(raw), []
        while i < n:
            c = raw[i]
            if c.isspace():
                i += 1
            elif c == "#" and (i == 0 or raw[i - 1].isspace()):
                break
            elif c in "\"`":
                j = raw.find(c, i + 1)
                j = n if j < 0 else j
                line_toks.append(_Tok(raw[i + 1:j], no, True))
                i = j + 1
            else:
                j = i
                while j < n and not raw[j].isspace():
                    j += 1
                line_toks.append(_Tok(raw[i:j], no))
                i = j
        if line_toks:
            line_toks[-1].eol = True
        out.extend(line_toks)
    return out


def parse_tree(text: str) -> list[_Dir]:
    """The Caddyfile as nested directives (a line ending in '{' opens a block)."""
    toks = _tokens(text)
    lines = text.splitlines()
    pos = 0

    def block() -> list[_Dir]:
        nonlocal pos
        out: list[_Dir] = []
        while pos < len(toks):
            t = toks[pos]
            if t.value == "}" and not t.quoted:
                pos += 1
                return out
            words: list[str] = []
            line = t.line
            opened = False
            while pos < len(toks):
                t = toks[pos]
                pos += 1
                if t.value == "{" and not t.quoted and t.eol:
                    opened = True
                    break
                words.append(t.value)
                if t.eol:
                    break
            d = _Dir(words, line, lines[line - 1].strip())
            if opened:
                d.children = block()
            out.append(d)
        return out

    return block()


def _site_binds(addresses: list[str], bind_hosts: list[str], http_port: int, https_port: int,
                path: str, d: _Dir) -> list[Bind]:
    out: list[Bind] = []
    for addr in addresses:
        addr = addr.rstrip(",")
        if not addr:
            continue
        scheme, sep, rest = addr.partition("://")
        if not sep:
            scheme, rest = "", addr
        rest = rest.split("/", 1)[0]
        host, port = split_hostport(rest, None)
        if port is None:
            port = http_port if scheme == "http" else https_port
        for bh in bind_hosts or ["0.0.0.0"]:
            out.append(Bind(bh, port, path, d.line, d.text, family_of(bh)))
    return out


def _upstream(spec: str, path: str, d: _Dir, directive: str) -> Upstream:
    if spec.startswith("unix/"):
        return Upstream("", None, path, d.line, d.text, directive, unix=spec[5:])
    scheme, sep, rest = spec.partition("://")
    if not sep:
        scheme, rest = "", spec
    host, port = split_hostport(rest.split("/", 1)[0], _SCHEME_PORT.get(scheme, 80))
    return Upstream(host or "localhost", port, path, d.line, d.text, directive)


def _proxies(dirs: list[_Dir], path: str, snippets: dict[str, list[_Dir]],
             depth: int = 0) -> list[Upstream]:
    out: list[Upstream] = []
    for d in dirs:
        if not d.words:
            continue
        if d.words[0] == "import" and len(d.words) > 1 and d.words[1] in snippets and depth < 10:
            out.extend(_proxies(snippets[d.words[1]], path, snippets, depth + 1))
        elif d.words[0] == "reverse_proxy":
            args = d.words[1:]
            if args and (args[0].startswith(("@", "/")) or args[0] == "*"):
                args = args[1:]  # a matcher
            out.extend(_upstream(a, path, d, "reverse_proxy") for a in args)
            for sub in d.children or []:
                if sub.words and sub.words[0] == "to":
                    out.extend(_upstream(a, path, sub, "to") for a in sub.words[1:])
        elif d.children is not None:
            out.extend(_proxies(d.children, path, snippets, depth + 1))
    return out


def parse_caddyfile(text: str, path: str = "Caddyfile") -> ProxyConfig:
    """Parse a Caddyfile's site blocks and their reverse_proxy directives."""
    top = parse_tree(text)
    http_port, https_port = 80, 443
    snippets: dict[str, list[_Dir]] = {}
    sites: list[_Dir] = []
    for i, d in enumerate(top):
        if not d.words and d.children is not None and i == 0:  # global options
            for opt in d.children:
                if len(opt.words) == 2 and opt.words[1].isdigit():
                    if opt.words[0] == "http_port":
                        http_port = int(opt.words[1])
                    elif opt.words[0] == "https_port":
                        https_port = int(opt.words[1])
        elif d.words and d.words[0].startswith("(") and d.words[0].endswith(")"):
            snippets[d.words[0][1:-1]] = d.children or []
        elif d.words:
            sites.append(d)
    if sites and all(d.children is None for d in sites):  # a single site without braces
        first = sites[0]
        sites = [_Dir(first.words, first.line, first.text, sites[1:])]
    routes: list[Route] = []
    for site in sites:
        body = site.children or []
        bind_hosts = [w for d in body if d.words and d.words[0] == "bind" for w in d.words[1:]]
        binds = _site_binds(site.words, bind_hosts, http_port, https_port, path, site)
        ups = _proxies(body, path, snippets)
        routes.append(Route("site " + " ".join(site.words), tuple(binds), tuple(ups), path, site.line))
    return ProxyConfig("caddy", path, tuple(routes), (path,))


def _short(obj: Any, limit: int = 200) -> str:
    text = json.dumps(obj, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


def _walk_handlers(routes: Any, where: str, problems: list[str], depth: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """(JSON path, handler) of every reverse_proxy handler under `routes`, subroutes followed;
    a route or handler of the wrong shape is noted in `problems` and passed over."""
    out: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(routes, list):
        problems.append(f"could not read {where}/routes: {_short(routes)} is not a list")
        return out
    for i, r in enumerate(routes):
        handlers = (r.get("handle") or []) if isinstance(r, dict) else None
        if not isinstance(handlers, list):
            problems.append(f"could not read {where}/routes/{i}: {_short(r)}")
            continue
        for j, h in enumerate(handlers):
            here = f"{where}/routes/{i}/handle/{j}"
            if not isinstance(h, dict):
                problems.append(f"could not read {here}: {_short(h)} is not an object")
            elif h.get("handler") == "reverse_proxy":
                out.append((here, h))
            elif h.get("handler") == "subroute":
                if depth >= 20:
                    problems.append(f"could not read {here}: subroutes nested too deep")
                else:
                    out.extend(_walk_handlers(h.get("routes") or [], here, problems, depth + 1))
    return out


def _server(name: str, srv: dict[str, Any], source: str, problems: list[str]) -> Route:
    """One server of the http app as a route: its listen addresses and reverse_proxy upstreams."""
    binds: list[Bind] = []
    listen = srv.get("listen") or []
    if not isinstance(listen, list):
        problems.append(f"could not read apps.http.servers.{name}.listen: {_short(listen)} is not a list")
        listen = []
    for spec in listen:
        if not isinstance(spec, str):
            problems.append(f"could not read apps.http.servers.{name}.listen: {_short(spec)}")
            continue
        spec = spec.split("/", 1)[1] if spec.startswith(("tcp/", "tcp4/", "tcp6/")) else spec
        host, port = split_hostport(spec, None)
        if port is None:
            continue
        host = host or "0.0.0.0"
        binds.append(Bind(host, port, source, None, f"apps.http.servers.{name}.listen: {spec}",
                          family_of(host)))
    ups: list[Upstream] = []
    for where, h in _walk_handlers(srv.get("routes") or [], f"/apps/http/servers/{name}", problems):
        upstreams = h.get("upstreams") or []
        if not isinstance(upstreams, list):
            problems.append(f"could not read {where}/upstreams: {_short(upstreams)} is not a list")
            continue
        for k, up in enumerate(upstreams):
            if not isinstance(up, dict):
                problems.append(f"could not read {where}/upstreams/{k}: {_short(up)} is not an object")
                continue
            dial = str(up.get("dial", ""))
            text = f"{where}/upstreams/{k}: dial {dial}"
            if dial.startswith("unix/"):
                ups.append(Upstream("", None, source, None, text, "dial", unix=dial[5:]))
                continue
            host, port = split_hostport(dial, 80)
            ups.append(Upstream(host or "localhost", port, source, None, text, "dial"))
    return Route(f"server {name}", tuple(binds), tuple(ups), source, None)


def parse_json(data: dict[str, Any] | str, source: str = "caddy JSON") -> ProxyConfig:
    """Parse Caddy's native JSON config (from its admin API /config/ or `caddy adapt`).

    A server, route, handler, listen address or upstream of an unexpected shape is noted in
    `problems` ("could not read route 2 (server srv1): ...") and the rest is kept.
    """
    problems: list[str] = []
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            return ProxyConfig("caddy", source, (), (source,), problems=(f"could not read {source}: not JSON ({exc})",))
    servers: Any = data or {}
    path = ""
    for key in ("apps", "http", "servers", ""):
        if not isinstance(servers, dict):
            problems.append(f"could not read {path or source}: {_short(servers)} is not an object")
            servers = {}
            break
        if key:
            servers = servers.get(key) or {}
            path = f"{path}.{key}" if path else key
    routes: list[Route] = []
    for n, (name, srv) in enumerate(servers.items(), 1):
        if not isinstance(srv, dict):
            problems.append(f"could not read route {n} (server {name}): {_short(srv)} is not an object")
            continue
        routes.append(_server(name, srv, source, problems))
    return ProxyConfig("caddy", source, tuple(routes), (source,), problems=tuple(problems))
