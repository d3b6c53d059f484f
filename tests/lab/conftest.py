"""Lab fixtures: `lab` (a fresh Lab, always torn down) and `pair` (client c, server s)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import netlab  # noqa: E402
from netlab import Host, Lab  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/lab is a lab test, marked or not."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A Lab whose namespaces, processes and folders are removed after the test, pass or fail."""
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        the_lab.teardown()


@pytest.fixture
def pair(lab: Lab) -> tuple[Host, Host]:
    """Client "c" (10.0.0.1, fd00::1) and server "s" (10.0.0.2, fd00::2) joined by a veth."""
    return lab.pair()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Last safety net: tear down forgotten Labs and remove any namespace of this process."""
    netlab._teardown_all()
    removed = netlab.remove_leftovers()
    if removed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"netlab: removed namespaces left behind: {', '.join(removed)}", yellow=True)
