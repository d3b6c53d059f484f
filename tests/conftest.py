"""Test policy shared by every test folder.

Lab tests (marked `lab`, everything under tests/lab) build real network namespaces: they need
root and the `ip` tool. When those are missing they are skipped on a developer machine, but
fail under CI=true, so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers this suite uses."""
    config.addinivalue_line("markers", "lab: builds real network namespaces (needs root and ip)")


def in_ci() -> bool:
    """True when the environment says this is a CI run (CI=true)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@lru_cache(maxsize=1)
def lab_missing() -> str | None:
    """Why lab tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces)"
    for tool in ("ip", "iptables", "nft"):
        if shutil.which(tool) is None:
            return f"lab tests need the {tool!r} tool"
    run_netns = "/run/netns"
    if os.path.exists(run_netns) and not os.access(run_netns, os.W_OK):
        return f"lab tests need to write {run_netns}"
    return None


def require_lab() -> None:
    """Skip (or, under CI=true, fail) the calling test when the lab cannot run here."""
    why = lab_missing()
    if why is None:
        return
    if in_ci():
        pytest.fail(f"{why}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(why)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Apply the lab policy to every test marked `lab`."""
    if item.get_closest_marker("lab") is not None:
        require_lab()
