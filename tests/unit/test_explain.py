"""explain: pasted connection errors -> source, errno, platform, target, meaning.

Samples in tests/data/messages/: `*.txt` were produced verbatim on a test machine by real clients
against closed loopback ports (local.json says how); public.json holds messages users pasted in
public issue threads, with the thread's address.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portdoctor.explain import Explanation, explain
from portdoctor.explain import errnos
from portdoctor.explain.parsers import split_hostport, url_target

DATA = Path(__file__).resolve().parent.parent / "data" / "messages"
LOCAL = json.loads((DATA / "local.json").read_text())
PUBLIC = json.loads((DATA / "public.json").read_text())
ROOT = Path(__file__).resolve().parents[2]


def check(e: Explanation, expect: dict) -> None:
    assert e.recognized, e
    for key in ("source", "errno_name", "errno_number", "platform", "port_defaulted"):
        if key in expect:
            assert getattr(e, key) == expect[key], (key, e)
    if "target" in expect and expect["target"] is None:
        assert e.target is None, e
    if "host" in expect:
        assert e.target is not None, e
        assert e.target.host == expect["host"], e
    if "port" in expect:
        assert e.target is not None and e.target.port == expect["port"], e
    if "note" in expect:
        assert any(expect["note"] in n for n in e.notes), e.notes
    assert e.meaning
    assert e.message and "\n" not in e.message


@pytest.mark.parametrize("name", sorted(LOCAL))
def test_local_sample(name: str) -> None:
    """Messages produced on this machine by the real clients."""
    text = (DATA / name).read_text()
    check(explain(text), LOCAL[name]["expect"])


@pytest.mark.parametrize("sample", PUBLIC, ids=[s["id"] for s in PUBLIC])
def test_public_sample(sample: dict) -> None:
    """Messages users pasted in public issue threads."""
    assert sample["url"].startswith("https://github.com/")
    check(explain(sample["text"]), sample["expect"])


def test_every_sample_file_has_an_expectation() -> None:
    assert {p.name for p in DATA.glob("*.txt")} == set(LOCAL)


# --------------------------------------------------------------------------- one per family

FAMILIES = {
    "curl": "curl-refused-verbose.txt",
    "python": "python-requests-refused.txt",
    "node": "node-net-refused-ipv6.txt",
    "rust": "rust-unwrap-refused.txt",
    "java": "java-socket-refused.txt",
    "psql": "psql-tcp-refused.txt",
    "mysql": "mysql-mariadb-client-refused.txt",
    "redis-cli": "redis-cli-refused.txt",
    "nginx": "nginx-proxy-refused.txt",
}


@pytest.mark.parametrize("source", sorted(FAMILIES))
def test_family_source(source: str) -> None:
    assert explain((DATA / FAMILIES[source]).read_text()).source == source


def test_go_and_windows_families() -> None:
    go = {s["id"]: s for s in PUBLIC}["go-refused-redis"]
    assert explain(go["text"]).source == "go"
    win = explain("No connection could be made because the target machine actively refused it.")
    assert (win.source, win.errno_name, win.errno_number, win.platform) == ("windows", "ECONNREFUSED", 10061, "windows")


# --------------------------------------------------------------------------- errno across platforms


def test_61_is_econnrefused_on_macos_but_enodata_on_linux() -> None:
    assert errnos.name_of(61, "linux") == "ENODATA"
    assert errnos.name_of(61, "macos") == "ECONNREFUSED"
    assert errnos.platforms_of(61, "ECONNREFUSED") == ["macos", "bsd"]
    e = explain("ConnectionRefusedError: [Errno 61] Connection refused")
    assert e.platform == "macos" and any("ENODATA" in n for n in e.notes)


@pytest.mark.parametrize("number,platform", [(111, "linux"), (61, "macos"), (10061, "windows")])
def test_number_implies_platform(number: int, platform: str) -> None:
    e = explain(f"Connection refused (os error {number})")
    assert (e.source, e.errno_name, e.errno_number, e.platform) == ("rust", "ECONNREFUSED", number, platform)


def test_errno_tables_agree_with_this_host() -> None:
    import errno

    table = errnos.ERRNO[{"linux": "linux", "darwin": "macos"}.get(sys.platform, "linux")]
    for name in ("ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ECONNRESET"):
        assert table[name] == getattr(errno, name)


def test_cross_platform_line() -> None:
    assert errnos.cross_platform("ECONNREFUSED") == (
        "ECONNREFUSED is 111 on Linux, 61 on macOS and the BSDs, 10061 (WSAECONNREFUSED) on Windows")


# --------------------------------------------------------------------------- neighbours of refused


@pytest.mark.parametrize("text,name,state", [
    ("Error: connect ETIMEDOUT 10.0.0.5:443", "ETIMEDOUT", "timeout"),
    ("OSError: [Errno 110] Connection timed out", "ETIMEDOUT", "timeout"),
    ("dial tcp 10.0.0.5:5432: i/o timeout", "ETIMEDOUT", "timeout"),
    ("OSError: [Errno 113] No route to host", "EHOSTUNREACH", "unreachable"),
    ("dial tcp 10.1.2.3:80: connect: network is unreachable", "ENETUNREACH", "unreachable"),
    ("Error: read ECONNRESET", "ECONNRESET", "error"),
    ("Error: getaddrinfo ENOTFOUND db.internal", "EAI_NONAME", "dns_error"),
    ("socket.gaierror: [Errno -2] Name or service not known", "EAI_NONAME", "dns_error"),
    ("dial tcp: lookup db on 127.0.0.11:53: no such host", "EAI_NONAME", "dns_error"),
    ("curl: (6) Could not resolve host: db.internal", "EAI_NONAME", "dns_error"),
])
def test_neighbours(text: str, name: str, state: str) -> None:
    e = explain(text)
    assert e.recognized and e.errno_name == name and e.state == state, e


# --------------------------------------------------------------------------- targets


def test_node_unbracketed_ipv6() -> None:
    e = explain("Error: connect ECONNREFUSED ::1:3000")
    assert e.target is not None and (e.target.host, e.target.port) == ("::1", 3000)
    assert e.target.input == "[::1]:3000"
    assert any("Node 17" in n for n in e.notes)


def test_bracketed_ipv6_and_split_forms() -> None:
    assert split_hostport("[::1]:5432") == ("::1", 5432)
    assert split_hostport("::1:6379") == ("::1", 6379)
    assert split_hostport("db.internal:5432") == ("db.internal", 5432)
    assert split_hostport("localhost") == ("localhost", None)


def test_url_gives_port_or_scheme_default() -> None:
    assert url_target("GET http://api.test:8080/v1 failed")[:2] == ("api.test", 8080)
    assert url_target("GET https://api.test/v1 failed")[:2] == ("api.test", 443)
    assert url_target("postgres://app@db/prod")[:2] == ("db", 5432)


def test_client_default_ports() -> None:
    e = explain("ERROR 2003 (HY000): Can't connect to MySQL server on 'db' (111)")
    assert e.target is not None and e.target.port == 3306 and e.port_defaulted
    e = explain("ERROR 2003 (HY000): Can't connect to MySQL server on '127.0.0.1:3307' (111)")
    assert e.target is not None and e.target.port == 3307 and not e.port_defaulted
    e = explain("Could not connect to Redis at 127.0.0.1:6380: Connection refused")
    assert e.target is not None and e.target.port == 6380 and not e.port_defaulted


def test_psql_unix_socket_has_no_target() -> None:
    e = explain((DATA / "psql-unix-socket.txt").read_text())
    assert e.target is None and e.unix_socket == "/var/run/postgresql/.s.PGSQL.5432"
    assert any("Unix socket, not TCP" in n for n in e.notes)


def test_most_specific_line_of_a_traceback() -> None:
    e = explain((DATA / "python-requests-refused.txt").read_text())
    assert e.message.startswith("requests.exceptions.ConnectionError")


def test_java_host_from_surrounding_text() -> None:
    text = ("Caused by: java.net.ConnectException: Connection refused\n"
            "\tat org.springframework.web.client.RestTemplate.doExecute(RestTemplate.java:785)\n"
            "I/O error on GET request for \"http://localhost:8081/api/orders\": Connection refused")
    e = explain(text)
    assert (e.source, e.target.host, e.target.port) == ("java", "localhost", 8081)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("text", ["", "   ", "hello world", "TypeError: undefined is not a function",
                                  "HTTP/1.1 200 OK", "\x00\xff" * 100, "[Errno ", "connect E", "(os error x)",
                                  "Could not connect to Redis at :", "dial tcp ", "x" * 300_000])
def test_unknown_text_is_not_recognized(text: str) -> None:
    e = explain(text)
    assert e.recognized is False and e.target is None
    assert e.to_json()["recognized"] is False


@pytest.mark.parametrize("value", [None, 42, 3.5, [], b"", b"   "])
def test_what_is_not_text_is_not_recognized(value: object) -> None:
    e = explain(value)  # type: ignore[arg-type]
    assert e.recognized is False and e.target is None and e.errno_name is None


def test_bytes_are_read_as_utf8() -> None:
    e = explain(b"Error: connect ECONNREFUSED 127.0.0.1:3000")
    assert (e.source, e.errno_name, e.target.port) == ("node", "ECONNREFUSED", 3000)  # type: ignore[union-attr]


@pytest.mark.parametrize("text,source", [
    ("connect ECONNREFUSED 999.1.1.1:99999", "node"),
    ("ECONNREFUSED [::1]:0", "unknown"),
    ("curl: (7) Failed to connect to [ port x: Connection refused", "curl"),
])
def test_impossible_addresses_give_no_target(text: str, source: str) -> None:
    """A refusal with an address that cannot be dialled (port 0 or above 65535, octet 999) is
    still a refusal, but it has no target to probe."""
    e = explain(text)
    assert (e.recognized, e.source, e.errno_name, e.target) == (True, source, "ECONNREFUSED", None)


def test_json_document() -> None:
    e = explain("Error: connect ECONNREFUSED 127.0.0.1:3000\n  errno: -61,")
    doc = e.to_json()
    assert doc["schema"] == "portdoctor.explain/1"
    assert doc["errno"] == {"name": "ECONNREFUSED", "number": 61, "platform": "macos"}
    assert doc["target"] == {"host": "127.0.0.1", "port": 3000}
    assert "probe" not in doc
    json.dumps(doc)


def test_with_probe_adds_the_probe_document() -> None:
    from portdoctor.probe import probe

    e = explain("Error: connect ECONNREFUSED 127.0.0.1:1")
    assert e.target is not None
    p = probe(e.target, timeout=1.0)
    doc = e.with_probe(p).to_json()
    assert doc["probe"]["schema"] == "portdoctor.probe/1"
    assert doc["probe"]["target"]["port"] == 1
    assert e.probe is None  # the original is unchanged


# --------------------------------------------------------------------------- through the CLI


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "portdoctor"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "portdoctor"]
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    return subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)


def test_cli_json_no_probe() -> None:
    r = run_cli("explain", "--no-probe", "--json",
                "ERROR 2003 (HY000): Can't connect to MySQL server on 'db.internal' (61)")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["source"] == "mysql"
    assert doc["errno"] == {"name": "ECONNREFUSED", "number": 61, "platform": "macos"}
    assert doc["target"] == {"host": "db.internal", "port": 3306}
    assert "probe" not in doc


def test_cli_unknown_text_exits_2_with_one_line() -> None:
    r = run_cli("explain", "--no-probe", "all good here")
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "all good here" in r.stderr


def test_cli_reads_stdin() -> None:
    text = (DATA / "node-fetch-localhost.txt").read_text()
    r = run_cli("explain", "--no-probe", "--json", "-", stdin=text)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["source"] == "node" and doc["target"] == {"host": "127.0.0.1", "port": 3000}


def test_cli_probes_loopback_target() -> None:
    r = run_cli("explain", "--json", "--timeout", "1", "connect ECONNREFUSED 127.0.0.1:1")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["probe"]["state"] == "refused"


# --------------------------------------------------------------------------- parser bugs are not bad input


def _broken(text: str) -> None:
    raise KeyError("a bug")


def test_a_parser_that_raises_is_a_parser_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from portdoctor.explain import ParserError, clients

    monkeypatch.setattr(clients, "ORDER", (_broken,) + clients.ORDER)
    with pytest.raises(ParserError, match="_broken.*KeyError") as info:
        explain("Error: connect ECONNREFUSED 127.0.0.1:3000")
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(ParserError):  # unrecognisable text does not hide the bug either
        explain("hello world")


def test_a_generic_layer_bug_is_a_parser_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from portdoctor.explain import ParserError, generic

    monkeypatch.setattr(generic, "scan", _broken)
    with pytest.raises(ParserError, match="generic.scan"):
        explain("Connection refused")


def test_cli_reports_a_parser_bug_as_an_internal_error(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A parser bug exits 3 with 'internal error' (not 2 with 'not a connection error')."""
    from portdoctor import cli
    from portdoctor.explain import clients

    monkeypatch.setattr(clients, "ORDER", (_broken,) + clients.ORDER)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explain", "--no-probe", "Error: connect ECONNREFUSED 127.0.0.1:3000"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 3
    assert "internal error" in err and "ParserError" in err and "not a connection error" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_unrecognised_text_stays_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    from portdoctor import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explain", "--no-probe", "the build passed"])
    assert exit_info.value.code == 2
    assert "not a connection error" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_cli_renders_text_and_markdown(fmt: str) -> None:
    r = run_cli("explain", "--no-probe", "--format", fmt, (DATA / "psql-unix-socket.txt").read_text())
    assert r.returncode == 1, r.stderr
    assert "psql" in r.stdout and "ENOENT" in r.stdout


