"""What the fault catalogue (test_faults_*.py) reads in a `diagnose --json`
document: the verdict, a finding, all of its words as one text, and a short form for assertion
messages. Set PD_MORE_DUMP to a file to collect every verdict in, for review."""

from __future__ import annotations

import json
import os
from typing import Any

from netlab import Host


def brief(doc: dict[str, Any]) -> str:
    """The verdict, the findings (short) and the limitations, for assertion messages."""
    return json.dumps({"probe": doc.get("probe", {}).get("state"), "verdict": doc.get("verdict"),
                       "findings": [{"cause": f["cause"], "check": f["check"], "severity": f["severity"],
                                     "summary": f["summary"]} for f in doc.get("findings", [])],
                       "limitations": doc.get("limitations")}, indent=1)


def diagnose(h: Host, target: str, *args: str) -> dict[str, Any]:
    """`portdoctor diagnose --json TARGET ARGS` in h."""
    _rc, doc = h.json_of("diagnose", target, *args)
    _dump(doc, [target, *args])
    return doc


def pod_diagnose(p: Any, h: Host, target: str, *args: str) -> dict[str, Any]:
    """diagnose in `h`, reading Podman through its API socket (see test_container_lab.Pod)."""
    _rc, doc = p.portdoctor(h, "diagnose", target, *args)
    _dump(doc, [target, *args])
    return doc


def _dump(doc: dict[str, Any], argv: list[str]) -> None:
    dump = os.environ.get("PD_MORE_DUMP")  # a file to collect every verdict in, for review
    if dump:
        with open(dump, "a") as fh:
            fh.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", ""), "argv": argv,
                                 "probe": doc.get("probe", {}).get("state"), "verdict": doc.get("verdict"),
                                 "findings": doc.get("findings"), "limitations": doc.get("limitations")}) + "\n")


def verdict(doc: dict[str, Any], *causes: str) -> dict[str, Any]:
    """The verdict, asserted to be one of `causes`."""
    assert doc["verdict"]["cause"] in causes, brief(doc)
    return doc["verdict"]


def finding(doc: dict[str, Any], cause: str) -> dict[str, Any]:
    """The first finding of `cause`, asserted to exist."""
    fs = [f for f in doc["findings"] if f["cause"] == cause]
    assert fs, brief(doc)
    return fs[0]


def text_of(f: dict[str, Any]) -> str:
    """A finding's summary, evidence and fixes, as one text."""
    return "\n".join([f["summary"], *f["evidence"],
                      *(f"{x['description']} {x.get('command') or ''}" for x in f["fix"])])


def everything(doc: dict[str, Any]) -> str:
    """Verdict summary, every finding's summary, evidence and fix, as one text."""
    parts = [doc["verdict"]["summary"]]
    for f in doc["findings"]:
        parts.append(f["summary"])
        parts.extend(f["evidence"])
        parts.extend(f"{x['description']} {x.get('command') or ''}" for x in f["fix"])
    return "\n".join(parts)


def everything_and_limitations(doc: dict[str, Any]) -> str:
    """everything(doc), then the limitations (what diagnose could not evaluate)."""
    return "\n".join([everything(doc), *(doc.get("limitations") or [])])
