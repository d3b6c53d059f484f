"""systemd for real: a minimal Debian with systemd as PID 1, booted in a Podman container with no
network of its own (`--network none`: loopback only, nothing added to the root namespace), and
portdoctor run inside it from this checkout. The image is built once by scripts/systemd-image.sh
(scripts/test.sh runs it in its install phase, so no test downloads anything).

Units tested: one that crashed, one that hit its start limit ("start request repeated too
quickly"), one stopped and disabled, and a .socket unit whose service fails when it is started.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "systemd-image.sh"
CONF = '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n'


def _root_rules() -> str:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return "\n".join(ln for ln in out.splitlines() if ln.startswith(("-A", ":")))


class Box:
    """A running systemd container; `sh` runs a shell script inside, `diagnose` portdoctor."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env

    def podman(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True, env=self.env,
                            timeout=timeout)
        if check and cp.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {cp.returncode}\n{cp.stderr}")
        return cp

    def sh(self, script: str, timeout: float = 60) -> str:
        return self.podman("exec", self.name, "sh", "-c", script, timeout=timeout).stdout

    def unit(self, name: str, text: str) -> None:
        self.sh(f"cat > /etc/systemd/system/{name} <<'EOF'\n{text}\nEOF\nsystemctl daemon-reload")

    def diagnose(self, *args: str) -> dict[str, Any]:
        cp = self.podman("exec", "-e", "PYTHONPATH=/pd/src", self.name, "python3", "-m", "portdoctor", "diagnose",
                         *args, "--json", "--timeout", "1", check=False)
        assert "Traceback" not in cp.stderr, cp.stderr
        return json.loads(cp.stdout)


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    conf = Path(tempfile.mkdtemp(prefix="pdlab-sd-")) / "containers.conf"
    conf.write_text(CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    image = subprocess.run(["bash", str(SCRIPT), "--name"], capture_output=True, text=True, check=True).stdout.strip()
    if subprocess.run(["podman", "image", "exists", image], env=env).returncode != 0:
        msg = f"image {image} is missing: run `bash scripts/systemd-image.sh` (scripts/test.sh does)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    rules = _root_rules()
    b = Box(f"pdsd{os.getpid()}", env)
    b.podman("run", "-d", "--network", "none", "--systemd=always", "--name", b.name,
             "-v", f"{ROOT / 'src'}:/pd/src:ro", image, "/lib/systemd/systemd")
    try:
        deadline = time.monotonic() + 60
        while True:
            state = b.podman("exec", b.name, "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"systemd in the container did not finish booting ({state})")
            time.sleep(0.2)
        yield b
    finally:
        b.podman("rm", "-f", "-t", "0", b.name, check=False)
        conf.unlink(missing_ok=True)
        conf.parent.rmdir()
        assert _root_rules() == rules, "the root namespace's firewall rules changed"


def _text(doc: dict[str, Any]) -> str:
    return "\n".join([doc["verdict"]["summary"], *(e for f in doc["findings"] for e in f["evidence"]),
                      *(f"{x['description']} {x['command'] or ''}" for f in doc["findings"] for x in f["fix"])])


def _wait(box: Box, unit: str, prop: str, want: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while box.sh(f"systemctl show -p {prop} --value {unit}").strip() != want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{unit}: {prop} never became {want}: {box.sh(f'systemctl status {unit} || true')}")
        time.sleep(0.1)


def test_crashed_unit(box: Box) -> None:
    box.unit("billing.service", "[Unit]\nDescription=billing api\n[Service]\n"
             "ExecStart=/usr/bin/python3 -c \"import sys; print('billing: cannot open /etc/billing.yml', "
             "file=sys.stderr); sys.exit(3)\" --port 8085\n")
    box.sh("systemctl start billing.service || true")
    _wait(box, "billing.service", "ActiveState", "failed")
    doc = box.diagnose(":8085")
    assert doc["verdict"]["cause"] == "service_not_running", doc["verdict"]
    assert "billing.service" in doc["verdict"]["summary"] and "exit status 3" in doc["verdict"]["summary"]
    t = _text(doc)
    assert "journal: billing: cannot open /etc/billing.yml" in t, t
    assert "journalctl -u billing.service" in t and "systemctl restart billing.service" in t, t


def test_unit_that_hit_its_start_limit(box: Box) -> None:
    box.unit("flappy.service", "[Unit]\nDescription=flappy\nStartLimitIntervalSec=60\nStartLimitBurst=3\n"
             "[Service]\nExecStart=/usr/bin/python3 -c \"import sys; sys.exit(1)\" --port 8086\n"
             "Restart=always\nRestartSec=100ms\n")
    box.sh("systemctl start flappy.service || true")
    _wait(box, "flappy.service", "ActiveState", "failed")
    doc = box.diagnose(":8086")
    assert doc["verdict"]["cause"] == "service_not_running", doc["verdict"]
    assert "hit its start limit" in doc["verdict"]["summary"], doc["verdict"]
    t = _text(doc)
    assert "Start request repeated too quickly" in t, t
    assert "systemctl reset-failed flappy.service && systemctl start flappy.service" in t, t


def test_stopped_and_disabled_unit(box: Box) -> None:
    box.unit("docs.service", "[Service]\nExecStart=/usr/bin/python3 -m http.server 8088\n"
             "[Install]\nWantedBy=multi-user.target\n")
    doc = box.diagnose(":8088", "--service", "docs")
    assert doc["verdict"]["cause"] == "service_not_running", doc["verdict"]
    assert "docs.service is inactive and disabled" in doc["verdict"]["summary"], doc["verdict"]
    assert doc["findings"][0]["fix"][0]["command"] == "systemctl enable --now docs.service", doc["findings"][0]
    # and the fix works: the port accepts afterwards
    box.sh("systemctl enable --now docs.service")
    _wait(box, "docs.service", "ActiveState", "active")
    deadline = time.monotonic() + 10
    while box.diagnose(":8088")["verdict"]["cause"] != "ok":
        assert time.monotonic() < deadline, "docs did not come up"
        time.sleep(0.2)


def test_socket_unit_whose_service_fails(box: Box) -> None:
    box.unit("web.socket", "[Socket]\nListenStream=8087\n[Install]\nWantedBy=sockets.target\n")
    box.unit("web.service", "[Service]\nExecStart=/bin/false\n")
    box.sh("systemctl start web.socket")
    # each connection starts web.service, which fails; after a few, systemd gives up on the socket
    box.sh("for i in 1 2 3 4 5 6 7 8 9 10; do python3 -c \"import socket; socket.create_connection(('127.0.0.1', "
           "8087), 1).close()\" 2>/dev/null; sleep 0.1; done; true")
    _wait(box, "web.socket", "ActiveState", "failed")
    doc = box.diagnose(":8087")
    assert doc["verdict"]["cause"] == "service_not_running", doc["verdict"]
    t = _text(doc)
    assert "web.socket" in doc["verdict"]["summary"] and "stopped listening" in doc["verdict"]["summary"], t
    assert "systemctl reset-failed web.socket web.service && systemctl start web.socket" in t, t
