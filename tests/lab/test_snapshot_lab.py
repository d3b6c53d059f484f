"""`portdoctor snapshot` on the server, `diagnose --snapshot FILE` on the client: the facts travel,
the probe is the client's own, and the verdict is the one a live run on the server gives.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from netlab import Host


@pytest.fixture
def shared() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pdlab-snap-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


@pytest.mark.parametrize("addr,cause", [("127.0.0.1", "wrong_interface"), (None, "service_not_running")])
def test_snapshot_judged_on_the_client_agrees_with_the_live_run(pair: tuple[Host, Host], shared: Path,
                                                                addr: str | None, cause: str) -> None:
    c, s = pair
    if addr:
        s.listen(8080, addr, argv0="billing-api")
    snap = shared / "server.json"
    cp = s.portdoctor("snapshot", "10.0.0.2:8080", "--from", "10.0.0.1", "-o", str(snap))
    assert cp.returncode == 0, cp.stderr
    doc = json.loads(snap.read_text())
    assert doc["schema"] == "portdoctor.snapshot/2" and any(x["port"] == 8080 for x in doc["listeners"]) == bool(addr)
    _rc, live = s.json_of("diagnose", "10.0.0.2:8080", "--from", "10.0.0.1")
    rc, remote = c.json_of("diagnose", "10.0.0.2:8080", "--from", "10.0.0.1", "--snapshot", str(snap))
    assert rc == 1 and live["verdict"]["cause"] == remote["verdict"]["cause"] == cause, (live["verdict"], remote["verdict"])
    assert remote["probe"]["state"] == "refused"  # the client's own view


def test_a_file_that_is_no_snapshot_is_one_line_exit_2(pair: tuple[Host, Host], shared: Path) -> None:
    c, _s = pair
    bad = shared / "bad.json"
    bad.write_text('{"schema": "portdoctor.snapshot/9"}')
    cp = c.portdoctor("diagnose", "10.0.0.2:8080", "--snapshot", str(bad))
    assert cp.returncode == 2 and "unknown snapshot format" in cp.stderr and len(cp.stderr.strip().splitlines()) == 1
