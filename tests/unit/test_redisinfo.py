"""RESP replies of a real Redis 7 (INFO server, CONFIG GET bind), as recorded from redis-server."""

from __future__ import annotations

from pathlib import Path

from portdoctor.collectors.redisinfo import facts_from_replies, parse_replies

# recorded from redis-server 7.0.15 (Debian 12) started with a config file, over loopback
WIRE = (Path(__file__).resolve().parent.parent / "data" / "redis-info-server.resp").read_bytes()


def test_config_file_and_bind() -> None:
    replies = parse_replies(WIRE, 2)
    assert replies is not None
    facts = facts_from_replies(*replies)
    assert facts.config_file and facts.config_file.endswith("/redis.conf")
    assert facts.bind == "127.0.0.1 -::1"


def test_incomplete_data_asks_for_more() -> None:
    assert parse_replies(WIRE[:40], 2) is None
    assert parse_replies(WIRE[:-3], 2) is None


def test_started_without_config_file() -> None:
    info = "# Server\r\nconfig_file:\r\n"
    wire = f"${len(info)}\r\n{info}\r\n".encode() + b"*2\r\n$4\r\nbind\r\n$9\r\n127.0.0.1\r\n"
    facts = facts_from_replies(*parse_replies(wire, 2))
    assert facts.config_file == "" and facts.bind == "127.0.0.1"


def test_password_protected_server_says_nothing() -> None:
    wire = b"-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n"
    facts = facts_from_replies(*parse_replies(wire, 2))
    assert facts.config_file is None and facts.bind is None
