"""Every target form of portdoctor.target, and the inputs it must refuse with one clear line."""

from __future__ import annotations

import pytest

from portdoctor.errors import BadInput, ExitCode
from portdoctor.model import Target
from portdoctor.target import SCHEME_PORTS, parse_port, parse_target


@pytest.mark.parametrize(
    "text, port, host, expected_port, scheme",
    [
        # host:port
        ("db.internal:5432", None, "db.internal", 5432, None),
        ("localhost:3000", None, "localhost", 3000, None),
        ("10.0.0.2:8080", None, "10.0.0.2", 8080, None),
        ("Example.COM.:443", None, "Example.COM", 443, None),  # trailing root dot dropped
        ("my_host-1:1", None, "my_host-1", 1, None),
        ("  10.0.0.2:65535  ", None, "10.0.0.2", 65535, None),  # surrounding blanks
        ("10.0.0.2:080", None, "10.0.0.2", 80, None),
        # [v6]:port
        ("[::1]:8080", None, "::1", 8080, None),
        ("[fd00::2]:80", None, "fd00::2", 80, None),
        ("[fe80::1%eth0]:22", None, "fe80::1%eth0", 22, None),
        ("[::1]", 9000, "::1", 9000, None),
        # :port means this host
        (":3000", None, "localhost", 3000, None),
        # bare host or address with --port
        ("10.0.0.2", 80, "10.0.0.2", 80, None),
        ("db", 5432, "db", 5432, None),
        ("::1", 8080, "::1", 8080, None),  # a bare IPv6 address, not ":port"
        ("::", 8080, "::", 8080, None),
        ("fd00:0::2", 80, "fd00::2", 80, None),  # normalised
        ("fe80::1%veth0", 80, "fe80::1%veth0", 80, None),
        # a port in the text wins over --port
        ("10.0.0.2:81", 80, "10.0.0.2", 81, None),
        ("[::1]:81", 80, "::1", 81, None),
        # URLs
        ("http://example.org", None, "example.org", 80, "http"),
        ("https://example.org/path?q=1", None, "example.org", 443, "https"),
        ("HTTPS://Example.org", None, "example.org", 443, "https"),
        ("http://10.0.0.2:8080/", None, "10.0.0.2", 8080, "http"),
        ("http://[::1]:8080/", None, "::1", 8080, "http"),
        ("postgres://app@db/prod", None, "db", 5432, "postgres"),
        ("postgresql://user:secret@db:6543/prod", None, "db", 6543, "postgresql"),
        ("postgres+psycopg://db/app", None, "db", 5432, "postgres"),
        ("mysql+pymysql://root@127.0.0.1/x", None, "127.0.0.1", 3306, "mysql"),
        ("redis://:pw@cache:6380/0", None, "cache", 6380, "redis"),
        ("redis:///0", None, "localhost", 6379, "redis"),  # no host: the local server
        ("postgres:///db", None, "localhost", 5432, "postgres"),
        ("amqp://guest@mq", None, "mq", 5672, "amqp"),
        ("mongodb://mongo", None, "mongo", 27017, "mongodb"),
        ("custom://svc", 7000, "svc", 7000, "custom"),  # an unknown scheme with --port
        ("custom://svc:7001", None, "svc", 7001, "custom"),
    ],
)
def test_target_forms(text: str, port: int | None, host: str, expected_port: int, scheme: str | None) -> None:
    t = parse_target(text, port)
    assert isinstance(t, Target)
    assert (t.host, t.port, t.scheme) == (host, expected_port, scheme)
    shown = text.replace(":secret@", ":<redacted>@").replace(":pw@", ":<redacted>@")  # a URL's password never
    assert t.input == shown
    assert t.to_json() == {"input": shown, "host": host, "port": expected_port}


def test_every_scheme_has_a_valid_port() -> None:
    for scheme, port in SCHEME_PORTS.items():
        assert 1 <= port <= 65535
        assert parse_target(f"{scheme}://h").port == port


def test_this_host_form() -> None:
    assert parse_target(":8080").is_this_host
    assert not parse_target("localhost:8080").is_this_host


@pytest.mark.parametrize(
    "text, port, words",
    [
        ("", None, "empty"),
        ("   ", None, "empty"),
        ("localhost", None, "no port"),  # no port
        ("10.0.0.2", None, "no port"),
        ("[::1]", None, "no port"),
        ("8080", None, "no host"),  # a bare number: say to write :8080
        ("host:0", None, "out of range"),  # port 0
        ("host:70000", None, "out of range"),
        ("host:65536", None, "out of range"),
        (":0", None, "out of range"),
        ("host:", None, "not a number"),
        (":", None, "not a number"),
        ("host:http", None, "not a number"),
        ("host:-1", None, "not a number"),
        ("host:+80", None, "not a number"),
        ("host:８０", None, "not a number"),  # fullwidth digits are not a port
        ("host:٣", None, "not a number"),
        ("[::1]:", None, "not a number"),
        ("[::1]:99999", None, "out of range"),
        ("::1:8080", None, "[address]:port"),  # unbracketed IPv6 with a port
        ("fd00::2:80", None, "[address]:port"),
        ("fe80::1::2:80", None, "[address]:port"),
        ("[10.0.0.2]:80", None, "not an IPv6 address"),
        ("[::1:80", None, "[IPv6-address]:port"),
        ("[zz::1]:80", None, "not an IPv6 address"),
        ("!!!:80", None, "neither a host name nor an IP address"),  # garbage
        ("bad host:80", None, "neither a host name"),
        ("-leading.dash:80", None, "neither a host name"),
        ("256.1.1.1:80", None, "neither a host name"),
        ("1.2.3:80", None, "neither a host name"),
        ("a" * 64 + ".com:80", None, "neither a host name"),  # a label above 63
        (":80x", None, "not a number"),
        ("http://host:0/", None, "out of range"),
        ("http://host:70000/", None, "target"),
        ("http://host:abc/", None, "target"),
        ("unknown://host", None, "implies no port"),
        ("http://bad_host!:80", None, "target"),
        ("localhost", 0, "--port 0 is out of range"),  # --port 0
        ("localhost", 70000, "--port 70000 is out of range"),
    ],
)
def test_bad_inputs(text: str, port: int | None, words: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_target(text, port)
    message = str(info.value)
    assert words in message
    assert "\n" not in message  # one line for the user
    assert info.value.exit_code == ExitCode.USAGE == 2


@pytest.mark.parametrize("text, value", [("1", 1), ("65535", 65535), (" 22 ", 22), (443, 443)])
def test_parse_port(text: str | int, value: int) -> None:
    assert parse_port(text) == value


@pytest.mark.parametrize("text", ["0", "65536", "", "x", "1e3", "0x50", -1, 0, 65536])
def test_parse_port_rejects(text: str | int) -> None:
    with pytest.raises(BadInput, match="port"):
        parse_port(text)


# --------------------------------------------------------------------------- any text at all

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60), st.one_of(st.none(), st.integers(-5, 70000)))
def test_any_text_gives_a_target_or_bad_input(text: str, port: int | None) -> None:
    """No input makes parse_target fail in another way than BadInput (exit 2, one line)."""
    try:
        t = parse_target(text, port)
    except BadInput as exc:
        assert "\n" not in str(exc)
        return
    assert 1 <= t.port <= 65535
    assert t.host and t.host == t.host.strip()


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(), st.integers(1, 65535))
def test_any_address_and_port_round_trips(addr: object, port: int) -> None:
    text = f"[{addr}]:{port}" if ":" in str(addr) else f"{addr}:{port}"
    t = parse_target(text)
    assert (t.host, t.port) == (str(addr), port)
