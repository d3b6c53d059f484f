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


# the crash classes a mutation fuzzer found in the JSON reader (AttributeError / TypeError on a
# value of the wrong shape), as fixed examples: the part that cannot be read is noted, the rest kept

def _app_json():
    import json

    return json.loads((DATA / "caddy-app.json").read_text())


def _counts(cfg):
    return len(cfg.routes), sum(len(r.binds) for r in cfg.routes), sum(len(r.upstreams) for r in cfg.routes)


def test_json_server_that_is_not_an_object_is_noted_and_the_others_kept():
    doc = _app_json()
    doc["apps"]["http"]["servers"]["srv1"] = "srv1"
    cfg = caddy.parse_json(doc)
    assert [r.name for r in cfg.routes] == ["server srv0", "server srv2"]
    assert cfg.problems == ('could not read route 2 (server srv1): "srv1" is not an object',)
    assert cfg.routes == tuple(r for r in caddy.parse_json(_app_json()).routes if r.name != "server srv1")


def test_json_parts_of_the_wrong_shape_inside_a_server():
    whole = caddy.parse_json(_app_json())
    cases = [
        (lambda s: s["listen"].insert(0, 8080), "could not read apps.http.servers.srv1.listen: 8080", (3, 3, 6)),
        (lambda s: s["routes"].insert(0, ["x"]), 'could not read /apps/http/servers/srv1/routes/0: ["x"]', (3, 3, 6)),
        (lambda s: s["routes"][1]["handle"].insert(0, None),
         "could not read /apps/http/servers/srv1/routes/1/handle/0: null is not an object", (3, 3, 6)),
        (lambda s: s["routes"][1]["handle"][0]["upstreams"].insert(1, "10.0.0.9:80"),
         'could not read /apps/http/servers/srv1/routes/1/handle/0/upstreams/1: "10.0.0.9:80" is not an object',
         (3, 3, 6)),
        (lambda s: s["routes"][0]["handle"][0].update(upstreams={"dial": "x"}),
         'could not read /apps/http/servers/srv1/routes/0/handle/0/upstreams: {"dial":"x"} is not a list',
         (3, 3, 5)),
        (lambda s: s.update(routes={"handle": []}),
         'could not read /apps/http/servers/srv1/routes: {"handle":[]} is not a list', (3, 3, 3)),
    ]
    assert _counts(whole) == (3, 3, 6)
    for damage, problem, counts in cases:
        doc = _app_json()
        damage(doc["apps"]["http"]["servers"]["srv1"])
        cfg = caddy.parse_json(doc)
        assert cfg.problems == (problem,)
        assert _counts(cfg) == counts, problem
        assert [r for r in cfg.routes if r.name != "server srv1"] == [r for r in whole.routes if r.name != "server srv1"]


def test_json_that_is_not_a_caddy_config():
    assert caddy.parse_json({"apps": ["http"]}).problems == ('could not read apps: ["http"] is not an object',)
    assert caddy.parse_json([]).routes == ()
    cfg = caddy.parse_json('{"apps": {', "/etc/caddy/caddy.json")
    assert cfg.routes == () and cfg.problems[0].startswith("could not read /etc/caddy/caddy.json: not JSON")
