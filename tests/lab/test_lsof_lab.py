"""The macOS owner path (lsof -F, portdoctor.collectors.darwin.lsof_sockets) run for real on
Linux with Debian's lsof, inside a lab namespace holding listeners of root and of `nobody`,
both families: it must agree with `ss -ltnpH` there (addresses, ports, pids, users)."""

from __future__ import annotations

import json
import pwd
import shutil

import pytest
from netlab import Host, python_for

LSOF = r"""
import json
from portdoctor.collectors.darwin import lsof_sockets
from portdoctor.host import LocalHost
rows, lims = lsof_sockets(LocalHost())
print(json.dumps({"rows": [[r.address, r.port, r.family, r.pid, r.command, r.user] for r in rows],
                  "limitations": [str(x) for x in lims]}))
"""


def _ss(host: Host) -> set[tuple[str, int, int, int]]:
    out = set()
    for line in host.run(["ss", "-ltnpH"]).stdout.splitlines():
        parts = line.split()
        addr, _, port = parts[3].rpartition(":")
        addr = addr.strip("[]")
        fam = 6 if ":" in addr or addr == "*" else 4
        addr = {"*": "::", "0.0.0.0": "0.0.0.0"}.get(addr, addr)
        for p in parts[5].split(","):
            if p.startswith("pid="):
                out.add((addr, int(port), fam, int(p[4:])))
    return out


def test_lsof_owners_agree_with_ss(pair: tuple[Host, Host]) -> None:
    if shutil.which("lsof") is None:
        pytest.fail("lsof is not installed (scripts/test.sh installs it)")
    _c, s = pair
    procs = {
        ("0.0.0.0", 8080, "root"): s.listen(8080, "0.0.0.0"),
        ("127.0.0.1", 8081, "nobody"): s.listen(8081, "127.0.0.1", user="nobody"),
        ("::", 8443, "nobody"): s.listen(8443, "::", v6only=True, user="nobody"),
        ("::1", 6379, "root"): s.listen(6379, "::1"),
        ("10.0.0.2", 3000, "nobody"): s.listen(3000, "10.0.0.2", user="nobody"),
    }
    exe, env = python_for(None)
    got = json.loads(s.run([exe, "-c", LSOF], env=env).stdout)
    rows = {(a, p, f, pid) for a, p, f, pid, _cmd, _user in got["rows"]}
    assert rows == _ss(s)
    assert {(a, p) for a, p, _f, _pid in rows} == {(a, p) for a, p, _u in procs}
    users = {(a, p): user for a, p, _f, _pid, _cmd, user in got["rows"]}
    for (addr, port, user), proc in procs.items():
        assert (addr, port, 6 if ":" in addr else 4, proc.pid) in rows
        assert users[(addr, port)] == user, (addr, port)
    assert pwd.getpwnam("nobody").pw_uid != 0
    assert got["limitations"] == []  # root sees every process's sockets
