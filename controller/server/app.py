"""The HTTP endpoints (starlette): health, readiness, metrics and the JSON API.

Every handler reads the running daemon's state; anything slow (the store, git) runs in a
worker thread, so a request never stalls the reconcile loop. The unix socket serves every
route; the TCP listener (``--metrics-addr``) only the read-only ones that show no message
text: health, readiness, metrics and status.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.runtime import status
from controller.spec import meta
from controller.spec.state import DesiredState
from controller.store import jobs

if TYPE_CHECKING:
    from controller.runtime.daemon import Daemon
    from controller.server.metrics import Metrics

JSON_LINES = "application/x-ndjson"
Handler = Callable[[Request], Any]


def build(daemon: Daemon, metrics: Metrics, *, private: bool) -> Starlette:
    """The application for one listener: ``private`` for the unix socket (every route)."""
    api = _Api(daemon, metrics)
    routes = [
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/v1/status", api.status, methods=["GET"]),
    ]
    if private:
        routes.append(Route("/v1/events", api.events, methods=["GET"]))
    return Starlette(routes=routes)


class _Api:
    def __init__(self, daemon: Daemon, metrics: Metrics) -> None:
        self.daemon = daemon
        self.gauges = metrics

    async def healthz(self, _: Request) -> Response:
        """200 while the loop ticks: a pass started or ended recently enough."""
        d = self.daemon
        age = d.clock.monotonic() - d.ticked
        limit = d.stale_after()
        body = {"healthy": age <= limit, "sinceTick": round(age, 3), "limit": limit}
        return JSONResponse(body, status_code=200 if age <= limit else 503)

    async def readyz(self, _: Request) -> Response:
        """200 when the store answers and desired state is valid, else 503 with the reasons."""
        reasons = await self._unready()
        return JSONResponse({"ready": not reasons, "reasons": reasons}, 503 if reasons else 200)

    async def _unready(self) -> list[str]:
        d = self.daemon
        reasons = ["desired state invalid"] if d.problems else []
        if d.desired is None:
            reasons.append("no valid desired state yet")
        if d.reconciler is None:
            return [*reasons, "no pass has run yet"]
        try:
            await anyio.to_thread.run_sync(d.reconciler.wiring.store.latest_event_id)
        except Exception as exc:  # any failure to reach the store is "not ready"
            reasons.append(f"store unreachable: {type(exc).__name__}")
        return reasons

    async def metrics(self, _: Request) -> Response:
        """Prometheus text format; the queue is read from the store now, the rest is the
        status the last pass left."""
        rec = self.daemon.reconciler
        if rec is not None:
            counts = await anyio.to_thread.run_sync(jobs.counts, rec.wiring.store)
            self.gauges.snapshot.queue = counts
        return Response(self.gauges.render(), media_type="text/plain; version=0.0.4")

    async def status(self, _: Request) -> Response:
        """The object ``controller status --output json`` prints, observed now."""
        d = self.daemon
        rec = d.reconciler
        if rec is None or d.seen is None:
            return JSONResponse({"error": "no pass has run yet"}, 503)
        desired = DesiredState.empty() if d.problems or d.desired is None else d.desired
        async with d.busy:  # the pass and the view share the reconciler
            view = await status.build(rec, desired, d.problems)
        view["desired"] = d.seen.to_json()
        text = json.dumps(view, indent=2, sort_keys=True, default=str)
        return Response(text + "\n", media_type="application/json")

    async def events(self, request: Request) -> Response:
        """Events as ``controller events --output json`` prints them (JSON Lines): ``lane``,
        ``kind`` (repeatable), ``since`` (a duration or an ISO time), ``limit``, ``after``."""
        rec = self.daemon.reconciler
        if rec is None:
            return JSONResponse({"error": "no pass has run yet"}, 503)
        q = request.query_params
        try:
            since = _since(q.get("since"), self.daemon.clock.now())
            limit, after = int(q.get("limit", "200")), int(q.get("after", "0"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)

        def read() -> list[Any]:
            return rec.wiring.store.read_events(
                lane=q.get("lane"), kinds=q.getlist("kind"), since=since, limit=limit, after=after
            )

        found = await anyio.to_thread.run_sync(read)
        lines = "".join(json.dumps(e.to_json(), sort_keys=True) + "\n" for e in found)
        return Response(lines, media_type=JSON_LINES)


def _since(given: str | None, now: datetime) -> datetime | None:
    """``since``: a duration back from now (30s, 10m), or a point in time (UTC unless it says)."""
    if given is None:
        return None
    with contextlib.suppress(ValueError):
        return now - timedelta(seconds=meta.parse_duration(given))
    when = datetime.fromisoformat(given)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
