"""Container faults with a real rootful Podman (runc, netavark) running inside a lab namespace.

Podman is driven with `nsenter --net` (not `ip netns exec`, whose private /sys hides the cgroup
mount runc needs), so netavark writes its NETAVARK-* chains and ip_forward into the lab
namespace only; the test checks that the root namespace is left as it was. The image is
busybox-static imported from a folder (no registry). portdoctor reads the engine through the
Docker Engine API that `podman system service` serves on a unix socket in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from netlab import Host, Lab
from servers import need, nginx_conf, nginx_pass

IMAGE = "localhost/portdoctor-bb:1"
CONF = '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n'


def root_state() -> tuple[str, str]:
    """The root namespace's iptables rules and ip_forward, to compare before and after."""
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    rules = "\n".join(ln for ln in rules.splitlines() if ln.startswith("-A") or ln.startswith(":"))
    return rules, Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


class Pod:
    """Podman driven inside one lab host; every container it runs is removed at `close`."""

    def __init__(self, host: Host, tmp: Path, subnet: str) -> None:
        self.host, self.tmp = host, tmp
        self.conf = tmp / "containers.conf"
        self.conf.write_text(CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        self.prefix = f"pdt{os.getpid()}"
        self.network = f"{self.prefix}net"
        self.socket = tmp / "podman.sock"
        self.service: subprocess.Popen | None = None
        self.own_image = False
        self.names: list[str] = []
        self.subnet = subnet

    def podman(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = ["nsenter", f"--net=/run/netns/{self.host.ns}", "podman", "--runtime", "runc", *args]
        cp = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and cp.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {cp.returncode}\n{cp.stderr}")
        return cp

    def start(self) -> None:
        if self.podman("image", "exists", IMAGE, check=False).returncode != 0:
            root = self.tmp / "img"
            (root / "bin").mkdir(parents=True)
            shutil.copy(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
            for name in ("sh", "httpd", "nc", "sleep", "echo"):
                os.symlink("busybox", root / "bin" / name)
            tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
            argv = ["nsenter", f"--net=/run/netns/{self.host.ns}", "podman", "import", "-", IMAGE]
            subprocess.run(argv, input=tar, capture_output=True, env=self.env, check=True, timeout=60)
            self.own_image = True
        self.podman("network", "create", "--disable-dns", "--subnet", self.subnet, self.network)
        self.service = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.host.ns}", "podman", "system", "service", "--time=0",
             f"unix://{self.socket}"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if time.monotonic() > deadline or self.service.poll() is not None:
                raise RuntimeError("podman system service did not start")
            time.sleep(0.05)

    def run(self, name: str, *args: str) -> str:
        """`podman run -d --name PREFIX-name ARGS` on the lab network; returns the full name."""
        full = f"{self.prefix}-{name}"
        self.names.append(full)
        self.podman("run", "-d", "--name", full, "--network", self.network, *args)
        return full

    def inspect(self, name: str) -> dict[str, Any]:
        return json.loads(self.podman("inspect", name).stdout)[0]

    def wait_listening(self, name: str, port: int, timeout: float = 10) -> None:
        """Wait until something listens on `port` inside the container (its /proc/PID/net/tcp)."""
        pid = self.inspect(name)["State"]["Pid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = Path(f"/proc/{pid}/net/tcp").read_text()
            if any(ln.split()[1].endswith(f":{port:04X}") and ln.split()[3] == "0A" for ln in text.splitlines()[1:]):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name}: nothing listens on {port} inside")

    def wait_exited(self, name: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.inspect(name)["State"]["Status"] not in ("exited", "stopped"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not exit")
            time.sleep(0.1)

    def portdoctor(self, host: Host, *args: str, netns_of: str | None = None) -> tuple[int, dict[str, Any]]:
        """portdoctor ARGS --json in `host` (or in the network namespace of container `netns_of`)."""
        env = {"DOCKER_HOST": f"unix://{self.socket}"}
        if netns_of is None:
            cp = host.portdoctor(*args, "--json", env=env)
        else:
            pid = self.inspect(netns_of)["State"]["Pid"]
            cp = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-m", "portdoctor",
                                 *args, "--json"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, **env})
        try:
            return cp.returncode, json.loads(cp.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"portdoctor {args}: {cp.returncode}\n{cp.stdout}\n{cp.stderr}") from exc

    def close(self) -> None:
        for name in reversed(self.names):
            self.podman("rm", "-f", "-t", "0", name, check=False)
        self.podman("network", "rm", "-f", self.network, check=False)
        if self.service is not None and self.service.poll() is None:
            os.killpg(self.service.pid, 9)
            self.service.wait(5)
        if self.own_image:
            self.podman("rmi", "-f", IMAGE, check=False)


@contextmanager
def podman_lab(prefix: str, tmp_prefix: str, *, subnet_offset: int = 0,
               tools: tuple[str, ...] = ()) -> Iterator[tuple[Pod, Host, Host, Path]]:
    """Client c (10.0.0.1) linked to host h (10.0.0.2) running rootful Podman, and a temporary
    folder: (pod, c, h, folder). All is removed afterwards, and the root namespace must be as it was."""
    need("podman", "runc", "busybox", "nsenter", *tools, "iptables-save")
    before = root_state()
    lab = Lab(prefix=f"{prefix}{os.getpid() % 100000}")
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix))
    p: Pod | None = None
    try:
        c, h = lab.host("c"), lab.host("h")
        lab.link(c, h, "10.0.0.1/24", "10.0.0.2/24")
        p = Pod(h, tmp, f"10.{200 + os.getpid() % 50}.{(os.getpid() + subnet_offset) % 250}.0/24")
        p.start()
        yield p, c, h, tmp
    finally:
        try:
            if p is not None:
                p.close()
        finally:
            lab.teardown()
            shutil.rmtree(tmp, ignore_errors=True)
    assert root_state() == before, "the root namespace's iptables rules or ip_forward changed"


