"""A TCP listener for lab tests, run inside a namespace by `Host.listen`.

It binds, listens with the given backlog and prints "ready" once the socket listens. Then it
either accepts (keeping or closing each connection) or never accepts, so the accept queue fills.
`--nofile` lowers the RLIMIT_NOFILE soft limit; `--fill-fds` opens files until that limit is
reached, which makes a server that cannot accept (EMFILE) although it listens.

Standard library only: it may run under another interpreter or an unprivileged user.
"""

from __future__ import annotations

import argparse
import errno
import os
import resource
import signal
import socket
import sys
import time


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--addr", default="0.0.0.0")
    p.add_argument("--backlog", type=int, default=128)
    p.add_argument("--no-accept", action="store_true", help="never accept (the queue fills)")
    p.add_argument("--close", action="store_true", help="close each accepted connection at once")
    p.add_argument("--v6only", choices=("0", "1"), default=None)
    p.add_argument("--nofile", type=int, default=None, help="RLIMIT_NOFILE soft limit")
    p.add_argument("--fill-fds", action="store_true", help="open files up to the soft limit")
    return p.parse_args(argv)


def _bind(a: argparse.Namespace) -> socket.socket:
    """Return a listening socket for the address and port given."""
    family = socket.AF_INET6 if ":" in a.addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if a.v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(a.v6only))
    s.bind((a.addr, a.port))
    s.listen(a.backlog)
    return s


def _fill_fds() -> list[int]:
    """Open /dev/null until the process has no descriptor left; return the descriptors."""
    held: list[int] = []
    while True:
        try:
            held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return held
            raise


def main(argv: list[str] | None = None) -> int:
    """Listen as asked, print "ready", then serve until killed."""
    a = _args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if a.nofile is not None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = a.nofile if hard == resource.RLIM_INFINITY else min(a.nofile, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    s = _bind(a)
    held = _fill_fds() if a.fill_fds else []
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if a.no_accept:
        while True:
            signal.pause()
    kept: list[socket.socket] = []
    while True:
        try:
            conn, _peer = s.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.05)  # like a real server at its limit: the queue keeps the client
                continue
            raise
        if a.close:
            conn.close()
        else:
            kept.append(conn)
    del held  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
