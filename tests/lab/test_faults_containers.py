"""Fault catalogue: container ports published on this machine and on one host address.

Each test builds the fault for real in namespaces, checks what a real client saw, then asserts
the verdict an operator should act on and the evidence behind it (helpers: faults.py).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from verdicts import brief, pod_diagnose, verdict
from faults import (  # noqa: F401  (_root and tmpdir are fixtures)
    _root,
    tmpdir,
)

pytestmark = pytest.mark.lab


def test_container_published_on_this_machine_is_not_about_a_remote_target(tmpdir: Path) -> None:
    """A laptop runs a container publishing 18081->8080 and diagnoses a remote server's 8080.

    The container says nothing about the remote host: no finding may blame its mapping.
    """
    from test_container_lab import IMAGE, podman_lab
    with podman_lab("pdm", "pdmorepod") as (p, c, h, _tmp):
        name = p.run("web", "-p", "18081:8080", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:8080")
        p.wait_listening(name, 8080)
        assert h.connect_errno("10.0.0.1", 8080) == errno.ECONNREFUSED  # c: nothing listens
        doc = pod_diagnose(p, h, "10.0.0.1:8080")
        assert doc["probe"]["state"] == "refused"
        assert not [f for f in doc["findings"] if name in f["summary"]], brief(doc)
        verdict(doc, "unknown")

def test_container_published_on_another_host_address(tmpdir: Path) -> None:
    """`-p 10.0.0.3:18084:8080`: the mapping exists, but only on an address the clients do not use."""
    from test_container_lab import IMAGE, podman_lab
    with podman_lab("pdn", "pdmorepod") as (p, c, h, _tmp):
        h.add_addr("10.0.0.3/24", "veth1")
        name = p.run("shop", "-p", "10.0.0.3:18084:8080", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:8080")
        p.wait_listening(name, 8080)
        assert c.connect_errno("10.0.0.2", 18084) == errno.ECONNREFUSED
        assert c.connect_errno("10.0.0.3", 18084) == 0
        doc = pod_diagnose(p, h, "10.0.0.2:18084", "--from", "10.0.0.1")
        verdict(doc, "wrong_interface")
        # conmon only holds the port for the container: the answer is about the container's -p
        assert name in doc["verdict"]["summary"] and "10.0.0.3" in doc["verdict"]["summary"], brief(doc)
        fixes = "\n".join(x["description"] + " " + (x.get("command") or "")
                          for f in doc["findings"] if f["cause"] == "wrong_interface" for x in f["fix"])
        assert "-p 18084:8080" in fixes or "-p 10.0.0.2:18084:8080" in fixes, fixes
        assert "--host 0.0.0.0" not in fixes, fixes
