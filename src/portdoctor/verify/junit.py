"""A verify Report as JUnit XML (the format CI systems read), written with the standard library.

One <testsuite> per spec; one <testcase> per expectation (classname: the entry, name: the
check). A failed expectation carries <failure> with the cause as its type, the diagnosis'
sentence as its message and evidence and fix in its text; one that could not be observed
carries <error type="unknown">, so a CI run shows it instead of passing it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from portdoctor.verify.run import Report, Result, Status


def _detail(r: Result) -> str:
    lines = [f"expected: {r.expected}", f"observed: {r.observed}"]
    if r.cause:
        lines.append(f"cause: {r.cause}")
    if r.summary:
        lines.append(f"why: {r.summary}")
    lines += [f"evidence: {e}" for e in r.evidence]
    for i, f in enumerate(r.fix, 1):
        lines.append(f"fix {i}: {f.description}" + (f"\n    {f.command}" if f.command else ""))
    return "\n".join(lines) + "\n"


def to_xml(report: Report) -> ET.Element:
    """The <testsuites> element of a report."""
    results = report.results
    fails = report.count(Status.FAIL)
    errors = report.count(Status.UNKNOWN)
    root = ET.Element("testsuites", name="portdoctor verify", tests=str(len(results)), failures=str(fails),
                      errors=str(errors), time=f"{report.seconds:.3f}")
    suite = ET.SubElement(root, "testsuite", name=report.spec, hostname=report.host, tests=str(len(results)),
                          failures=str(fails), errors=str(errors), skipped="0", time=f"{report.seconds:.3f}",
                          timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    for entry, rs in report.entries:
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=entry.name, name=r.check, file=report.spec,
                                 line=str(entry.line), time="0")
            if r.status is Status.FAIL:
                msg = f"{r.cause}: {r.summary}" if r.cause else (r.summary or f"expected {r.expected}, "
                                                                               f"observed {r.observed}")
                el = ET.SubElement(case, "failure", message=msg, type=r.cause or "mismatch")
                el.text = _detail(r)
            elif r.status is Status.UNKNOWN:
                el = ET.SubElement(case, "error", message=f"could not be observed: {r.observed}", type="unknown")
                el.text = _detail(r)
            else:
                out = ET.SubElement(case, "system-out")
                out.text = f"expected: {r.expected}\nobserved: {r.observed}\n"
    if report.limitations:
        err = ET.SubElement(suite, "system-err")
        err.text = "".join(f"could not see: {x}\n" for x in report.limitations)
    return root


def write(report: Report, path: str) -> None:
    """Write the report's JUnit XML to `path` (UTF-8, with an XML declaration)."""
    root = to_xml(report)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
