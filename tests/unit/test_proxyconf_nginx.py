"""nginx -T dumps recorded from Debian's nginx 1.22 (nginx-light) -> routes with file:line."""

from __future__ import annotations

from pathlib import Path

from portdoctor.proxyconf import nginx

DATA = Path(__file__).parent.parent / "data" / "proxy"


def _routes(name: str):
    return nginx.parse_dump((DATA / name).read_text())


def test_upstream_group_is_expanded_with_the_server_lines():
    cfg = _routes("nginx-T-app.txt")
    root = next(r for r in cfg.routes if r.location == "/")
    assert root.name == "http server app.example.test"
    assert [(b.address, b.port, b.family, b.v6only) for b in root.binds] == [
        ("0.0.0.0", 8080, 4, None), ("::", 8080, 6, True)]
    assert root.binds[0].file.endswith("conf.d/app.conf") and root.binds[0].line == 3
    ups = [(u.host, u.port, u.group, u.line, u.via_line) for u in root.upstreams]
    assert ups == [("127.0.0.1", 9001, "app_backend", 9, 8), ("10.77.0.2", 9002, "app_backend", 10, 8)]
    assert root.upstreams[0].file.endswith("nginx/nginx.conf")
    assert root.upstreams[0].text == "server 127.0.0.1:9001;"
    assert root.upstreams[0].via_text == "proxy_pass http://app_backend;"
    assert root.upstreams[0].via_file.endswith("conf.d/app.conf")


def test_direct_proxy_pass_unix_socket_variables_and_defaults():
    cfg = _routes("nginx-T-app.txt")
    api = next(r for r in cfg.routes if r.location == "/api/")
    assert [(u.host, u.port, u.line, u.directive) for u in api.upstreams] == [
        ("127.0.0.1", 9100, 11, "proxy_pass")]
    php = next(r for r in cfg.routes if r.location == "~ \\.php$")
    assert php.upstreams[0].unix == "/run/php/php-fpm.sock"
    assert php.binds[0].address == "127.0.0.1" and php.binds[0].port == 8081
    assert any("variable" in p and "sites/static:9" in p for p in cfg.problems)
    quoted = next(r for r in cfg.routes if "quoted" in r.name)
    assert quoted.name == "http server quoted { name"  # a brace inside quotes is a word
    assert [(b.address, b.port) for b in quoted.binds] == [("0.0.0.0", 80)]
    assert [(u.host, u.port) for u in quoted.upstreams] == [("localhost", 443)]
    assert cfg.error_logs == ("/tmp/pdx/log/error.log",)


def test_debian_default_site():
    cfg = _routes("nginx-T-debian-default.txt")
    assert cfg.main == "/etc/nginx/nginx.conf"
    assert "/etc/nginx/sites-enabled/default" in cfg.files
    assert len(cfg.routes) == 1
    r = cfg.routes[0]
    assert [(b.address, b.port, b.line) for b in r.binds] == [("0.0.0.0", 80, 22), ("::", 80, 23)]
    assert r.upstreams == ()
    assert cfg.error_logs == ("/var/log/nginx/error.log",)
    assert cfg.problems == ()


def test_stream_block_and_listen_forms():
    text = ("# configuration file /etc/nginx/nginx.conf:\n"
            "events {}\n"
            "stream {\n"
            "    upstream pg { server 10.1.0.3:5432; server unix:/run/pg.sock; }\n"
            "    server { listen localhost:15432; proxy_pass pg; }\n"
            "    server { listen *:6380; listen [::1]:6380 ipv6only=off; proxy_pass [fd00::7]:6379; }\n"
            "}\n")
    cfg = nginx.parse_dump(text)
    pg, redis = cfg.routes
    assert [(b.address, b.port) for b in pg.binds] == [("127.0.0.1", 15432)]
    assert [(u.host, u.port, u.unix, u.line) for u in pg.upstreams] == [
        ("10.1.0.3", 5432, None, 3), ("", None, "/run/pg.sock", 3)]
    assert [(b.address, b.port, b.v6only) for b in redis.binds] == [
        ("0.0.0.0", 6380, None), ("::1", 6380, False)]
    assert [(u.host, u.port) for u in redis.upstreams] == [("fd00::7", 6379)]


def test_dump_from_disk_follows_includes(tmp_path):
    """When nginx -T may not be run, the collector builds the same text from the files (through the Host)."""
    import os

    from portdoctor.collectors.proxies import ProxyProcess, nginx_dump
    from portdoctor.host import LocalHost

    (tmp_path / "conf.d").mkdir()
    (tmp_path / "nginx.conf").write_text("events {}\nhttp {\n include conf.d/*.conf;\n}\n")
    (tmp_path / "conf.d" / "a.conf").write_text("server {\n listen 9090;\n location / { proxy_pass http://127.0.0.1:9091; }\n}\n")
    me = ProxyProcess(LocalHost(), "nginx", os.getpid(), ("nginx",))
    text = nginx_dump(me, str(tmp_path / "nginx.conf"))
    cfg = nginx.parse_dump(text)
    assert [(u.host, u.port, u.line) for r in cfg.routes for u in r.upstreams] == [("127.0.0.1", 9091, 3)]
    assert cfg.routes[0].binds[0].port == 9090


def test_main_file_named_another_way_than_in_the_dump():
    """`nginx -c conf/nginx.conf` (relative) or a symlinked path: the dump names the file
    otherwise. The configuration is read from the dump's first file and that is noted."""
    text = (DATA / "nginx-T-app.txt").read_text()
    cfg = nginx.parse_dump(text, "/etc/nginx/other.conf")
    assert cfg.routes == _routes("nginx-T-app.txt").routes
    assert cfg.main == next(iter(nginx.split_dump(text)))
    assert cfg.problems[0] == (f"/etc/nginx/other.conf is not among the files of the dump; read from {cfg.main}, "
                               "the first one")
