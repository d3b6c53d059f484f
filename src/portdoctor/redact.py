"""Secrets out of what portdoctor keeps: passwords in command lines, environments and URLs.

What a collector stores (and the target as the user typed it) ends up in the output, in
`--record` files and in bug reports, so secrets are replaced when they are read by REDACTED,
keeping the structure a reader needs:

>>> argv(("redis-server", "--requirepass", "hunter2", "--port", "6380"))
('redis-server', '--requirepass', '<redacted>', '--port', '6380')
>>> argv(("mysql", "-uroot", "-pS3cret", "--password=x", "-p8080"))
('mysql', '-uroot', '-p<redacted>', '--password=<redacted>', '-p<redacted>')
>>> argv(("app", "-p8080", "--db", "postgres://app:pw@db:5432/app"))
('app', '-p8080', '--db', 'postgres://app:<redacted>@db:5432/app')
>>> env({"PGPASSWORD": "x", "API_TOKEN": "y", "PORT": "8080"})
{'PGPASSWORD': '<redacted>', 'API_TOKEN': '<redacted>', 'PORT': '8080'}
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

REDACTED = "<redacted>"

# a variable or option name that holds a secret: *PASSWORD*, *PASSWD*, *PASS, *TOKEN*,
# *SECRET*, *KEY* (API_KEY, SECRET_KEY_BASE), *CREDENTIAL*, *AUTH* (masterauth, auth-token)
_SECRET_NAME = re.compile(r"pass(?:word|wd|phrase)?(?![a-z])|token|secret|key|credential|auth(?!or)",
                          re.IGNORECASE)
# `scheme://user:password@host`: the password part
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<pw>[^\s@/]+)(?P<at>@)")
# options a short letter introduces: -pSECRET (MySQL/MariaDB clients and servers), -a (redis-cli)
_MYSQL_PROGRAMS = re.compile(r"^(mysql|mariadb|mysqld|mariadbd|mysqldump|mysqladmin|mariadb-dump|"
                             r"mariadb-admin|mysqlcheck|mysqlimport|mysqlshow)$")


def secret_name(name: str) -> bool:
    """True when a variable or option name says its value is a secret.

    >>> secret_name("REDIS_PASSWORD"), secret_name("--requirepass"), secret_name("PORT")
    (True, True, False)
    """
    return bool(_SECRET_NAME.search(name))


def text(value: str) -> str:
    """A string with the password part of every `scheme://user:pass@` URL redacted."""
    if "@" not in value or "://" not in value:
        return value
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}{m.group('at')}", value)


def env(variables: Mapping[str, str]) -> dict[str, str]:
    """An environment with the values of secret-named variables redacted (and URL passwords)."""
    return {k: (REDACTED if secret_name(k) and v else text(v)) for k, v in variables.items()}


def argv(args: Iterable[str]) -> tuple[str, ...]:
    """A command line with secrets redacted: the value of a secret-named option (`--requirepass x`,
    `--password=x`), `NAME=value` words with a secret name (`PGPASSWORD=x`), MySQL's `-pSECRET`,
    redis-cli's `-a SECRET`, and the password of URLs (`redis://:pw@host`)."""
    items = list(args)
    if not items:
        return ()
    prog = os.path.basename(items[0]).lower()
    mysql = bool(_MYSQL_PROGRAMS.match(prog))
    out: list[str] = []
    hide_next = False
    for i, a in enumerate(items):
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if i == 0:
            out.append(text(a))
            continue
        name, eq, value = a.partition("=")
        if a.startswith("-") and not eq:
            opt = a.lstrip("-")
            if len(a) > 2 and a.startswith("-p") and not a.startswith("--") and (mysql or not a[2:].isdigit()):
                out.append("-p" + REDACTED)
                continue
            if a.startswith("--") and secret_name(opt) or (prog == "redis-cli" and a == "-a"):
                out.append(a)
                hide_next = i + 1 < len(items)
                continue
            if a == "-p" and mysql:
                out.append(a)  # `mysql -p` alone prompts; a following word is the database
                continue
        elif eq and (name.startswith("--") or name.isidentifier() or name.startswith("-")) and secret_name(name):
            out.append(f"{name}={REDACTED}" if value else a)
            continue
        out.append(text(a))
    return tuple(out)


def command(line: str) -> str:
    """A command line kept as one string (a supervisord `command=`, a unit's ExecStart), its
    secrets redacted as `argv` would; unchanged (spacing too) when it holds none."""
    words = line.split()
    clean = argv(words)
    return line if list(clean) == words else " ".join(clean)
