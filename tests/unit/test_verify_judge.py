"""verify's judgement on snapshots built here: dual-stack truth (family, V6ONLY, bindv6only) and
"could not observe" (a listener table that could not be read is never "not listening").
Probes go to loopback only."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from portdoctor.model import InterfaceAddress, Limitation, Listener
from portdoctor.snapshot import Snapshot
from portdoctor.verify import parse_spec
from portdoctor.verify.run import Status, covers_all, default_families, verify

LO = (InterfaceAddress("127.0.0.1", 8, 4, "lo"),)
BLIND = (Limitation("/proc/net/tcp is not readable: listening sockets are unknown", "run as root (sudo)"),)


@pytest.mark.parametrize("address, family, v6only, bindv6only, fams", [
    ("0.0.0.0", 4, None, None, [4]),
    ("::", 6, False, "1", [4, 6]),        # the socket's own flag wins over the sysctl
    ("::", 6, True, "0", [6]),
    ("::", 6, None, "0", [4, 6]),         # not said by the kernel: net.ipv6.bindv6only decides
    ("::", 6, None, "1", [6]),
    ("127.0.0.1", 4, None, None, []),
    ("::ffff:10.0.0.2", 6, False, "0", []),
])
def test_which_families_a_socket_covers(address: str, family: int, v6only: bool | None, bindv6only: str | None,
                                        fams: list[int]) -> None:
    snap = Snapshot(sysctls={"net.ipv6.bindv6only": bindv6only} if bindv6only else {})
    sock = Listener(address, 80, family, v6only)
    assert [f for f in (4, 6) if covers_all(snap, sock, f)] == fams


def test_default_families_follow_the_host() -> None:
    assert default_families(Snapshot(addresses=LO)) == (4,)
    assert default_families(Snapshot(addresses=LO + (InterfaceAddress("::1", 128, 6, "lo"),))) == (4, 6)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def open_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_an_unreadable_listener_table_is_unknown_not_closed(closed_port: int) -> None:
    spec = parse_spec(f"checks:\n  - port: {closed_port}\n  - port: {closed_port}\n    name: closed\n"
                      "    listening: false\n")
    report = verify(spec, Snapshot(addresses=LO, limitations=BLIND), diagnose=False)
    assert [(r.check, r.status) for r in report.results] == [("listening", Status.UNKNOWN)] * 2
    assert "could not be observed" in report.results[0].observed
    assert report.exit_code == 3
    seen = verify(spec, Snapshot(addresses=LO), diagnose=False)  # the table was read and is empty
    assert [r.status for r in seen.results] == [Status.FAIL, Status.PASS] and seen.exit_code == 1


def test_a_port_that_accepts_is_listening_even_when_the_table_is_unreadable(open_port: int) -> None:
    spec = parse_spec(f"checks:\n  - port: {open_port}\n    families: [4]\n")
    report = verify(spec, Snapshot(addresses=LO, limitations=BLIND), diagnose=False)
    assert [(r.check, r.status) for r in report.results] == [("listening", Status.PASS)]
    assert report.results[0].observed.startswith("accepts on 127.0.0.1")
    spec = parse_spec(f"checks:\n  - port: {open_port}\n    listening: false\n")
    report = verify(spec, Snapshot(addresses=LO, limitations=BLIND), diagnose=False)
    assert [r.status for r in report.results] == [Status.FAIL]


@pytest.mark.parametrize("text", [
    "/proc/net/tcp6 is missing: listening sockets are unknown",
    "sockstat failed: listeners are not known",
    "listening sockets of other users' processes are not seen",
    "listeners could not be read (OSError: boom)",
])
def test_every_platform_s_words_for_unseen_listeners(text: str) -> None:
    from portdoctor.observed import listeners_blind

    assert listeners_blind(Snapshot(limitations=(Limitation(text, "how"),))) == f"{text} (how)"
    assert listeners_blind(Snapshot(limitations=(Limitation("owners of 2 listening sockets are unknown"),))) is None


def test_an_unread_ruleset_is_not_an_empty_one() -> None:
    from portdoctor.hostfacts import FirewallFacts, FirewallTool
    from portdoctor.observed import firewall_blind

    unread = Snapshot(firewall=FirewallFacts(tools=(FirewallTool("iptables-nft-save -c", False),)),
                      limitations=(Limitation("iptables rules not read: iptables-nft-save needs root", "run with sudo"),))
    assert firewall_blind(unread) == "iptables rules not read: iptables-nft-save needs root (run with sudo)"
    assert firewall_blind(Snapshot(firewall=FirewallFacts(tools=(FirewallTool("nft -j list ruleset", True),)))) is None
    assert firewall_blind(Snapshot()) == "the firewall rules were not collected"
