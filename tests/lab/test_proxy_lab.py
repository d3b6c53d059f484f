"""Reverse proxies from Debian (nginx, HAProxy, Caddy) whose upstream refuses, inside lab namespaces.

The server namespace `s` (10.0.0.2) runs the proxy, the upstream and portdoctor; the client
namespace `c` (10.0.0.1) sees the 502 / 503. Each test asserts proxy_upstream with the config
file and line, and the upstream's own cause.
"""

from __future__ import annotations

from pathlib import Path

from netlab import Host
from servers import haproxy_cfg, need, nginx_conf

# the inside of nginx's http block
NGINX = """    upstream app {{
        server {upstream};
    }}
    server {{
        listen 8080;
        server_name app.lab.test;
        location / {{
            proxy_pass http://app;
        }}
    }}
"""

CADDY = """{{
\tadmin off
\tauto_https off
}}

:8080 {{
\treverse_proxy {upstream}
}}
"""


def start_nginx(s: Host, tmp: Path, upstream: str) -> Path:
    need("nginx")
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, NGINX.format(upstream=upstream)))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    return conf


def start_haproxy(s: Host, tmp: Path, upstream: str) -> Path:
    need("haproxy")
    conf = tmp / "haproxy.cfg"
    conf.write_text(haproxy_cfg(upstream))
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=8080)
    return conf


def start_caddy(s: Host, tmp: Path, upstream: str) -> Path:
    need("caddy")
    conf = tmp / "Caddyfile"
    conf.write_text(CADDY.format(upstream=upstream))
    s.start(["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"], ready_port=8080,
            env={"HOME": str(tmp), "XDG_DATA_HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp)})
    return conf


def line_of(conf: Path, text: str) -> int:
    return next(i for i, ln in enumerate(conf.read_text().splitlines(), 1) if text in ln)


def diagnose(s: Host) -> dict:
    rc, doc = s.json_of("diagnose", "10.0.0.2:8080", "--from", "10.0.0.1")
    assert doc["probe"]["state"] == "open"  # the proxy itself accepts
    assert rc == 1, doc
    return doc


def the_finding(doc: dict) -> dict:
    assert doc["verdict"]["cause"] == "proxy_upstream", doc["verdict"]
    return next(f for f in doc["findings"] if f["cause"] == "proxy_upstream")


def evidence(f: dict) -> str:
    return "\n".join(f["evidence"])


def test_nginx_upstream_nothing_listens(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    conf = start_nginx(s, tmp_path, "127.0.0.1:9001")
    f = the_finding(diagnose(s))
    assert "upstream 127.0.0.1:9001 refuses connections: nothing listens on port 9001" in f["summary"]
    assert f"{conf}:{line_of(conf, 'server 127.0.0.1:9001')}" in f["summary"]
    ev = evidence(f)
    assert f"routed by {conf}:{line_of(conf, 'proxy_pass http://app')}" in ev
    assert "502 Bad Gateway (Server: nginx/" in ev
    assert "connect() failed (111: Connection refused) while connecting to upstream" in ev
    assert any(x["command"] == f"nginx -s reload -c {conf}" for x in f["fix"])


def test_nginx_upstream_bound_to_loopback_while_proxy_uses_the_address(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    s.listen(9002, "127.0.0.1", argv0="app-server")
    conf = start_nginx(s, tmp_path, "10.0.0.2:9002")
    f = the_finding(diagnose(s))
    assert "upstream 10.0.0.2:9002 refuses connections" in f["summary"]
    assert "listens on 127.0.0.1:9002 (app-server) (loopback only)" in f["summary"]
    assert f"{conf}:{line_of(conf, 'server 10.0.0.2:9002')}" in f["summary"]
    fixes = " ".join(x["description"] for x in f["fix"])
    assert "0.0.0.0:9002" in fixes and "127.0.0.1:9002" in fixes


def test_haproxy_upstream_nothing_listens(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    s.listen(9013, "127.0.0.1", argv0="app-server")  # the app runs, on another port
    conf = start_haproxy(s, tmp_path, "127.0.0.1:9003")
    f = the_finding(diagnose(s))
    assert "upstream 127.0.0.1:9003 refuses connections: nothing listens on port 9003" in f["summary"]
    assert f"{conf}:{line_of(conf, 'server app1')}" in f["summary"]
    ev = evidence(f)
    assert f"routed by {conf}:{line_of(conf, 'default_backend app')}" in ev
    assert "answered 503 Service Unavailable" in ev


def test_nginx_upstream_runs_on_another_port(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    s.listen(8000, "127.0.0.1", argv0="gunicorn")
    conf = start_nginx(s, tmp_path, "127.0.0.1:8008")
    f = the_finding(diagnose(s))
    assert "upstream 127.0.0.1:8008 refuses connections: nothing listens on port 8008" in f["summary"]
    assert "127.0.0.1:8000 (gunicorn) listens on port 8000 instead" in f["summary"]
    assert any("127.0.0.1:8000" in x["description"] and f"{conf}:" in x["description"] for x in f["fix"])


def test_haproxy_upstream_on_another_address(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    s.listen(9004, "10.0.0.2", argv0="app-server")
    conf = start_haproxy(s, tmp_path, "127.0.0.1:9004")
    f = the_finding(diagnose(s))
    assert "upstream 127.0.0.1:9004 refuses connections" in f["summary"]
    assert "listens on 10.0.0.2:9004 (app-server), not on 127.0.0.1" in f["summary"]
    assert any("point the proxy at 10.0.0.2:9004" in x["description"] for x in f["fix"])


def test_caddy_upstream_nothing_listens(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    conf = start_caddy(s, tmp_path, "127.0.0.1:9005")
    f = the_finding(diagnose(s))
    assert "upstream 127.0.0.1:9005 refuses connections: nothing listens on port 9005" in f["summary"]
    assert f"{conf}:{line_of(conf, 'reverse_proxy')}" in f["summary"]
    assert "answered 502 Bad Gateway (Server: Caddy)" in evidence(f)


def test_working_upstream_is_ok(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    s.listen(9006, "127.0.0.1")
    start_nginx(s, tmp_path, "127.0.0.1:9006")
    rc, doc = s.json_of("diagnose", "10.0.0.2:8080", "--from", "10.0.0.1")
    assert not any(f["cause"] == "proxy_upstream" for f in doc["findings"]), doc
