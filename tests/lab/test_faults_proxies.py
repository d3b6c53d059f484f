"""Fault catalogue: reverse proxies (nginx, HAProxy, Caddy): upstreams dead, elsewhere, by name, on a unix socket, disabled or bound to loopback; the proxy itself on the wrong port or at its fd limit.

Each test builds the fault for real in namespaces, checks what a real client saw, then asserts
the verdict an operator should act on and the evidence behind it (helpers: faults.py).
"""

from __future__ import annotations

import errno
import sys
import time
from pathlib import Path

import pytest

from clients import hold
from netlab import Host
from servers import haproxy_cfg, need, nginx_conf, run_nginx
from verdicts import brief, diagnose, everything, finding, text_of, verdict
from faults import (  # noqa: F401  (_root and tmpdir are fixtures)
    _root,
    curl,
    diagnosed_as,
    diagnosed_at,
    HAPROXY,
    haproxy,
    NGINX_DIRECT,
    NGINX_HELLO_80,
    start_nginx,
    tmpdir,
)

pytestmark = pytest.mark.lab


def test_nginx_on_port_80_while_clients_use_8080(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    run_nginx(s, tmpdir, NGINX_HELLO_80, port=80)
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_port")
    assert "nginx" in doc["verdict"]["summary"] and "80" in doc["verdict"]["summary"], brief(doc)

def test_nginx_proxy_pass_to_a_dead_port_without_from(pair: tuple[Host, Host], tmpdir: Path) -> None:
    _c, s = pair
    conf = run_nginx(s, tmpdir, NGINX_DIRECT)
    doc = diagnose(s, "10.0.0.2:8080")
    assert doc["probe"]["state"] == "open"
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert "127.0.0.1:9001" in f["summary"] and "nothing listens" in f["summary"], text_of(f)
    assert f"{conf}:" in f["summary"], text_of(f)

def test_haproxy_server_named_by_a_hostname(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("haproxy")
    _c, s = pair
    s.dns({"app.lab.test": "127.0.0.1"})
    conf = tmpdir / "haproxy.cfg"
    conf.write_text(haproxy_cfg("app.lab.test:9003"))
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=8080)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert doc["probe"]["state"] == "open"
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert "app.lab.test:9003" in f["summary"] and "nothing listens on port 9003" in f["summary"], text_of(f)

def test_nginx_proxy_pass_to_a_hostname(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """A compose-style upstream name, resolved by the proxy (nginx resolves it at start)."""
    _c, s = pair
    s.dns({"backend.lab.test": "127.0.0.1"})
    conf = start_nginx(s, tmpdir, "http://backend.lab.test:9001")
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert "backend.lab.test" in f["summary"] and "nothing listens on port 9001" in f["summary"], text_of(f)

def test_nginx_upstream_unix_socket_missing(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """gunicorn behind nginx on a unix socket; the app is down, its socket file is gone."""
    c, s = pair
    sock = tmpdir / "app.sock"
    conf = start_nginx(s, tmpdir, f"http://unix:{sock}:")
    out = c.run(["curl", "-m", "5", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://10.0.0.2:8080/"],
                check=False).stdout
    assert out == "502"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert str(sock) in f["summary"], text_of(f)
    assert f"{conf}:" in f["summary"], text_of(f)

def test_nginx_listening_on_loopback_by_its_config(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    s.listen(9001, "127.0.0.1", argv0="app-server")
    conf = start_nginx(s, tmpdir, "http://127.0.0.1:9001", listen="127.0.0.1:8080")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_interface")
    f = finding(doc, "wrong_interface")
    t = text_of(f)
    assert "nginx" in t and f"{conf}" in t and "listen 127.0.0.1:8080" in t, t

def test_nginx_upstream_over_ipv6_loopback_while_app_is_on_ipv4(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    s.listen(9001, "127.0.0.1", argv0="uvicorn")
    conf = start_nginx(s, tmpdir, "http://[::1]:9001")
    out = c.run(["curl", "-m", "5", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://10.0.0.2:8080/"],
                check=False).stdout
    assert out == "502"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert "[::1]:9001" in f["summary"] or "::1" in f["summary"], text_of(f)
    assert "127.0.0.1:9001" in text_of(f), text_of(f)

def test_nginx_ipv6only_listener_reached_over_ipv4(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("nginx")
    c, s = pair
    conf = tmpdir / "nginx.conf"
    conf.write_text(nginx_conf(tmpdir, "    server {\n        listen [::]:8080 ipv6only=on;\n"
                                       "        location / { return 200 \"hi\\n\"; }\n    }\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080, ready_address="::1")
    assert c.connect_errno("fd00::2", 8080) == 0
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_interface")
    t = everything(doc)
    assert "nginx" in t and "ipv6only" in t.lower().replace("v6only", "ipv6only"), t


# =========================================================================== --service forms

def test_haproxy_all_servers_down(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    haproxy(s, tmpdir)
    time.sleep(1)
    assert curl(c, "http://10.0.0.2:8080/") == "503"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    t = everything(doc)
    assert "127.0.0.1:9001" in t and "127.0.0.1:9002" in t and "503" in t, brief(doc)

def test_haproxy_one_server_down_one_up_is_ok(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    # a real HTTP backend so HAProxy answers 200
    s.popen([sys.executable, "-m", "http.server", "9001", "--bind", "127.0.0.1", "-d", str(tmpdir)])
    s.wait_port(9001, "127.0.0.1")
    conf = tmpdir / "haproxy.cfg"
    need("haproxy")
    conf.write_text(HAPROXY.format(bind="*:8080").replace("127.0.0.1:9002", "127.0.0.1:9003"))
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=8080)
    time.sleep(1)
    assert {curl(c, "http://10.0.0.2:8080/") for _ in range(4)} == {"200"}
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "ok")

def test_haproxy_bound_to_loopback_reached_from_outside(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    conf = haproxy(s, tmpdir, bind="127.0.0.1:8080", addr="127.0.0.1")
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_interface")
    t = everything(doc)
    assert "haproxy" in t and str(conf) in t, brief(doc)

def test_nginx_upstream_group_with_one_dead_server_is_ok(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("nginx")
    c, s = pair
    s.popen([sys.executable, "-m", "http.server", "9002", "--bind", "127.0.0.1", "-d", str(tmpdir)])
    s.wait_port(9002, "127.0.0.1")
    conf = tmpdir / "nginx.conf"
    conf.write_text(nginx_conf(tmpdir, "    upstream app {\n        server 127.0.0.1:9001;\n"
                                       "        server 127.0.0.1:9002;\n    }\n"
                                       "    server {\n        listen 8080;\n"
                                       "        location / { proxy_pass http://app; }\n    }\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    assert {curl(c, "http://10.0.0.2:8080/") for _ in range(4)} == {"200"}
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "ok")
    # a good answer still mentions the dead member (a warning), without making it the verdict
    assert "127.0.0.1:9001" in everything(doc), brief(doc)

def test_haproxy_server_disabled_while_the_app_runs(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """`server app1 ... disabled` (left in maintenance after a deploy): the app is fine, HAProxy says 503."""
    c, s = pair
    s.popen([sys.executable, "-m", "http.server", "9001", "--bind", "127.0.0.1", "-d", str(tmpdir)])
    s.wait_port(9001, "127.0.0.1")
    need("haproxy")
    conf = tmpdir / "haproxy.cfg"
    conf.write_text(HAPROXY.format(bind="*:8080").replace("rise 1\n    server app2 127.0.0.1:9002 check inter 300ms fall 1 rise 1",
                                                          "rise 1 disabled"))
    assert "disabled" in conf.read_text() and "app2" not in conf.read_text()
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=8080)
    assert curl(c, "http://10.0.0.2:8080/") == "503"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    t = everything(doc)
    assert "disabled" in t and "app1" in t and "503" in t, brief(doc)

def test_caddy_upstream_on_the_address_while_the_app_is_on_loopback(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("caddy")
    c, s = pair
    s.listen(9006, "127.0.0.1", argv0="node")
    conf = tmpdir / "Caddyfile"
    conf.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n:8080 {\n\treverse_proxy 10.0.0.2:9006\n}\n")
    s.start(["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"], ready_port=8080,
            env={"HOME": str(tmpdir), "XDG_DATA_HOME": str(tmpdir), "XDG_CONFIG_HOME": str(tmpdir)})
    assert curl(c, "http://10.0.0.2:8080/") == "502"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    t = everything(doc)
    assert "10.0.0.2:9006" in t and "127.0.0.1" in t and str(conf) in t, brief(doc)


# =========================================================================== firewall

def test_nginx_at_its_worker_rlimit_nofile(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("nginx")
    c, s = pair
    conf = tmpdir / "nginx.conf"
    text = nginx_conf(tmpdir, "    server {\n        listen 8080;\n        location / { return 200 \"hi\\n\"; }\n    }\n")
    conf.write_text(text.replace("worker_processes 1;\n", "worker_processes 1;\nworker_rlimit_nofile 16;\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    hold(c, 30)
    assert curl(c, "http://10.0.0.2:8080/") in ("000", "")  # accepted by the kernel, never served
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    verdict(doc, "resource_exhaustion")
    t = everything(doc)
    assert "nginx" in t and ("RLIMIT_NOFILE" in t or "open files" in t or "worker_rlimit_nofile" in t), brief(doc)

def test_http_url_default_port_while_nginx_is_on_8080(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("nginx")
    c, s = pair
    conf = tmpdir / "nginx.conf"
    conf.write_text(nginx_conf(tmpdir, "    server {\n        listen 8080;\n"
                                       "        location / { return 200 \"hi\\n\"; }\n    }\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    s.dns({"web.lab.test": "10.0.0.2"})
    c.dns({"web.lab.test": "10.0.0.2"})
    assert curl(c, "http://web.lab.test/") == "000"
    doc = diagnose(s, "http://web.lab.test", "--from", "10.0.0.1")
    verdict(doc, "wrong_port")
    assert "8080" in doc["verdict"]["summary"] and "nginx" in everything(doc), brief(doc)