# --------------------------------------------------------------------------- more clients


@pytest.mark.parametrize("text,source,host,port", [
    ("redis.exceptions.ConnectionError: Error 111 connecting to localhost:6379. Connection refused.",
     "python", "localhost", 6379),
    ("Multiple exceptions: [Errno 111] Connect call failed ('::1', 8000, 0, 0), "
     "[Errno 111] Connect call failed ('127.0.0.1', 8000)", "python", "::1", 8000),
    ("nc: connect to 127.0.0.1 port 8080 (tcp) failed: Connection refused", "unknown", "127.0.0.1", 8080),
    ("failed to connect to http://localhost:8080/health: connection refused", "unknown", "localhost", 8080),
])
def test_more_clients(text: str, source: str, host: str, port: int) -> None:
    e = explain(text)
    assert (e.source, e.errno_name) == (source, "ECONNREFUSED")
    assert e.target is not None and (e.target.host, e.target.port) == (host, port)


def test_meaning_names_the_target_and_the_server() -> None:
    e = explain('psql: error: connection to server at "127.0.0.1", port 5432 failed: Connection refused')
    assert "port 5432" in e.meaning and "PostgreSQL" in e.meaning


def test_nginx_unix_socket_upstream() -> None:
    e = explain('2024/01/01 10:00:00 [crit] 12#12: *7 connect() to unix:/run/php/php8.1-fpm.sock failed '
                '(2: No such file or directory) while connecting to upstream, client: 10.0.0.1, server: _, '
                'request: "GET / HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.1-fpm.sock:", host: "example.com"')
    assert (e.source, e.errno_name, e.target) == ("nginx", "ENOENT", None)
    assert e.unix_socket == "/run/php/php8.1-fpm.sock"


