"""Caddyfile and Caddy JSON (the JSON is `caddy adapt` of the Caddyfile, Caddy 2.6)."""

from __future__ import annotations

from pathlib import Path

from portdoctor.proxyconf import caddy

DATA = Path(__file__).parent.parent / "data" / "proxy"


def test_caddyfile_sites_and_upstreams_with_lines():
    cfg = caddy.parse_caddyfile((DATA / "Caddyfile-app").read_text(), "/etc/caddy/Caddyfile")
    a, b, c = cfg.routes
    assert [(x.address, x.port, x.line) for x in a.binds] == [("0.0.0.0", 8080, 7)]
    assert [(u.host, u.port, u.line) for u in a.upstreams] == [
        ("127.0.0.1", 9100, 8), ("localhost", 9001, 9), ("10.77.0.2", 9002, 9)]
    assert [(x.address, x.port) for x in b.binds] == [("0.0.0.0", 8081)]
    assert [(u.host, u.port, u.line, u.directive) for u in b.upstreams] == [
        ("127.0.0.1", 9200, 19, "to"), ("10.77.0.5", 9201, 20, "to")]
    assert [(x.address, x.port) for x in c.binds] == [("127.0.0.1", 8082)]
    assert c.upstreams[0].unix == "/run/app.sock"


def test_json_matches_the_caddyfile():
    cf = caddy.parse_caddyfile((DATA / "Caddyfile-app").read_text())
    js = caddy.parse_json((DATA / "caddy-app.json").read_text())

    def pairs(cfg):
        return sorted((b.address, b.port, u.host, u.port or 0, u.unix or "")
                      for r in cfg.routes for b in r.binds for u in r.upstreams)

    assert pairs(cf) == pairs(js)
    srv1 = next(r for r in js.routes if r.name == "server srv1")
    assert srv1.upstreams[0].text.endswith("dial 127.0.0.1:9100")


def test_debian_default_serves_files_only():
    cfg = caddy.parse_caddyfile((DATA / "Caddyfile-debian-default").read_text())
    assert [(b.address, b.port) for r in cfg.routes for b in r.binds] == [("0.0.0.0", 80)]
    assert all(r.upstreams == () for r in cfg.routes)


def test_single_site_without_braces_and_snippets():
    cfg = caddy.parse_caddyfile("(common) {\n\treverse_proxy 127.0.0.1:7000\n}\n"
                                "http://:9000 {\n\timport common\n}\n")
    assert [(u.host, u.port, u.line) for r in cfg.routes for u in r.upstreams] == [("127.0.0.1", 7000, 2)]
    cfg = caddy.parse_caddyfile("localhost:8443\nreverse_proxy :3000\n")
    r = cfg.routes[0]
    assert (r.binds[0].port, r.upstreams[0].host, r.upstreams[0].port) == (8443, "localhost", 3000)
