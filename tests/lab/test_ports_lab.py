"""`portdoctor ports` on a lab host whose layout is known: a Podman container with a published
port, nginx in front of an app, a database on one address behind a firewall rule and a DNAT."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from netlab import Host
from servers import nginx_conf, nginx_pass
from test_container_lab import IMAGE, Pod, podman_lab


@pytest.fixture
def layout() -> Iterator[tuple[Pod, Host, Path, str]]:
    with podman_lab("pdm", "pdports", subnet_offset=7, tools=("nginx",)) as (p, _c, h, tmp):
        name = p.run("web", "-p", "18090:8080", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:8080")
        p.wait_listening(name, 8080)
        h.listen(9001, "127.0.0.1", argv0="app-server")
        h.listen(5432, "10.0.0.2", argv0="postgres")
        (tmp / "nginx").mkdir()
        conf = tmp / "nginx" / "nginx.conf"
        conf.write_text(nginx_conf(tmp / "nginx", nginx_pass(8080, "127.0.0.1:9001")))
        h.start(["nginx", "-c", str(conf)], ready_port=8080)
        h.iptables("-A", "INPUT", "-p", "tcp", "--dport", "5432", "-j", "DROP")
        h.iptables("-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "15432", "-j", "DNAT",
                   "--to-destination", "10.0.0.2:5432")
        yield p, h, conf, name


def ports_markdown(p: Pod, h: Host) -> str:
    env = {"DOCKER_HOST": f"unix://{p.socket}"}
    cp = h.portdoctor("ports", "--format", "markdown", env=env)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def table_rows(md: str) -> list[list[str]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert lines[0] == "| port | address | scope | process | container | exposed | via |"
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[2:]]


def test_ports_markdown_matches_the_lab_layout(layout: tuple[Pod, Host, Path, str]) -> None:
    p, h, conf, name = layout
    md = ports_markdown(p, h)
    assert md.startswith("# Port map of `")
    rows = table_rows(md)
    got = [(int(r[0]), r[1].strip("`"), r[2], r[3].split(" (")[0], r[4], r[5], r[6]) for r in rows]
    expected = [
        (5432, "10.0.0.2", "specific", "postgres", "-", "no",
         "dnat *:15432: iptables -t nat -A PREROUTING -p tcp -m tcp --dport 15432 -j DNAT --to-destination 10.0.0.2:5432"),
        (8080, "0.0.0.0", "all", "nginx", "-", "yes", "-"),
        (8080, "0.0.0.0", "all", "httpd", name, "yes",
         f"publish 0.0.0.0:18090: podman container {name}: 0.0.0.0:18090->8080/tcp"),
        (9001, "127.0.0.1", "loopback", "app-server", "-", "no",
         f"proxy 0.0.0.0:8080: nginx location /: {conf}:15: location / {{ proxy_pass http://127.0.0.1:9001; }}"),
        (18090, "0.0.0.0", "all", "conmon", name, "yes", "-"),
    ]
    assert got == expected, md
