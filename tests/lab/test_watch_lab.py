"""`portdoctor watch` for real: the monitor runs as its own process inside a lab namespace,
watches a service there, and the test stops and restarts that service, blocks the webhook,
locks or write-protects the database, and sends SIGTERM.

The helpers here (WatchProc, Hook) are shared with the other test_watch_* lab tests.
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from netlab import Host, in_netns

WEB_PORT = 9716


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 15.0, every: float = 0.1) -> Any:
    """Poll `fn` until it returns something true; fail the test saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


class Hook:
    """A webhook receiver: a real HTTP server listening inside a namespace (on its loopback).

    hang=True: the socket listens but nothing ever accepts or answers (a webhook that hangs).
    """

    def __init__(self, host: Host, hang: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        sock = in_netns(host.ns, self._socket)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook?key=not-for-logs"
        self._sock = sock
        self._server: http.server.HTTPServer | None = None
        if hang:
            return
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @staticmethod
    def _socket() -> socket.socket:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        return s

    def events(self) -> list[tuple[str, str]]:
        return [(b["event"], b["name"]) for b in self.bodies]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        self._sock.close()


class WatchProc:
    """`portdoctor watch CONFIG` running inside a lab host, and ways to look at it."""

    def __init__(self, host: Host, folder: Path, config: str, wrap: list[str] | None = None,
                 port: int = WEB_PORT, address: str = "127.0.0.1", token: str | None = None) -> None:
        self.host = host
        self.address = address
        self.token = token
        self.folder = folder
        self.port = port
        self.config = folder / "watch.yaml"
        self.config.write_text(config)
        self.db = folder / "history.db"
        self.log = folder / "watch.log"
        self._log_fh = open(self.log, "w")
        argv = [*(wrap or []), sys.executable, "-m", "portdoctor", "watch", str(self.config)]
        self.proc = host.popen(argv, stderr=self._log_fh, stdout=self._log_fh)
        wait_for("the dashboard answers", lambda: self.get("/healthz") == "ok\n" or self._died(), 20)
        self._died()

    def _died(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"watch exited ({self.proc.returncode}):\n{self.log.read_text()}")
        return False

    def get(self, path: str) -> str:
        """GET a page of the watch's server from inside its namespace."""
        def fetch() -> str:
            req = urllib.request.Request(f"http://{self.address}:{self.port}{path}")
            if self.token:
                req.add_header("Authorization", f"Bearer {self.token}")
            with urllib.request.urlopen(req, timeout=3) as resp:
                return resp.read().decode()

        return in_netns(self.host.ns, fetch)

    def status(self) -> dict[str, Any]:
        return json.loads(self.get("/api/status"))

    def target(self, name: str) -> dict[str, Any]:
        return next(t for t in json.loads(self.get("/api/targets"))["targets"] if t["name"] == name)

    def metrics(self) -> str:
        return self.get("/metrics")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, and wait for the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"watch did not exit within {timeout} s of SIGTERM:\n{self.log.read_text()}")
        self._log_fh.close()
        return code

    def alive(self) -> bool:
        return self.proc.poll() is None


def wait_down(w: WatchProc, name: str = "web", timeout: float = 15.0) -> dict[str, Any]:
    """Wait until `name` is down and its cause is known (a local diagnosis takes a moment)."""
    return wait_for(f"{name} is down with its cause", lambda: (
        lambda t: t if t["status"] == "down" and t["cause"] else None)(w.target(name)), timeout)


def metric_lines(text: str, metric: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(metric + "{") or line.startswith(metric + " ")]


def has_metric(text: str, metric: str, value: str, **labels: str) -> bool:
    """True when a sample of `metric` with these labels has `value`."""
    for line in metric_lines(text, metric):
        head, _, got = line.rpartition(" ")
        if got == value and all(f'{k}="{v}"' in head for k, v in labels.items()):
            return True
    return False


def config(hook: Hook | None, extra_targets: str = "", *, webhook: str = "", alerts: str = "",
           web: str = "") -> str:
    hook_line = f"  webhook: {{url: '{hook.url}', timeout: 1s, retries: 2, backoff: 0.2s}}\n" if hook else ""
    return (f"history: {{path: HISTORY}}\n"
            f"web: {{listen: '127.0.0.1:{WEB_PORT}'{web}}}\n"
            f"alerts:\n  group_wait: 0\n{hook_line}{webhook}{alerts}"
            "defaults: {interval: 0.5s, timeout: 0.4s, failures: 2, successes: 1}\n"
            "targets:\n"
            "  - {target: '10.0.0.2:7070', name: web, diagnose: local, labels: {team: shop}}\n"
            + extra_targets)


