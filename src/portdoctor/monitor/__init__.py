"""`portdoctor watch`: availability monitoring that records why every failure happened.

config (YAML -> validated WatchConfig) -> scheduler (asyncio probes on their intervals) ->
state machine per target (up / down / dns, incidents, flapping) -> history (SQLite), alerts
(webhook, log), metrics (Prometheus) and the web dashboard, all served by one process.

Nothing here is imported by the rest of portdoctor; each module imports its heavy
dependencies (asyncio, sqlite3, pydantic, prometheus_client, aiohttp) itself.
"""

from __future__ import annotations
