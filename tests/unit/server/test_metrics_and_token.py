"""The wake latency histogram (delivered wakes only) and the bearer-token middleware, called
as an ASGI app: read-only routes stay open, every other path needs the exact token."""

from __future__ import annotations

from typing import Any

import pytest

from controller.executors import triggers as deliver
from controller.server import tokens
from controller.server.metrics import Metrics

R = deliver.Result


def observed(metrics: Metrics) -> tuple[float, float]:
    text = metrics.render().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("lanes_wake_latency_seconds_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values["lanes_wake_latency_seconds_count"], values["lanes_wake_latency_seconds_sum"]


def envelope(result: deliver.Result, waited: float | None) -> deliver.Envelope:
    return deliver.Envelope(result, "delivered", "bot", "review", 1, waited=waited)


def test_only_delivered_wakes_with_a_time_are_observed() -> None:
    metrics = Metrics()
    metrics.woke(
        [
            envelope(R.DELIVERED, 0.2),
            envelope(R.DELIVERED, None),  # a forced wake with nothing unread
            envelope(R.SUBMIT_UNCONFIRMED, 0.3),
            envelope(R.DEFERRED, None),
            envelope(R.DELIVERED, 1.5),
        ]
    )
    count, total = observed(metrics)
    assert count == 2
    assert total == pytest.approx(1.7)
    assert "waited" not in envelope(R.DELIVERED, 0.2).to_json()


async def _call(application: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    await application(scope, receive, send)
    return int(sent[0]["status"])


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


TOKEN = "0123456789abcdef0123"  # noqa: S105 - a test token


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "header", "status"),
    [
        ("/metrics", None, 200),
        ("/healthz", b"Bearer wrong", 200),
        ("/v1/threads/t/messages", None, 401),
        ("/v1/threads/t/messages", b"Bearer " + TOKEN.encode(), 200),
        ("/v1/threads/t/messages", b"bearer " + TOKEN.encode(), 200),
        ("/v1/threads/t/messages", b"Bearer " + TOKEN[:-1].encode(), 401),
        ("/v1/threads/t/messages", b"Bearer " + TOKEN.encode() + b"x", 401),
        ("/v1/threads/t/messages", b"Basic " + TOKEN.encode(), 401),
        ("/v1/threads/t/messages", b"Bearer", 401),
        ("/v1/events", b"", 401),
        ("/anything/else", None, 401),
    ],
)
async def test_the_token_guards_every_route_but_the_read_only_ones(
    path: str, header: bytes | None, status: int
) -> None:
    headers = [] if header is None else [(b"authorization", header)]
    assert await _call(tokens.Bearer(_app, TOKEN), path, headers) == status