@pytest.fixture
def folder() -> Any:
    with tempfile.TemporaryDirectory(prefix="pd-watch-") as d:
        yield Path(d)


def start(s: Host, folder: Path, cfg: str, **kw: Any) -> WatchProc:
    return WatchProc(s, folder, cfg.replace("HISTORY", str(folder / "history.db")), **kw)


# --------------------------------------------------------------------------- the done-when test


def test_stopped_and_restarted_service_is_recorded_alerted_and_exported(pair: tuple[Host, Host], folder: Path) -> None:
    _c, s = pair
    service = s.listen(7070)
    hook = Hook(s)
    w = start(s, folder, config(hook))
    try:
        wait_for("web is up", lambda: w.target("web")["status"] == "up")
        assert has_metric(w.metrics(), "probe_success", "1.0", name="web", team="shop")

        service.kill()  # the service stops
        service.wait()
        t = wait_down(w)
        assert t["state"] == "refused" and t["cause"] == "service_not_running", t
        m = w.metrics()
        assert has_metric(m, "probe_success", "0.0", name="web")
        assert has_metric(m, "portdoctor_target_state", "1.0", name="web", state="refused")
        assert has_metric(m, "portdoctor_target_cause", "1.0", name="web", cause="service_not_running")
        assert has_metric(m, "portdoctor_target_status", "1.0", name="web", status="down")

        service = s.listen(7070)  # and comes back
        wait_for("web is up again", lambda: w.target("web")["status"] == "up")
        m = w.metrics()
        assert has_metric(m, "probe_success", "1.0", name="web")
        assert has_metric(m, "portdoctor_target_state", "1.0", name="web", state="open")
        assert has_metric(m, "portdoctor_target_cause", "1.0", name="web", cause="ok")
        wait_for("both alerts delivered", lambda: len(hook.bodies) >= 2)
        assert hook.events() == [("down", "web"), ("up", "web")]
        down, up = hook.bodies
        assert down["cause"] == "service_not_running" and down["state"] == "refused"
        assert "nothing listens on port 7070" in down["summary"].lower()
        assert down["evidence"] and down["labels"] == {"team": "shop"}
        assert up["cause"] == "ok" and up["incident"] == down["incident"]
        assert "not-for-logs" not in w.log.read_text()  # the webhook's query string is never logged
    finally:
        code = w.stop()
        hook.close()
    assert code == 0, w.log.read_text()
    assert "stopped" in w.log.read_text()

    # SIGTERM flushed the history and checkpointed the WAL into the file
    wal = Path(str(w.db) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    db = sqlite3.connect(w.db)
    rows = db.execute("SELECT e.status, e.state, e.cause, e.detail FROM events e JOIN targets t "
                      "ON t.id = e.target_id WHERE t.name = 'web' ORDER BY e.at").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("up", "open", "ok"), ("down", "refused", "service_not_running"), ("up", "open", "ok")], rows
    detail = json.loads(rows[1][3])
    assert detail["diagnosis"]["verdict"]["cause"] == "service_not_running"
    assert detail["probe"]["addresses"][0]["errno"] == "ECONNREFUSED"
    (inc,) = db.execute("SELECT kind, cause, closed IS NOT NULL FROM incidents").fetchall()
    assert inc == ("down", "service_not_running", 1)
    checks = db.execute("SELECT sum(checks), sum(ok) FROM checks_minute").fetchone()
    assert checks[1] >= 2 and checks[0] - checks[1] >= 2  # good checks, and the failed ones
    db.close()

    # and `portdoctor history` reads it back
    cp = s.portdoctor("history", "web", "--db", str(w.db), "--json")
    assert cp.returncode == 0, cp.stderr
    doc = json.loads(cp.stdout)
    assert [e["cause"] for e in doc["events"]] == ["ok", "service_not_running", "ok"]
    assert doc["incidents"][0]["cause"] == "service_not_running"


# --------------------------------------------------------------------------- survival


