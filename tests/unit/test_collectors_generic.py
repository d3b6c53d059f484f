"""generic.py (psutil only, for macOS and the BSDs), exercised on this host."""

from __future__ import annotations

import os
import socket

from portdoctor.collectors import Request, generic


def test_psutil_listeners_see_our_socket_and_owner() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(5)
    try:
        port = s.getsockname()[1]
        facts = generic.collect_listeners(Request(port=port))
        mine = [x for x in facts.fields["listeners"] if x.port == port]
        assert len(mine) == 1 and mine[0].address == "127.0.0.1" and mine[0].family == 4
        assert mine[0].pids == (os.getpid(),) and mine[0].v6only is None
        proc = facts.fields["processes"][os.getpid()]
        assert proc.name and proc.cmdline and proc.open_fds and proc.fd_soft_limit
        assert any("backlog" in lim.what for lim in facts.limitations)
    finally:
        s.close()


def test_psutil_addresses() -> None:
    addrs = generic.collect_addresses(Request(port=1)).fields["addresses"]
    lo = [a for a in addrs if a.address == "127.0.0.1"]
    assert lo and lo[0].prefixlen == 8 and lo[0].family == 4


def test_prefixlen() -> None:
    assert generic._prefixlen("255.255.255.0", socket.AF_INET) == 24
    assert generic._prefixlen("ffff:ffff:ffff:ffff::", socket.AF_INET6) == 64
    assert generic._prefixlen(None, socket.AF_INET6) == 128
