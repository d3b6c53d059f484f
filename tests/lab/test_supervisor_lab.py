"""supervisord from Debian running a program that crashes, inside a lab namespace."""

from __future__ import annotations

from pathlib import Path

from netlab import Host
from servers import supervisord

# the programs of supervisord.conf (after servers.SUPERVISORD_CONF) in the folder {d}
PROGRAMS = """
[program:billing]
command=/bin/sh -c "echo 'billing: cannot open /etc/billing.yml' >&2; exit 3" --listen 0.0.0.0:8085
startsecs=1
startretries=1
stderr_logfile={d}/billing.err

[program:report]
command=/bin/sh -c "echo 'report done'; exit 4" --port 8086
startsecs=0
autorestart=false

[program:idle]
command=/bin/sleep 300 --port 8087
autostart=false
"""


def start(s: Host, tmp: Path) -> Path:
    """supervisord with PROGRAMS, once billing has given up (FATAL) and report has exited."""
    return supervisord(s, tmp, PROGRAMS.format(d=tmp), "FATAL", "EXITED", seconds=20)


def test_crashed_program_with_state_and_exit_status(pair: tuple[Host, Host], tmp_path: Path) -> None:
    _c, s = pair
    conf = start(s, tmp_path)
    rc, doc = s.json_of("diagnose", "10.0.0.2:8085", "--from", "10.0.0.1")
    assert rc == 1
    v = doc["verdict"]
    assert v["cause"] == "service_not_running", doc
    assert "supervisord program billing crashed (exit status 3)" in v["summary"]
    assert "FATAL" in v["summary"]
    f = next(f for f in doc["findings"] if f["check"] == "supervisor")
    ev = "\n".join(f["evidence"])
    assert "billing: cannot open /etc/billing.yml" in ev
    assert "exited: billing (exit status 3; not expected)" in ev
    assert [x["command"] for x in f["fix"]][-1] == f"supervisorctl -c {conf} start billing"


def test_exited_program_is_not_restarted(pair: tuple[Host, Host], tmp_path: Path) -> None:
    _c, s = pair
    start(s, tmp_path)
    rc, doc = s.json_of("diagnose", "127.0.0.1:8086")
    v = doc["verdict"]
    assert v["cause"] == "service_not_running", doc
    assert "supervisord program report exited (exit status 4)" in v["summary"]
    assert "autorestart=false" in v["summary"]


def test_stopped_program_with_autostart_false(pair: tuple[Host, Host], tmp_path: Path) -> None:
    _c, s = pair
    conf = start(s, tmp_path)
    rc, doc = s.json_of("diagnose", "127.0.0.1:8087")
    v = doc["verdict"]
    assert v["cause"] == "service_not_running", doc
    assert "supervisord program idle is stopped (autostart=false)" in v["summary"]
    fixes = [x["description"] for f in doc["findings"] for x in f["fix"]]
    assert f"set autostart=true in [program:idle] of {conf} so it starts with supervisord" in fixes


def test_silent_about_an_absent_init_system(pair: tuple[Host, Host], tmp_path: Path) -> None:
    _c, s = pair
    start(s, tmp_path)
    rc, doc = s.json_of("diagnose", "127.0.0.1:8085")
    if Path("/proc/1/comm").read_text().strip() != "systemd":
        text = str(doc["findings"]).replace("supervisord", "").replace(str(tmp_path), "TMP")
        assert "systemd" not in text and "systemctl" not in text and "journalctl" not in text
