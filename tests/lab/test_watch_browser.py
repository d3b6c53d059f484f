"""The dashboard in a real browser: headless Chromium (Debian's), driven by Selenium.

Watch, browser and services all live in one lab namespace (only its loopback is up), so the
browser can reach nothing else. Screenshots of the overview and of the failing target's page
are kept as test artifacts; their paths are printed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from netlab import Lab, in_netns
from test_watch_lab import WatchProc, wait_for

ARTIFACTS = Path(os.environ.get("PD_ARTIFACTS", Path(tempfile.gettempdir()) / "portdoctor-artifacts"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1700"]

CONFIG = """history: {{path: {db}}}
web: {{listen: '127.0.0.1:9716'}}
defaults: {{interval: 1s, timeout: 0.5s, failures: 1, labels: {{env: prod}}}}
targets:
  - {{target: 'http://127.0.0.1:7080', name: storefront, http: {{path: /}}, labels: {{team: web}}}}
  - {{target: '127.0.0.1:7071', name: checkout-api, labels: {{team: payments}}}}
  - {{target: '127.0.0.1:7072', name: billing-db, diagnose: local, labels: {{team: payments}}}}
  - {{target: '127.0.0.1:7073', name: search, labels: {{team: web}}}}
  - {{target: 'redis://127.0.0.1:7074', name: session-cache}}
"""


def _browse(url: str, shots: Path) -> dict[str, Any]:
    """Open the dashboard, find the failing target, open its page; screenshots into `shots`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="pd-chromium-")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=opts)
    out: dict[str, Any] = {}
    try:
        driver.set_page_load_timeout(20)
        driver.get(url)
        out["title"] = driver.title
        rows = driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
        out["rows"] = [r.text for r in rows]
        driver.save_screenshot(str(shots / "watch-overview.png"))
        link = driver.find_element(By.LINK_TEXT, "billing-db")
        link.click()
        out["page_title"] = driver.title
        out["page"] = driver.find_element(By.TAG_NAME, "main").text
        out["charts"] = len(driver.find_elements(By.CSS_SELECTOR, "svg.chart"))
        driver.find_element(By.TAG_NAME, "details")  # the diagnosis block
        driver.save_screenshot(str(shots / "watch-target.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return out


def test_dashboard_in_headless_chromium(lab: Lab) -> None:
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Debian packages chromium, chromium-driver; scripts/test.sh)")
    s = lab.host("s")
    for port in (7071, 7073, 7074):
        s.listen(port, "127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="pd-watch-") as tmp:
        folder = Path(tmp)
        www = folder / "www"
        www.mkdir()
        (www / "index.html").write_text("<h1>shop</h1>\n")
        s.start(["python3", "-m", "http.server", "7080", "--bind", "127.0.0.1", "--directory", str(www)],
                ready_port=7080, ready_address="127.0.0.1")
        w = WatchProc(s, folder, CONFIG.format(db=folder / "history.db"))
        try:
            wait_for("billing-db is down with its cause", lambda: w.target("billing-db")["cause"]
                     == "service_not_running", timeout=20)
            wait_for("the others are up", lambda: all(
                w.target(n)["status"] == "up" for n in ("storefront", "checkout-api", "search", "session-cache")))
            time.sleep(1.5)  # a few checks, so the latency chart has points
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            got = in_netns(s.ns, lambda: _browse("http://127.0.0.1:9716/", ARTIFACTS))
        finally:
            assert w.stop() == 0
    assert "portdoctor watch" in got["title"]
    first = got["rows"][0]
    assert "billing-db" in first and "Down" in first and "service_not_running" in first, got["rows"]
    assert any("storefront" in r and "Up" in r for r in got["rows"])
    assert "billing-db" in got["page_title"]
    assert "Nothing listens on port 7072" in got["page"]
    assert "Diagnosis: service_not_running" in got["page"]
    assert got["charts"] >= 3  # latency, state (24 h), state (30 days)
    for name in ("watch-overview.png", "watch-target.png"):
        shot = ARTIFACTS / name
        assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
        print(f"screenshot: {shot}")
