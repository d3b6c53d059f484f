"""nginx: parse `nginx -T` output (every configuration file, as nginx read it) into routes.

`nginx -T` prints each file after a line `# configuration file PATH:`; `include` directives
are resolved against those files, so the result is the effective configuration with the real
file and line of every directive.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from dataclasses import dataclass, field

from portdoctor.proxyconf import Bind, ProxyConfig, Route, Upstream, family_of, split_hostport

_FILE_HEADER = re.compile(r"^# configuration file (.+):$")
_PASS_DIRECTIVES = ("proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass",
                    "memcached_pass")
_SCHEME_PORT = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443}
DEFAULT_ERROR_LOG = "/var/log/nginx/error.log"


@dataclass
class Node:
    """One directive: name, arguments, where it is, and its block (None for a simple one)."""

    name: str
    args: list[str]
    file: str
    line: int
    children: list[Node] | None = None
    text: str = ""


@dataclass
class _Ctx:
    files: dict[str, str]
    prefix: str
    problems: list[str] = field(default_factory=list)
    depth: int = 0


def split_dump(text: str) -> dict[str, str]:
    """`nginx -T` output -> {path: file content}, in the order nginx printed them."""
    files: dict[str, str] = {}
    current: str | None = None
    buf: list[str] = []
    for line in text.splitlines():
        m = _FILE_HEADER.match(line)
        if m:
            if current is not None:
                files[current] = "\n".join(buf)
            current, buf = m.group(1), []
        elif current is not None:
            buf.append(line)
    if current is not None:
        files[current] = "\n".join(buf)
    return files


def tokenize(text: str) -> list[tuple[str, int, bool]]:
    """Tokens of an nginx file: (token, line, quoted); braces and ';' are tokens of their own."""
    out: list[tuple[str, int, bool]] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            out.append((c, line, False))
            i += 1
        elif c in "\"'":
            quote, start_line, buf = c, line, []
            i += 1
            while i < n and text[i] != quote:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                if text[i] == "\n":
                    line += 1
                buf.append(text[i])
                i += 1
            i += 1
            out.append(("".join(buf), start_line, True))
        else:
            start, start_line = i, line
            while i < n and not text[i].isspace() and text[i] not in "{};":
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                i += 1
            out.append((text[start:i], start_line, False))
    return out


def parse_file(path: str, text: str) -> list[Node]:
    """The directive tree of one file (includes not resolved)."""
    tokens = tokenize(text)
    lines = text.splitlines()
    pos = 0

    def block() -> list[Node]:
        nonlocal pos
        nodes: list[Node] = []
        while pos < len(tokens):
            tok, line, quoted = tokens[pos]
            if tok == "}" and not quoted:
                pos += 1
                return nodes
            words: list[str] = []
            while pos < len(tokens) and (tokens[pos][2] or tokens[pos][0] not in "{};"):
                words.append(tokens[pos][0])
                pos += 1
            if not words:
                pos += 1
                continue
            src = lines[line - 1].strip() if 0 < line <= len(lines) else " ".join(words)
            node = Node(words[0], words[1:], path, line, None, src)
            if pos < len(tokens) and tokens[pos][0] == "{":
                pos += 1
                node.children = block()
            elif pos < len(tokens) and tokens[pos][0] == ";":
                pos += 1
            # else a '}' after a directive without its ';': the loop above closes the block with it
            nodes.append(node)
        return nodes

    return block()


def _expand(nodes: list[Node], ctx: _Ctx, trees: dict[str, list[Node]]) -> list[Node]:
    """Splice included files into the tree, recursively."""
    out: list[Node] = []
    for node in nodes:
        if node.name == "include" and node.args and node.children is None:
            pattern = node.args[0]
            if not os.path.isabs(pattern):
                pattern = os.path.join(ctx.prefix, pattern)
            matches = sorted(p for p in ctx.files if fnmatch.fnmatchcase(p, pattern))
            if not matches and not glob.has_magic(pattern):
                ctx.problems.append(f"{node.file}:{node.line}: include {node.args[0]} not in the dump")
            if ctx.depth > 20:
                ctx.problems.append(f"{node.file}:{node.line}: include nesting too deep")
                continue
            for path in matches:
                ctx.depth += 1
                out.extend(_expand(trees[path], ctx, trees))
                ctx.depth -= 1
            continue
        if node.children is not None:
            node.children = _expand(node.children, ctx, trees)
        out.append(node)
    return out


def tree(files: dict[str, str], main: str | None = None) -> tuple[list[Node], list[str]]:
    """The effective directive tree, starting at the main file (the first one by default)."""
    if not files:
        return [], ["empty configuration"]
    first = next(iter(files))
    problems: list[str] = []
    if main is not None and main not in files:  # named another way (a symlink, a relative -c)
        problems.append(f"{main} is not among the files of the dump; read from {first}, the first one")
        main = first
    main = main or first
    trees = {p: parse_file(p, t) for p, t in files.items()}
    ctx = _Ctx(files, os.path.dirname(main), problems)
    return _expand(trees[main], ctx, trees), ctx.problems


def parse_listen(node: Node, default_port: int = 80) -> Bind | None:
    """A `listen` directive -> Bind (None for a unix socket)."""
    if not node.args:
        return None
    spec = node.args[0]
    if spec.startswith("unix:"):
        return None
    v6only: bool | None = None
    for arg in node.args[1:]:
        if arg.startswith("ipv6only="):
            v6only = arg.endswith("on")
    host, port = split_hostport(spec, default_port)
    if host in ("", "*"):
        host = "0.0.0.0"
    elif host == "localhost":
        host = "127.0.0.1"
    fam = family_of(host)
    if fam == 6 and v6only is None:
        v6only = True  # nginx's default for listen [::]
    return Bind(host, port or default_port, node.file, node.line, node.text, fam, v6only)


def _pass_target(node: Node, upstreams: dict[str, list[Node]], problems: list[str]) -> list[Upstream]:
    """A proxy_pass-like directive -> the upstreams it reaches (an upstream block expanded)."""
    if not node.args:
        return []
    raw = node.args[0]
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest = "", raw
    if "$" in rest.split("/", 1)[0]:
        problems.append(f"{node.file}:{node.line}: {node.name} {raw} uses a variable; not followed")
        return []
    if rest.startswith("unix:"):
        path = rest[5:].split(":", 1)[0]
        return [Upstream("", None, node.file, node.line, node.text, node.name, unix=path)]
    hostport = rest.split("/", 1)[0]
    default = _SCHEME_PORT.get(scheme, 80)
    if hostport in upstreams:
        out = []
        for srv in upstreams[hostport]:
            if not srv.args:
                continue
            if srv.args[0].startswith("unix:"):
                out.append(Upstream("", None, srv.file, srv.line, srv.text, "server", hostport,
                                    unix=srv.args[0][5:], via_file=node.file, via_line=node.line,
                                    via_text=node.text))
                continue
            host, port = split_hostport(srv.args[0], 80)
            out.append(Upstream(host, port, srv.file, srv.line, srv.text, "server", hostport,
                                via_file=node.file, via_line=node.line, via_text=node.text))
        return out
    host, port = split_hostport(hostport, default)
    return [Upstream(host, port, node.file, node.line, node.text, node.name)]


def _collect_passes(nodes: list[Node], location: str | None) -> list[tuple[Node, str | None]]:
    out: list[tuple[Node, str | None]] = []
    for node in nodes:
        if node.name in _PASS_DIRECTIVES and node.children is None:
            out.append((node, location))
        elif node.children is not None and node.name in ("location", "if", "limit_except"):
            loc = " ".join(node.args) if node.name == "location" else location
            out.extend(_collect_passes(node.children, loc))
    return out


def routes_of(nodes: list[Node]) -> tuple[list[Route], list[str], list[str]]:
    """Routes, error log paths and problems of an effective tree."""
    routes: list[Route] = []
    problems: list[str] = []
    error_logs: list[str] = []

    def logs(block: list[Node]) -> None:
        for n in block:
            if n.name == "error_log" and n.args and n.args[0] not in ("stderr", "off") \
                    and not n.args[0].startswith(("syslog:", "memory:")):
                error_logs.append(n.args[0])

    logs(nodes)
    for top in nodes:
        if top.name not in ("http", "stream") or top.children is None:
            continue
        logs(top.children)
        upstreams = {" ".join(n.args): [s for s in (n.children or []) if s.name == "server"]
                     for n in top.children if n.name == "upstream" and n.children is not None}
        for srv in top.children:
            if srv.name != "server" or srv.children is None:
                continue
            logs(srv.children)
            binds = [b for n in srv.children if n.name == "listen" and (b := parse_listen(n))]
            if not binds and top.name == "http":
                binds = [Bind("0.0.0.0", 80, srv.file, srv.line, "(no listen: nginx uses *:80)")]
            names = [a for n in srv.children if n.name == "server_name" for a in n.args]
            name = f"{top.name} server " + (" ".join(names) if names else "_")
            mode = "http" if top.name == "http" else "tcp"
            passes = _collect_passes(srv.children, None)
            if not passes:
                routes.append(Route(name, tuple(binds), (), srv.file, srv.line, None, mode))
            for node, loc in passes:
                ups = _pass_target(node, upstreams, problems)
                routes.append(Route(name, tuple(binds), tuple(ups), srv.file, srv.line, loc, mode))
    return routes, error_logs or [DEFAULT_ERROR_LOG], problems


def parse_dump(text: str, main: str | None = None) -> ProxyConfig:
    """Parse `nginx -T` output into a ProxyConfig."""
    files = split_dump(text)
    nodes, problems = tree(files, main)
    routes, error_logs, more = routes_of(nodes)
    main = main if main in files else next(iter(files), main or "")
    return ProxyConfig("nginx", main, tuple(routes), tuple(files), tuple(dict.fromkeys(error_logs)),
                       tuple(problems + more))


def includes(nodes: list[Node]) -> list[str]:
    """The paths (or globs) every `include` directive of a parsed file names, in order."""
    out: list[str] = []
    for n in nodes:
        if n.name == "include" and n.args:
            out.append(n.args[0])
        if n.children:
            out.extend(includes(n.children))
    return out