@pytest.fixture(scope="module")
def pod() -> Iterator[tuple[Pod, Host, Host]]:
    with podman_lab("pdc", "pdpod") as (p, c, h, _tmp):
        yield p, c, h


def diagnosed(p: Pod, h: Host, cause: str, *args: str,
              netns_of: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """`portdoctor diagnose ARGS` in h (or in container `netns_of`) gives `cause` as the verdict:
    the verdict and the whole document."""
    _rc, doc = p.portdoctor(h, "diagnose", *args, netns_of=netns_of)
    v = doc["verdict"]
    assert v["cause"] == cause, doc
    return v, doc


def _ev(doc: dict[str, Any]) -> str:
    return "\n".join(e for f in doc["findings"] for e in f["evidence"])


def _fixes(doc: dict[str, Any]) -> str:
    return "\n".join(f"{x['description']} {x['command'] or ''}" for f in doc["findings"] for x in f["fix"])


def test_published_port_app_on_container_loopback(pod: tuple[Pod, Host, Host]) -> None:
    p, _c, h = pod
    name = p.run("web", "-p", "18080:8080", IMAGE, "/bin/httpd", "-f", "-p", "127.0.0.1:8080")
    p.wait_listening(name, 8080)
    assert h.connect_errno("127.0.0.1", 18080) == 111  # the real fault: refused through the mapping
    rc, doc = p.portdoctor(h, "diagnose", "127.0.0.1:18080")
    assert rc == 1
    v = doc["verdict"]
    assert v["cause"] == "wrong_interface", doc
    assert name in v["summary"] and "0.0.0.0:18080->8080/tcp" in v["summary"]
    assert "127.0.0.1:8080 inside the container" in v["summary"]
    assert "0.0.0.0:8080" in _fixes(doc)


def test_exited_container_reports_exit_code(pod: tuple[Pod, Host, Host]) -> None:
    p, _c, h = pod
    name = p.run("job", "-p", "18081:8080", IMAGE, "sh", "-c", "echo 'fatal: /etc/app.conf missing' >&2; exit 3")
    p.wait_exited(name)
    v, doc = diagnosed(p, h, "service_not_running", "127.0.0.1:18081")
    assert name in v["summary"] and "exit code 3" in v["summary"]
    assert "fatal: /etc/app.conf missing" in _ev(doc)
    assert f"podman start {name}" in _fixes(doc)


def test_mapping_to_the_wrong_container_port(pod: tuple[Pod, Host, Host]) -> None:
    p, _c, h = pod
    name = p.run("api", "-p", "18082:8080", "--label", "com.docker.compose.project=shop",
                 "--label", "com.docker.compose.service=api", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:8081")
    p.wait_listening(name, 8081)
    rc, doc = p.portdoctor(h, "diagnose", "127.0.0.1:18082")
    v = doc["verdict"]
    assert v["cause"] in ("port_mapping", "wrong_port"), doc
    assert name in v["summary"] and "18082" in v["summary"] and "8080" in v["summary"] and "8081" in v["summary"]
    assert "-p 18082:8081" in _fixes(doc)
    assert 'in the compose file (service api of project shop): ports: ["18082:8081"]' in _fixes(doc)


def test_client_uses_the_container_port(pod: tuple[Pod, Host, Host]) -> None:
    p, _c, h = pod
    name = p.run("metrics", "-p", "19090:9090", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:9090")
    p.wait_listening(name, 9090)
    v, doc = diagnosed(p, h, "wrong_port", "127.0.0.1:9090")
    assert "19090" in v["summary"] and name in v["summary"]


def test_published_on_host_loopback_reached_from_outside(pod: tuple[Pod, Host, Host]) -> None:
    p, c, h = pod
    name = p.run("admin", "-p", "127.0.0.1:18083:8080", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:8080")
    p.wait_listening(name, 8080)
    assert c.connect_errno("10.0.0.2", 18083) == 111
    v, doc = diagnosed(p, h, "wrong_interface", "10.0.0.2:18083", "--from", "10.0.0.1")
    assert name in v["summary"] and "127.0.0.1 only" in v["summary"]


def test_localhost_inside_a_container_is_the_container(pod: tuple[Pod, Host, Host]) -> None:
    p, _c, h = pod
    h.listen(7000)  # the service runs on the host
    name = p.run("client", IMAGE, "sleep", "300")
    v, doc = diagnosed(p, h, "port_mapping", "127.0.0.1:7000", netns_of=name)
    assert name in v["summary"] and "localhost is the container itself" in v["summary"]
    gw = p.inspect(name)["NetworkSettings"]["Networks"][p.network]["Gateway"]
    assert f"{gw}:7000" in _fixes(doc)


def test_ports_lists_the_container_mapping(pod: tuple[Pod, Host, Host]) -> None:
    p, _c, h = pod
    name = p.run("site", "-p", "18084:8080", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:8080")
    p.wait_listening(name, 8080)
    rc, doc = p.portdoctor(h, "ports")
    assert doc["schema"] == "portdoctor.ports/1"
    inner = [e for e in doc["listeners"] if e.get("container") == name]
    assert [(e["address"], e["port"], e["scope"]) for e in inner] == [("0.0.0.0", 8080, "all")]
    assert inner[0]["via"][0]["kind"] == "publish" and inner[0]["via"][0]["from"] == "0.0.0.0:18084"
    held = [e for e in doc["listeners"] if e["port"] == 18084 and not e.get("container")]
    assert held and held[0]["processes"][0]["name"] == "conmon" and held[0]["processes"][0]["container"] == name


def test_nginx_in_front_of_a_container_whose_app_is_on_loopback(pod: tuple[Pod, Host, Host], tmp_path: Path) -> None:
    p, _c, h = pod
    need("nginx")
    name = p.run("backend", "-p", "18085:8080", IMAGE, "/bin/httpd", "-f", "-p", "127.0.0.1:8080")
    p.wait_listening(name, 8080)
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, nginx_pass(8088, "127.0.0.1:18085"), ("client_body", "proxy")))
    h.start(["nginx", "-c", str(conf)], ready_port=8088)
    v, doc = diagnosed(p, h, "proxy_upstream", "127.0.0.1:8088")
    assert f"{conf}:12" in v["summary"]
    assert f"published by container {name}" in v["summary"] and "127.0.0.1:8080" in v["summary"]
    assert "502 Bad Gateway" in _ev(doc)


def test_container_in_a_restart_loop(pod: tuple[Pod, Host, Host]) -> None:
    p, _c, h = pod
    name = p.run("loop", "--restart=always", "-p", "18087:8080", IMAGE, "sh", "-c",
                 "echo 'panic: missing DATABASE_URL' >&2; sleep 0.3; exit 2")
    deadline = time.monotonic() + 20
    while (p.inspect(name).get("RestartCount") or 0) < 3:
        assert time.monotonic() < deadline, "podman did not restart the container"
        time.sleep(0.2)
    v, doc = diagnosed(p, h, "service_not_running", "127.0.0.1:18087")
    assert name in v["summary"] and "restart loop" in v["summary"]
    assert "panic: missing DATABASE_URL" in _ev(doc)


def test_localhost_from_a_container_diagnosed_on_the_host(pod: tuple[Pod, Host, Host]) -> None:
    p, _c, h = pod
    h.listen(7001, "127.0.0.1")  # on the host, loopback only
    name = p.run("client2", IMAGE, "sleep", "300")
    ip = p.inspect(name)["NetworkSettings"]["Networks"][p.network]["IPAddress"]
    v, doc = diagnosed(p, h, "port_mapping", "127.0.0.1:7001", "--from", ip)
    assert "localhost is the container itself" in v["summary"] and name in v["summary"]
    fixes = _fixes(doc)
    assert "listens on loopback only" in fixes


def test_containers_seen_through_proc_without_engine_api_or_cli(pod: tuple[Pod, Host, Host]) -> None:
    p, _c, h = pod
    name = p.run("procview", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:8089")
    p.wait_listening(name, 8089)
    info = p.inspect(name)
    code = ("import json; from portdoctor.collectors import Request; "
            "from portdoctor.collectors.containers import gather; from portdoctor.host import LocalHost\n"
            "from portdoctor.plain import to_plain\n"
            "class NoCli(LocalHost):\n"
            "    def which(self, name): return None\n"
            "print(json.dumps(to_plain(gather(Request(port=0, system=NoCli()), env={}).fields)))")
    cp = h.run([sys.executable, "-c", code], env={"DOCKER_HOST": ""})
    doc = json.loads(cp.stdout)["containers"]
    assert doc["source"] == "proc"
    rec = next(c for c in doc["containers"] if c["id"] == info["Id"][:12])
    assert {"address": "0.0.0.0", "port": 8089, "family": 4} in rec["listeners"]
    assert info["NetworkSettings"]["Networks"][p.network]["IPAddress"] in rec["addresses"]
    assert rec["pid"] == info["State"]["Pid"]
