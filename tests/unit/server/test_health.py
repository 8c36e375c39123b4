"""/healthz and /readyz of the daemon's app, called as an ASGI app with an injected clock:
the loop counts as stuck once no pass started or ended for ``stale_after`` seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.runtime import daemon
from controller.server import app
from controller.server.metrics import Metrics
from tests.fakes import FakeClock

pytestmark = pytest.mark.anyio


async def call(application: Any, path: str) -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("localhost", 80),
        "client": ("localhost", 1),
        "root_path": "",
    }
    await application(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def a_daemon(clock: FakeClock) -> daemon.Daemon:
    settings = daemon.Settings(desired=Path("desired"), resync=10, lock_timeout=5)
    d = daemon.Daemon(settings, lambda *_, **__: None)
    d.clock = clock
    d.ticked = clock.monotonic()
    return d


async def test_healthz_fails_once_the_loop_stops_ticking() -> None:
    clock = FakeClock()
    d = a_daemon(clock)
    served = app.build(d, Metrics(), private=True)
    assert d.stale_after() == 2 * 10 + 5 + daemon.SLOW_PASS
    await clock.sleep(d.stale_after())
    assert (await call(served, "/healthz"))[0] == 200
    await clock.sleep(0.5)
    code, body = await call(served, "/healthz")
    assert (code, body["healthy"]) == (503, False)


async def test_readyz_is_not_ready_before_a_pass() -> None:
    d = a_daemon(FakeClock())
    code, body = await call(app.build(d, Metrics(), private=False), "/readyz")
    assert code == 503
    assert body["reasons"] == ["no valid desired state yet", "no pass has run yet"]
