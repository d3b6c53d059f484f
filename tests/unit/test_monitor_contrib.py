"""contrib/: the Prometheus rules and the Grafana dashboard use only metrics watch exports."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from portdoctor.monitor.config import parse_config
from portdoctor.monitor.metrics import registry_for, scrape
from portdoctor.monitor.service import Watch

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "portdoctor-rules.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "portdoctor-watch.json"
PROMQL_WORDS = {"sum", "by", "max", "count", "avg", "avg_over_time", "rate", "histogram_quantile", "and", "on",
                "unless", "label_replace", "or", "vector", "le", "name", "cause", "state", "status", "instance",
                "job", "target", "host", "quantile", "group_left", "without"}


def exported_names(tmp_path: Path) -> set[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = parse_config(f"history: {{path: {tmp_path / 'h.db'}}}\ntargets: [{{target: '127.0.0.1:{port}'}}]\n")

    async def main() -> str:
        w = Watch(cfg)
        from portdoctor.monitor.scheduler import Scheduler

        w.scheduler = Scheduler(w._job)
        await w.check(next(iter(w.lives.values())))
        return (await scrape(w, registry_for(w))).decode()

    text = asyncio.run(main())
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    return names | {"up"}  # Prometheus adds `up` to every scrape


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values and regexes
    expr = re.sub(r"\{[^}]*\}", "", expr)  # selectors
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|on|without)\s*\([^)]*\)", "", expr)  # grouping labels
    return {w for w in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr) if w not in PROMQL_WORDS}


def test_rules_and_dashboard_use_only_exported_metrics(tmp_path: Path) -> None:
    names = exported_names(tmp_path)
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"].split("(", 1)[1].rsplit(",", 1)[0] for v in dash["templating"]["list"]]
    assert len(exprs) > 20
    for expr in exprs:
        unknown = metric_names(expr) - names
        assert not unknown, f"{expr!r} uses {unknown}, which watch does not export"


def test_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    cp = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr


@pytest.mark.parametrize("target,host", [("10.0.0.9:22", "10.0.0.9"), ("[fd00::9]:5432", "fd00::9"),
                                         ("db.internal:5432", "db.internal"), ("http://10.0.0.9:8080/x", "10.0.0.9"),
                                         ("postgres://app@db/prod", "db"), ("https://[::1]/", "::1")])
def test_host_unreachable_rule_extracts_the_host(target: str, host: str) -> None:
    rules = yaml.safe_load(RULES.read_text())
    expr = next(r["expr"] for g in rules["groups"] for r in g["rules"] if r["alert"] == "PortdoctorHostUnreachable")
    pattern = re.search(r'"target", "(.*)"\)', expr).group(1).encode().decode("unicode_escape")
    m = re.fullmatch(pattern, target)  # Prometheus anchors label_replace regexes
    assert m is not None and m.group(1) == host
