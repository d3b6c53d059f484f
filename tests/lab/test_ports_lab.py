"""`portdoctor ports` on a lab host whose layout is known: a Podman container with a published
port, nginx in front of an app, a database on one address behind a firewall rule and a DNAT."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from netlab import Host, Lab
from servers import need, nginx_conf, nginx_pass
from test_container_lab import IMAGE, Pod, root_state


@pytest.fixture
def layout() -> Iterator[tuple[Pod, Host, Path, str]]:
    need("podman", "runc", "busybox", "nsenter", "nginx", "iptables-save")
    before = root_state()
    lab = Lab(prefix=f"pdm{os.getpid() % 100000}")
    tmp = Path(tempfile.mkdtemp(prefix="pdports"))
    p: Pod | None = None
    try:
        c, h = lab.host("c"), lab.host("h")
        lab.link(c, h, "10.0.0.1/24", "10.0.0.2/24")
        p = Pod(h, tmp, f"10.{200 + os.getpid() % 50}.{(os.getpid() + 7) % 250}.0/24")
        p.start()
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
    finally:
        try:
            if p is not None:
                p.close()
        finally:
            lab.teardown()
            shutil.rmtree(tmp, ignore_errors=True)
    assert root_state() == before


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
