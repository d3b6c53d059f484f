"""Alert routing and webhook delivery against a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from aiohttp import web

from portdoctor.monitor.alerts import Alert, AlertRouter
from portdoctor.monitor.config import AlertSettings, Webhook


def alert(event: str, name: str, state: str = "refused", host: str = "10.0.0.2") -> Alert:
    return Alert(event=event, name=name, target=f"{host}:80", at=time.time(), state=state,
                 cause="host_unreachable" if state == "unreachable" else "service_not_running",
                 summary=f"{name} {event}", incident=1, host=host)


async def receiver(statuses: list[int], delay: float = 0.0) -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    """A webhook receiver answering `statuses` in turn (then 200); returns (runner, url, bodies)."""
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook?key=secret", got


def test_webhook_retries_with_backoff_then_delivers() -> None:
    async def main() -> tuple[list[dict[str, Any]], dict[str, int], float]:
        runner, url, got = await receiver([500, 503])
        router = AlertRouter(AlertSettings(log=False, webhook=Webhook(url, timeout=2, retries=3, backoff=0.1)))
        t0 = time.monotonic()
        router.submit(alert("down", "web"))
        await router.close(grace=5)
        took = time.monotonic() - t0
        await runner.cleanup()
        return got, router.counts, took

    got, counts, took = asyncio.run(main())
    assert len(got) == 3 and counts["sent"] == 1 and counts["failed"] == 0
    assert took >= 0.3  # 0.1 + 0.2 s of backoff
    body = got[-1]
    assert body["schema"] == "portdoctor.alert/1" and body["event"] == "down" and body["name"] == "web"
    assert body["cause"] == "service_not_running" and body["targets"] == ["web"]


def test_a_hanging_webhook_times_out_and_is_reported() -> None:
    async def main() -> tuple[dict[str, int], str | None, float]:
        hang = socket.socket()
        hang.bind(("127.0.0.1", 0))
        hang.listen(8)  # accepts (in the kernel) and never answers
        url = f"http://127.0.0.1:{hang.getsockname()[1]}/hook?token=secret"
        router = AlertRouter(AlertSettings(log=False, webhook=Webhook(url, timeout=0.3, retries=1, backoff=0.05)))
        t0 = time.monotonic()
        router.submit(alert("down", "web"))
        # the router never blocks its caller: submitting is immediate
        assert time.monotonic() - t0 < 0.05
        await asyncio.sleep(1.0)
        await router.close(grace=0.5)
        hang.close()
        return router.counts, router.last_error, time.monotonic() - t0

    counts, last_error, took = asyncio.run(main())
    assert counts["failed"] == 1 and counts["sent"] == 0
    assert last_error is not None and "no answer within 0.3 s" in last_error
    assert "secret" not in last_error  # the query string may hold a credential: never shown
    assert took < 3


def test_unreachable_targets_of_one_host_raise_one_alert() -> None:
    async def main() -> list[dict[str, Any]]:
        runner, url, got = await receiver([])
        router = AlertRouter(AlertSettings(log=False, group_wait=0.2, webhook=Webhook(url, timeout=2, retries=0)))
        for name in ("ssh", "web", "db"):
            router.submit(alert("down", name, "unreachable", host="10.0.0.9"))
        router.submit(alert("down", "other", "refused", host="10.0.0.3"))
        await asyncio.sleep(0.5)
        router.submit(alert("down", "late", "unreachable", host="10.0.0.9"))  # joins the open group: silent
        for name in ("ssh", "web", "db"):
            router.submit(alert("up", name, "open", host="10.0.0.9"))
        await asyncio.sleep(0.1)
        n_before_last = len(got)
        router.submit(alert("up", "late", "open", host="10.0.0.9"))  # the last one back: the host is up
        await router.close(grace=2)
        await runner.cleanup()
        assert n_before_last == 2
        return got

    got = asyncio.run(main())
    summary = [(b["event"], b["name"]) for b in got]
    assert summary == [("down", "other"), ("down", "host 10.0.0.9"), ("up", "host 10.0.0.9")], summary
    assert got[1]["targets"] == ["db", "ssh", "web"] and got[1]["state"] == "unreachable"


def test_a_host_that_recovers_within_group_wait_alerts_nobody() -> None:
    async def main() -> list[dict[str, Any]]:
        runner, url, got = await receiver([])
        router = AlertRouter(AlertSettings(log=False, group_wait=0.3, webhook=Webhook(url, timeout=2, retries=0)))
        router.submit(alert("down", "ssh", "unreachable", host="10.0.0.9"))
        router.submit(alert("up", "ssh", "open", host="10.0.0.9"))
        await asyncio.sleep(0.5)
        await router.close(grace=1)
        await runner.cleanup()
        return got

    assert asyncio.run(main()) == []
