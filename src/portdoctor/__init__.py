"""portdoctor: why is my TCP connection refused, and what exactly do I change to fix it?

The public API imports nothing heavy; each function loads what it needs on first use.

>>> from portdoctor import parse_target, probe
>>> probe(parse_target("127.0.0.1:1")).state.value
'refused'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from portdoctor.model import Diagnosis, ProbeResult, Target

__all__ = ["__version__", "parse_target", "probe", "diagnose", "explain"]


def parse_target(text: str, port: int | None = None) -> Target:
    """Parse `host:port`, `[v6]:port`, `:port`, a URL or a bare address (with `port`)."""
    from portdoctor.target import parse_target as _parse

    return _parse(text, port)


def probe(target: Target, timeout: float = 3.0, attempts: int = 1) -> ProbeResult:
    """Connect to every address of `target` and classify what a client sees."""
    from portdoctor.probe import probe as _probe

    return _probe(target, timeout=timeout, attempts=attempts)


def diagnose(target: Target, **options: Any) -> Diagnosis:
    """Probe, collect host facts, run every check and rank the findings."""
    from portdoctor.diagnose import diagnose as _diagnose

    return _diagnose(target, **options)


def explain(text: str) -> Any:
    """Recognise a pasted connection error: its source, errno, platform and target."""
    from portdoctor.explain import explain as _explain

    return _explain(text)
