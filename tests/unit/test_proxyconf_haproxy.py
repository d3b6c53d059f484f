"""haproxy.cfg (checked valid by Debian's HAProxy 2.6 with `haproxy -c`) -> routes."""

from __future__ import annotations

from pathlib import Path

from portdoctor.proxyconf import haproxy

DATA = Path(__file__).parent.parent / "data" / "proxy"


def test_frontends_backends_and_listen_sections():
    cfg = haproxy.parse((DATA / "haproxy-app.cfg").read_text(), "/etc/haproxy/haproxy.cfg")
    web, db, stats = cfg.routes
    assert web.name == "frontend web" and web.line == 12
    assert [(b.address, b.port, b.family, b.v6only) for b in web.binds] == [
        ("0.0.0.0", 8080, 4, None), ("::", 8443, 6, False)]
    ups = [(u.group, u.host, u.port, u.line, u.via_line) for u in web.upstreams]
    assert ups == [("api", "127.0.0.1", 9100, 25, 16), ("app", "127.0.0.1", 9001, 21, 17),
                   ("app", "10.77.0.2", 9002, 22, 17)]
    assert web.upstreams[1].text == "server app1 127.0.0.1:9001 check"
    assert [(b.address, b.port) for b in db.binds] == [("127.0.0.1", 15432), ("127.0.0.1", 15433)]
    # a server without a port gets the port the client connected to
    assert [(u.host, u.port) for u in db.upstreams] == [("10.77.0.3", 5432), ("10.77.0.4", None)]
    assert [(b.address, b.port) for b in stats.binds] == [("127.0.0.1", 8404)]
    assert stats.upstreams == ()
    assert cfg.problems == ()


def test_debian_default_has_no_proxy():
    cfg = haproxy.parse((DATA / "haproxy-debian-default.cfg").read_text())
    assert cfg.routes == ()


def test_address_forms():
    assert haproxy.parse_address("*:80") == [("0.0.0.0", 80, 4)]
    assert haproxy.parse_address(":::80") == [("::", 80, 6)]
    assert haproxy.parse_address("ipv6@::1:8080") == [("::1", 8080, 6)]
    assert haproxy.parse_address("10.0.0.1:80-82") == [("10.0.0.1", p, 4) for p in (80, 81, 82)]
    assert haproxy.parse_address("unix@/run/x.sock") == []
    assert haproxy.parse_address("/run/x.sock") == []


def test_undefined_backend_is_a_problem():
    cfg = haproxy.parse("frontend f\n  bind :80\n  default_backend nope\n")
    assert cfg.problems == ("haproxy.cfg:3: backend nope is not defined",)


def test_modes_follow_defaults_and_sections():
    cfg = haproxy.parse((DATA / "haproxy-app.cfg").read_text())
    assert [r.mode for r in cfg.routes] == ["http", "tcp", "http"]


def test_disabled_servers_take_no_traffic():
    cfg = haproxy.parse("listen x\n  bind :80\n  server a 127.0.0.1:81\n  server b 127.0.0.1:82 disabled\n")
    ups = cfg.routes[0].upstreams
    assert [u.port for u in ups if not u.disabled] == [81]
    # the disabled one is kept (a backend whose every server is disabled answers 503) but has no port
    (off,) = [u for u in ups if u.disabled]
    assert off.port is None and off.text.endswith("disabled")
