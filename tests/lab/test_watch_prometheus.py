"""A real Prometheus (Debian's) scrapes two `portdoctor watch` instances in two namespaces.

    a (10.0.1.2) --- p (10.0.1.1, 10.0.2.1: Prometheus on its loopback) --- b (10.0.2.2)

Each watch listens on its namespace's address, so it needs its access token; Prometheus sends
it (authorization.credentials_file) and loads contrib's alert rules. Prometheus keeps its data
in a temporary folder and talks to nothing but the two watches.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from netlab import Host, Lab, in_netns
from test_watch_lab import WatchProc, wait_for

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "portdoctor-rules.yml"
TOKEN = "lab-token-0123456789"


def watch_config(folder: Path, address: str) -> str:
    return (f"history: {{path: {folder / 'history.db'}}}\n"
            f"web: {{listen: '{address}:9716', token_file: {folder / 'token'}}}\n"
            "defaults: {interval: 0.5s, timeout: 0.4s, failures: 1, labels: {site: lab}}\n"
            "targets:\n"
            f"  - {{target: '{address}:7070', name: app, diagnose: local}}\n"
            f"  - {{target: '{address}:7071', name: gone, diagnose: local}}\n")


def query(p: Host, promql: str) -> list[dict[str, Any]]:
    def fetch() -> list[dict[str, Any]]:
        url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=3) as resp:
            doc = json.loads(resp.read())
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    return in_netns(p.ns, fetch)


def test_prometheus_scrapes_two_watches(lab: Lab) -> None:
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed (Debian package prometheus; scripts/test.sh installs it)")
    p, a, b = lab.host("p"), lab.host("a"), lab.host("b")
    lab.link(p, a, "10.0.1.1/24", "10.0.1.2/24")
    lab.link(p, b, "10.0.2.1/24", "10.0.2.2/24")
    with tempfile.TemporaryDirectory(prefix="pd-prom-") as tmp:
        root = Path(tmp)
        watches = []
        for host, address in ((a, "10.0.1.2"), (b, "10.0.2.2")):
            folder = root / host.name
            folder.mkdir()
            (folder / "token").write_text(TOKEN + "\n")
            host.listen(7070, address)
            watches.append(WatchProc(host, folder, watch_config(folder, address), address=address, token=TOKEN))
        # without the token, a watch bound wider than loopback answers 401
        denied = in_netns(p.ns, lambda: _status("http://10.0.1.2:9716/metrics"))
        assert denied == 401

        prom = root / "prom"
        prom.mkdir()
        (prom / "token").write_text(TOKEN)
        shutil.copy(RULES, prom / "rules.yml")
        (prom / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n"
            "  - job_name: portdoctor\n"
            f"    authorization: {{type: Bearer, credentials_file: {prom / 'token'}}}\n"
            "    static_configs: [{targets: ['10.0.1.2:9716', '10.0.2.2:9716']}]\n")
        p.start(["prometheus", f"--config.file={prom / 'prometheus.yml'}", f"--storage.tsdb.path={prom / 'data'}",
                 "--web.listen-address=127.0.0.1:9090", "--log.level=warn"], ready_port=9090,
                ready_address="127.0.0.1", timeout=30)
        try:
            ups = wait_for("both watches scraped", lambda: (lambda r: r if len(r) == 2 else None)(
                [x for x in query(p, 'up{job="portdoctor"} == 1')]), timeout=30, every=0.5)
            assert {x["metric"]["instance"] for x in ups} == {"10.0.1.2:9716", "10.0.2.2:9716"}
            series = wait_for("probe_success of every target", lambda: (lambda r: r if len(r) == 4 else None)(
                query(p, 'probe_success{job="portdoctor", site="lab"}')), timeout=20, every=0.5)
            got = {(x["metric"]["instance"], x["metric"]["name"]): x["value"][1] for x in series}
            assert got == {("10.0.1.2:9716", "app"): "1", ("10.0.1.2:9716", "gone"): "0",
                           ("10.0.2.2:9716", "app"): "1", ("10.0.2.2:9716", "gone"): "0"}, got
            causes = wait_for("the cause of the failing targets", lambda: (lambda r: r if len(r) == 2 else None)(
                query(p, 'portdoctor_target_cause{cause="service_not_running"} == 1')), timeout=20, every=0.5)
            assert {x["metric"]["name"] for x in causes} == {"gone"}
            # contrib's rules loaded and evaluate against these series
            rules = in_netns(p.ns, lambda: json.loads(urllib.request.urlopen(
                "http://127.0.0.1:9090/api/v1/rules", timeout=3).read()))
            groups = {g["name"]: g for g in rules["data"]["groups"]}
            assert set(groups) == {"portdoctor-targets", "portdoctor-watch"}
            assert all(r["health"] == "ok" for g in groups.values() for r in g["rules"]), groups
            pending = wait_for("PortdoctorTargetDown pending for both", lambda: (lambda r: r if len(r) == 2 else None)(
                query(p, 'ALERTS{alertname="PortdoctorTargetDown"}')), timeout=20, every=0.5)
            assert {x["metric"]["cause"] for x in pending} == {"service_not_running"}
        finally:
            for w in watches:
                assert w.stop() == 0


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code