def test_a_flapping_service_is_one_incident_and_few_alerts(pair: tuple[Host, Host], folder: Path) -> None:
    _c, s = pair
    hook = Hook(s)
    service = s.listen(7070)
    w = start(s, folder, config(hook, alerts="  flap_window: 60s\n  flap_changes: 4\n").replace(
        "failures: 2", "failures: 1"))
    try:
        wait_for("web is up", lambda: w.target("web")["status"] == "up")
        for _ in range(5):  # down and up, again and again
            service.kill()
            service.wait()
            wait_for("web down", lambda: w.target("web")["status"] == "down")
            service = s.listen(7070)
            wait_for("web up", lambda: w.target("web")["status"] == "up")
        t = w.target("web")
        assert t["flapping"], t
        assert w.alive()
        time.sleep(0.5)
        events = [e for e, _n in hook.events()]
        assert events == ["down", "up", "down", "flapping"], hook.events()
        assert len({b["incident"] for b in hook.bodies}) == 1
        assert has_metric(w.metrics(), "portdoctor_target_flapping", "1.0", name="web")
    finally:
        code = w.stop()
        hook.close()
    assert code == 0
    db = sqlite3.connect(w.db)
    incidents = db.execute("SELECT kind, changes FROM incidents").fetchall()
    db.close()
    assert len(incidents) == 1 and incidents[0][0] == "flapping" and incidents[0][1] >= 9, incidents


def test_a_hanging_webhook_delays_nothing_and_a_bad_reload_changes_nothing(pair: tuple[Host, Host],
                                                                          folder: Path) -> None:
    _c, s = pair
    hook = Hook(s, hang=True)
    w = start(s, folder, config(hook))
    try:
        t = wait_down(w)
        assert t["cause"] == "service_not_running"
        probes = w.status()["probes"]
        t0 = time.monotonic()
        w.metrics()
        assert time.monotonic() - t0 < 1.0  # the server answers while the webhook hangs
        # 3 attempts of 1 s, with backoff, all timed out; probing went on meanwhile
        st = wait_for("the delivery failed", lambda: (lambda st: st if st["alerts"]["failed"] else None)(w.status()),
                      timeout=10)
        assert st["probes"] >= probes + 6 and st["lag"]["p99"] < 0.5
        assert "no answer within 1 s" in w.log.read_text()
        assert "not-for-logs" not in w.log.read_text()

        # a reload with a broken config is rejected; the running one stays
        good = w.config.read_text()
        w.config.write_text(good + "  - {target: '10.0.0.2:9999', nmae: typo}\n")
        w.proc.send_signal(signal.SIGHUP)
        st = wait_for("the reload was rejected", lambda: (lambda st: st if st["config_errors"] else None)(w.status()))
        assert "nmae: unknown key" in st["config_errors"][0] and st["targets"] == 1
        assert has_metric(w.metrics(), "portdoctor_watch_config_ok", "0.0")
        # a good one is installed
        w.config.write_text(good + "  - {target: '10.0.0.2:9999', name: other}\n")
        w.proc.send_signal(signal.SIGHUP)
        wait_for("the reload was installed", lambda: w.status()["targets"] == 2 and not w.status()["config_errors"])
        wait_for("the new target is checked", lambda: w.target("other")["status"] == "down")
        assert w.alive()
    finally:
        code = w.stop()
        hook.close()
    assert code == 0