def test_platform_of_resolver_messages() -> None:
    assert explain("socket.gaierror: [Errno 8] nodename nor servname provided, or not known").platform == "macos"
    assert explain("socket.gaierror: [Errno 11001] getaddrinfo failed").platform == "windows"
    assert explain("socket.gaierror: [Errno -3] Temporary failure in name resolution").errno_name == "EAI_AGAIN"


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    given = None

if given is not None:
    _pieces = st.sampled_from(["connect ", "ECONNREFUSED ", "[Errno ", "111] ", "::1:", "3000", "dial tcp ",
                               ": connect: ", "connection refused", "curl: (7) ", "port ", "'", '"', "(", ")",
                               "http://", "[", "]", "\n", "Could not connect to Redis at ", "os error "])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.one_of(_pieces, st.text(max_size=8)), max_size=30).map("".join))
    def test_explain_never_raises(text: str) -> None:
        """No parser raises (a raise is a ParserError, which fails this test) on assembled pieces."""
        _check_answer(explain(text))

    _REAL = [s["text"] for s in PUBLIC] + [s["text"] for s in json.loads((DATA / "corpus.json").read_text())]

    @settings(max_examples=400, deadline=None)
    @given(st.sampled_from(_REAL), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 40),
                                                      st.text(max_size=6)), max_size=6))
    def test_mutated_real_messages_never_raise(text: str, edits: list[tuple[int, int, str]]) -> None:
        """Real messages with spans cut out and text spliced in: no parser may raise."""
        for at, cut, insert in edits:
            at %= len(text) + 1
            text = text[:at] + insert + text[at + cut:]
        _check_answer(explain(text))


def _check_answer(e: Explanation) -> None:
    assert isinstance(e.recognized, bool)
    doc = json.dumps(e.to_json())
    assert '"schema": "portdoctor.explain/1"' in doc
    if e.target is not None:
        assert 1 <= e.target.port <= 65535
        assert e.target.host and " " not in e.target.host
    if not e.recognized:
        assert e.target is None and e.errno_name is None
