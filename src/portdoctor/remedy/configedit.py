"""Change one setting of a server's config file and nothing else: comments, includes, blank
lines, indentation and line endings stay as they were; the result is shown as a unified diff.

The setting is found by the line the collector reported (services.py knows each server's key);
when the file changed since, the one line with the same text is used, else the edit is refused.

>>> edit_line("bind 127.0.0.1 -::1  \\n", "bind", "127.0.0.1 -::1", "* -::*")
'bind * -::*  \\n'
>>> edit_line("listen_addresses = 'localhost'\\t\\t# what IP address(es) to listen on;\\n",
...           "listen_addresses", "localhost", "*")
"listen_addresses = '*'\\t\\t# what IP address(es) to listen on;\\n"
>>> wide_value("nginx", "127.0.0.1:8080 default_server", "0.0.0.0")
'8080 default_server'
>>> with_port("redis", "6380", 6380, 6379)
'6379'
"""

from __future__ import annotations

import difflib
import re

from portdoctor.errors import PortdoctorError

# What "listen on every address" is called in each server's own configuration (IPv4, IPv6-too).
_WIDE = {
    "postgresql": ("*", "*"),
    "redis": ("* -::*", "* -::*"),
    "mysql": ("0.0.0.0", "*"),
    "mongodb": ("0.0.0.0", "0.0.0.0,::"),
    "memcached": ("0.0.0.0", "0.0.0.0"),
    "elasticsearch": ("0.0.0.0", "0.0.0.0"),
    "clickhouse": ("0.0.0.0", "::"),
    "zookeeper": ("0.0.0.0", "0.0.0.0"),
}
_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]*\]|[0-9.]+|localhost|\*)?:?(\d{1,5})(\s.*)?$")


class EditError(PortdoctorError):
    """The setting could not be changed safely (the file changed, or the line is not there)."""


def wide_value(service: str, old: str, family_word: str = "0.0.0.0") -> str:
    """The setting's value that listens on every address of the family (`::` asks for IPv6 too).

    A value that names a port as well (nginx `listen 127.0.0.1:8080`, haproxy `bind`) keeps its
    port and options: only the address widens.
    """
    v6 = family_word == "::"
    if service in _WIDE:
        return _WIDE[service][1 if v6 else 0]
    value = old.strip().rstrip(";")
    m = _HOSTPORT.match(value)
    if m is None or m.group(1) is None:
        return "[::]" if v6 and service == "nginx" else ("::" if v6 else "0.0.0.0")
    port, rest = m.group(2), m.group(3) or ""
    if service == "nginx":
        # nginx: `listen 8080` is every IPv4 address, `[::]:8080` IPv6 (ipv6only=on by default)
        return f"[::]:{port}{rest}" if v6 else f"{port}{rest}"
    if service == "haproxy":
        return f"{'[::]' if v6 else '*'}:{port}{rest}"
    return f"{'[::]' if v6 else '0.0.0.0'}:{port}{rest}"


def with_port(service: str, old: str, old_port: int, new_port: int) -> str:
    """The setting's value with `old_port` replaced by `new_port` (address and options kept)."""
    new, n = re.subn(rf"(?<!\d){old_port}(?!\d)", str(new_port), old, count=1)
    if n == 0:
        raise EditError(f"the {service} setting `{old}` does not name port {old_port}")
    return new


def edit_line(line: str, key: str, old: str, new: str) -> str:
    """`line` with the value `old` of `key` replaced by `new`; quotes, spacing, comments kept."""
    body_end = len(line.rstrip("\r\n"))
    body, ending = line[:body_end], line[body_end:]
    at = body.find(key)
    if at < 0:
        raise EditError(f"`{key}` is not on the line `{body.strip()}`")
    start = at + len(key)
    for quoted in (f"'{old}'", f'"{old}"', old):
        pos = body.find(quoted, start) if old else -1
        if pos >= 0:
            if quoted[0] in "'\"" and quoted != old:
                repl = quoted[0] + new.strip("'\"") + quoted[0]
            else:
                repl = new
            return body[:pos] + repl + body[pos + len(quoted):] + ending
    raise EditError(f"the value `{old}` of `{key}` is not on the line `{body.strip()}`")


def find_line(lines: list[str], number: int, key: str, text: str) -> int:
    """The 0-based index of the setting's line: `number` when it still holds `key`, else the one
    line whose text is `text`; EditError when neither is certain."""
    if 0 < number <= len(lines) and key in lines[number - 1] and not lines[number - 1].lstrip().startswith("#"):
        return number - 1
    same = [i for i, ln in enumerate(lines) if ln.strip() == text.strip()]
    if len(same) == 1:
        return same[0]
    raise EditError(f"line {number} no longer sets `{key}` and `{text.strip()}` is not found once")


def edit_text(text: str, number: int, key: str, old: str, new: str, line_text: str = "") -> str:
    """The whole file with one setting changed (see `edit_line`)."""
    lines = text.splitlines(keepends=True)
    i = find_line(lines, number, key, line_text or f"{key} {old}")
    lines[i] = edit_line(lines[i], key, old, new)
    return "".join(lines)


def append_setting(text: str, line: str) -> str:
    """The file with `line` added at its end (for a setting the file leaves at its default, in a
    format where the last setting wins)."""
    sep = "" if not text or text.endswith("\n") else "\n"
    return f"{text}{sep}{line}\n"


def unified_diff(path: str, before: str, after: str) -> str:
    """A unified diff of one file, as `diff -u` prints it."""
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=f"{path}", tofile=f"{path} (fixed)"))


# the server's own validator, run on a copy of the edited file (argv; {path} is the copy)
VALIDATORS = {
    "nginx": ("nginx", "-t", "-q", "-c", "{path}"),
    "haproxy": ("haproxy", "-c", "-q", "-f", "{path}"),
    "sshd": ("sshd", "-t", "-f", "{path}"),
}