def test_a_locked_database_is_reported_and_probing_goes_on(pair: tuple[Host, Host], folder: Path) -> None:
    _c, s = pair
    service = s.listen(7070)
    hook = Hook(s)
    w = start(s, folder, config(hook))
    locker = None
    try:
        wait_for("web is up", lambda: w.target("web")["status"] == "up")
        wait_for("history written", lambda: w.status()["history"]["ok"])
        locker = sqlite3.connect(w.db, timeout=5, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another program holds the database
        service.kill()
        service.wait()
        st = wait_for("the lock is reported", lambda: (lambda st: st if st["history"]["ok"] is False else None)(
            w.status()), timeout=20)
        assert "locked" in st["history"]["error"]
        assert "portdoctor_watch_history_ok 0.0" in w.metrics()
        assert "History is not being written" in w.get("/")
        wait_for("the down alert went out anyway", lambda: ("down", "web") in hook.events())
        probes = w.status()["probes"]
        wait_for("probing goes on", lambda: w.status()["probes"] > probes + 4)
        locker.execute("ROLLBACK")
        locker.close()
        locker = None
        wait_for("history written again", lambda: w.status()["history"]["ok"], timeout=20)
        db = sqlite3.connect(w.db)
        events = db.execute("SELECT status, cause FROM events ORDER BY at").fetchall()
        db.close()
        assert ("down", "service_not_running") in events, events  # kept in memory, written later
    finally:
        if locker is not None:
            locker.close()
        code = w.stop()
        hook.close()
    assert code == 0


def test_a_read_only_database_is_reported_and_probing_goes_on(pair: tuple[Host, Host], folder: Path) -> None:
    _c, s = pair
    hook = Hook(s)
    histdir = folder / "ro"
    histdir.mkdir()
    from portdoctor.monitor.history import SqliteStore

    store = SqliteStore(str(histdir / "history.db"))
    store.open()
    store.close()
    cfg = config(hook).replace("HISTORY", str(histdir / "history.db"))
    # a private mount namespace in which the history folder is mounted read-only
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind "{histdir}" "{histdir}" && mount -o remount,bind,ro "{histdir}" && exec "$@"', "sh"]
    w = WatchProc(s, folder, cfg, wrap=wrap)
    try:
        t = wait_down(w)
        assert t["cause"] == "service_not_running"
        st = wait_for("the read-only file is reported",
                      lambda: (lambda st: st if st["history"]["ok"] is False else None)(w.status()), timeout=20)
        assert "read-only" in st["history"]["error"], st
        wait_for("the alert went out anyway", lambda: ("down", "web") in hook.events())
        probes = st["probes"]
        wait_for("probing goes on", lambda: w.status()["probes"] > probes + 4)
        assert w.alive()
    finally:
        code = w.stop()
        hook.close()
    assert code == 0
    assert "could not be written before exit" in w.log.read_text()


# --------------------------------------------------------------------------- cause-aware alerts


def test_an_unreachable_host_is_one_alert_and_dns_is_its_own_state(pair: tuple[Host, Host], folder: Path) -> None:
    _c, s = pair
    hook = Hook(s)
    # 10.0.0.9 is on s's link but no host has it: ARP fails, EHOSTUNREACH after about 3 s.
    # The name resolves through s's own resolver setting (127.0.0.1 in the namespace, where
    # nothing answers): a DNS failure that never leaves the namespace.
    targets = "".join(f"  - {{target: '10.0.0.9:{p}', name: far-{p}, timeout: 4s, interval: 5s}}\n"
                      for p in (22, 80, 443))
    targets += "  - {target: 'db.lab.invalid:5432', name: db-by-name}\n"
    cfg = config(hook, targets, alerts="  group_wait: 2s\n").replace("  group_wait: 0\n", "", 1)
    cfg = cfg.replace("failures: 2", "failures: 1")
    service = s.listen(7070)
    w = start(s, folder, cfg)
    try:
        wait_for("the three far targets are down", lambda: all(
            w.target(f"far-{p}")["status"] == "down" for p in (22, 80, 443)), timeout=20)
        assert {w.target(f"far-{p}")["state"] for p in (22, 80, 443)} == {"unreachable"}
        dns = wait_for("db-by-name has its own status", lambda: (lambda t: t if t["status"] == "dns" else None)(
            w.target("db-by-name")))
        assert dns["state"] == "dns_error" and dns["cause"] == "dns"
        wait_for("the host alert", lambda: any(b["name"] == "host 10.0.0.9" for b in hook.bodies), timeout=10)
        time.sleep(1)
        host_alerts = [b for b in hook.bodies if b["host"] == "10.0.0.9"]
        assert len(host_alerts) == 1, hook.events()  # one alert for the host, not one per port
        assert host_alerts[0]["targets"] == ["far-22", "far-443", "far-80"]
        assert host_alerts[0]["state"] == "unreachable" and host_alerts[0]["cause"] == "host_unreachable"
        assert [b["event"] for b in hook.bodies if b["name"] == "db-by-name"] == ["dns"]
        assert w.target("web")["status"] == "up"  # and the rest is untouched
        assert has_metric(w.metrics(), "portdoctor_target_status", "1.0", name="db-by-name", status="dns")
    finally:
        assert w.stop() == 0
        hook.close()
        service.kill()
