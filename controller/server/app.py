"""The HTTP endpoints (starlette): health, readiness, metrics and the JSON API.

Every handler reads the running daemon's state; anything slow (the store, git) runs in a
worker thread, so a request never stalls the reconcile loop. The unix socket serves every
route; the TCP listener (``--metrics-addr``) only the read-only ones that show no message
text: health, readiness, metrics, status and the web status page at ``/``; with a bearer
token (``--api-token-file``) it serves every route, the others only to requests that carry
the token (``tokens.Bearer``).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from controller.runtime import messages, sources, status
from controller.server import page, tokens, views
from controller.server.metrics import read_store
from controller.spec import meta
from controller.spec.state import DesiredState
from controller.store import messaging

if TYPE_CHECKING:
    from controller.runtime.daemon import Daemon
    from controller.server.metrics import Metrics

JSON_LINES = "application/x-ndjson"
FOLLOW_POLL = 0.5  # seconds between looks for new events while following (as the command)
FOLLOW_AFTER = "X-Follow-After"  # the id following goes on after: the newest event at the start


def build(
    daemon: Daemon,
    metrics: Metrics,
    *,
    private: bool,
    texts: views.Texts | None = None,
    token: str | None = None,
) -> ASGIApp:
    """The application for one listener: ``private`` for the unix socket (every route); a
    public one with a ``token`` serves every route too, but the writing ones need the token.
    ``texts`` draws views as the command line prints them (``format=text``)."""
    api = _Api(daemon, metrics, texts)
    more = views.Routes(daemon, texts)
    routes = [
        Route("/", api.web_page, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/v1/status", api.status, methods=["GET"]),
    ]
    if private or token is not None:  # the event log may carry text; the rest changes state
        routes += [
            Route("/v1/events", api.events, methods=["GET"]),
            Route("/v1/threads/{thread}/messages", api.post, methods=["POST"]),
            Route("/v1/threads/{thread}/read", api.read, methods=["POST"]),
            Route("/v1/heartbeat", api.heartbeat, methods=["POST"]),
            Route("/v1/triggers", more.triggers, methods=["GET"]),
            Route("/v1/runs", more.runs, methods=["GET"]),
            Route("/v1/runs", more.submit, methods=["POST"]),
            Route("/v1/runs/{run}", more.run, methods=["GET"]),
            Route("/v1/runs/{run}/abort", more.abort, methods=["POST"]),
        ]
    application = Starlette(routes=routes)
    return application if private or token is None else tokens.Bearer(application, token)


class _BadRequest(Exception):
    """A request body that is not the JSON object with string fields the route wants."""


async def _fields(request: Request, *names: str) -> list[str]:
    try:
        given = await request.json()
    except ValueError as exc:
        raise _BadRequest(f"the body is not JSON ({exc})") from None
    if not isinstance(given, dict):
        raise _BadRequest("the body must be a JSON object")
    values = [given.get(name) for name in names]
    if not all(isinstance(v, str) for v in values):
        raise _BadRequest(f"the body must give {', '.join(names)} as strings")
    return [str(v) for v in values]


_error = views.error
OTHER_WORKSPACE = views.OTHER_WORKSPACE  # Misdirected Request: the thin client falls back


async def _elsewhere(daemon: Daemon, request: Request) -> Response | None:
    """421 when the caller says it works on another desired folder or store than this daemon.

    The thin client (``controller.fast``) finds the socket from its desired folder without
    reading the Workspace, so it says which folder (and store, when given) it means; without
    these fields nothing is checked.
    """
    given = await request.json()
    return _misdirected(daemon, given.get("desired"), given.get("state"))


_misdirected = views.misdirected  # 421 unless desired and state (when given) are the daemon's


class _Api:
    def __init__(self, daemon: Daemon, metrics: Metrics, texts: views.Texts | None) -> None:
        self.daemon = daemon
        self.gauges = metrics
        self.texts = texts

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
        if d.reconciler is None or not d.passes:
            return [*reasons, "no pass has run yet"]
        try:
            await anyio.to_thread.run_sync(d.reconciler.wiring.store.latest_event_id)
        except Exception as exc:  # any failure to reach the store is "not ready"
            reasons.append(f"store unreachable: {type(exc).__name__}")
        paths = d.reconciler.wiring.paths
        if paths.hosted and (d.lease is None or not d.lease.held()):
            reasons.append(f"host lease of {paths.host} not held")
        return reasons

    async def metrics(self, _: Request) -> Response:
        """Prometheus text format; the queue and usage are read from the store now, the rest
        is the status the last pass left."""
        d = self.daemon
        rec = d.reconciler
        if rec is not None:
            read = functools.partial(read_store, rec.wiring.store, d.desired, d.clock.now())
            snapshot = self.gauges.snapshot
            snapshot.queue, snapshot.oldest, snapshot.usage = await anyio.to_thread.run_sync(read)
        return Response(self.gauges.render(), media_type="text/plain; version=0.0.4")

    async def status(self, request: Request) -> Response:
        """The object ``controller status --output json`` prints, observed now; with
        ``format=text`` what ``controller status`` prints, drawn ``width`` columns wide
        (default 200, as into a pipe), in colour with ``color=1``."""
        q = request.query_params
        if (misdirected := _misdirected(self.daemon, q.get("desired"), q.get("state"))) is not None:
            return misdirected
        chosen, width = q.get("format", "json"), q.get("width", "200")
        if chosen not in ("json", "text") or not width.isdigit() or not 0 < int(width) < 10000:
            return _error("format is json or text; width a number of columns", 400)
        if chosen == "text" and self.texts is None:
            return _error("text is drawn only when the command line runs the daemon", 400)
        view = await self._view(afresh="desired" in q)
        if view is None:
            return JSONResponse({"error": "no pass has run yet"}, 503)
        if chosen == "json":
            text = json.dumps(view, indent=2, sort_keys=True, default=str) + "\n"
            return Response(text, media_type="application/json")
        assert self.texts is not None
        draw = functools.partial(
            self.texts.status, view, color=q.get("color") == "1", width=int(width)
        )
        return Response(await anyio.to_thread.run_sync(draw), media_type=views.TEXT)

    async def web_page(self, request: Request) -> Response:
        """The web status page: the same view as HTML (``page.render``); ``refresh=0`` turns
        the page's reload off."""
        view = await self._view()
        headers = {"Content-Security-Policy": page.CSP, "Cache-Control": "no-store"}
        if view is None:
            return HTMLResponse("<p>no pass has run yet</p>", 503, headers=headers)
        refresh = 0 if request.query_params.get("refresh") == "0" else page.REFRESH
        return HTMLResponse(page.render(view, refresh=refresh), headers=headers)

    async def _view(self, *, afresh: bool = False) -> dict[str, Any] | None:
        """``status --output json``'s object, observed now; None before the first pass.

        ``afresh`` (the thin client's ``status``): desired state read from the folder now, as
        the command reads it, rather than as the daemon last loaded it (which lags an edit by
        the debounce)."""
        d = self.daemon
        rec = d.reconciler
        if rec is None or d.seen is None:
            return None
        desired = DesiredState.empty() if d.problems or d.desired is None else d.desired
        problems, origin = d.problems, d.seen
        if afresh:
            load = functools.partial(sources.load, d.settings.desired)
            loaded = await anyio.to_thread.run_sync(load)
            result, origin = loaded.result, loaded.origin
            desired = result if isinstance(result, DesiredState) else DesiredState.empty()
            problems = () if isinstance(result, DesiredState) else result
        async with d.busy:  # the pass and the view share the reconciler
            view = await status.build(rec, desired, problems)
        view["desired"] = origin.to_json()
        return view

    async def events(self, request: Request) -> Response:
        """Events as ``controller events --output json`` prints them (JSON Lines): ``lane``,
        ``kind`` (repeatable), ``since`` (a duration or an ISO time), ``limit``, ``after``;
        with ``follow=1`` the response goes on with new events until the daemon stops."""
        rec = self.daemon.reconciler
        if rec is None:
            return JSONResponse({"error": "no pass has run yet"}, 503)
        q = request.query_params
        if (misdirected := _misdirected(self.daemon, q.get("desired"), q.get("state"))) is not None:
            return misdirected
        try:
            since = _since(q.get("since"), self.daemon.clock.now())
            limit, after = int(q.get("limit", "200")), int(q.get("after", "0"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        read = functools.partial(
            rec.wiring.store.read_events, lane=q.get("lane"), kinds=q.getlist("kind"), since=since
        )
        found = await anyio.to_thread.run_sync(functools.partial(read, limit=limit, after=after))
        if q.get("follow") not in ("1", "true"):
            return Response(_lines(found), media_type=JSON_LINES)
        # As the command: following goes on from the newest event now, whatever was shown
        # (with ``after``, from there).
        newest = (
            after
            if "after" in q
            else await anyio.to_thread.run_sync(rec.wiring.store.latest_event_id)
        )
        last = max([newest, *(e.id or 0 for e in found)])
        stream = self._follow(read, _lines(found), last)
        # Where following starts: a client that must go on without the daemon goes on from here.
        headers = {FOLLOW_AFTER: str(last)}
        return StreamingResponse(stream, media_type=JSON_LINES, headers=headers)

    async def _follow(
        self, read: Callable[..., list[Any]], first: str, last: int
    ) -> AsyncIterator[str]:
        yield first
        while not self.daemon.stopping:
            await anyio.sleep(FOLLOW_POLL)
            more = await anyio.to_thread.run_sync(functools.partial(read, after=last))
            if more:
                last = max(e.id or 0 for e in more)
                yield _lines(more)

    async def post(self, request: Request) -> Response:
        """``controller post``: JSON ``{sender, body}``; 201 with ``{thread, seq, sender}``
        (what ``post -o json`` prints), 400 refused (with the command's message)."""
        try:
            return await _post(self, request)
        except _BadRequest as exc:
            return _error(str(exc), 400)

    async def read(self, request: Request) -> Response:
        """``controller read``: JSON ``{reader}``; 200 with ``{messages}`` (what ``read -o json``
        prints), marked read; 400 refused (with the command's message)."""
        try:
            return await _read(self, request)
        except _BadRequest as exc:
            return _error(str(exc), 400)

    async def heartbeat(self, request: Request) -> Response:
        """``controller heartbeat``: JSON ``{lane, participant}``; 404 when no such agent."""
        try:
            return await _heartbeat(self, request)
        except _BadRequest as exc:
            return _error(str(exc), 400)


async def _post(api: _Api, request: Request) -> Response:
    d, rec = api.daemon, api.daemon.reconciler
    if rec is None or d.desired is None:
        return _error("no pass has run yet", 503)
    if d.problems:
        return _error("desired state invalid", 409, problems=[str(p) for p in d.problems])
    sender, body = await _fields(request, "sender", "body")
    if (misdirected := await _elsewhere(d, request)) is not None:
        return misdirected
    thread, desired, now = request.path_params["thread"], d.desired, d.clock.now()
    post = functools.partial(
        messages.post, rec.wiring.store, desired, thread=thread, sender=sender, body=body, now=now
    )
    try:
        seq = await anyio.to_thread.run_sync(post)
    except messages.Refused as exc:
        return _error(str(exc), 400)
    d.nudge_wakes()  # the wake loop looks at once rather than at its next poll
    return JSONResponse({"thread": thread, "seq": seq, "sender": sender}, 201)


async def _read(api: _Api, request: Request) -> Response:
    d, rec = api.daemon, api.daemon.reconciler
    if rec is None or d.desired is None:
        return _error("no pass has run yet", 503)
    if d.problems:
        return _error("desired state invalid", 409, problems=[str(p) for p in d.problems])
    (reader,) = await _fields(request, "reader")
    if (misdirected := await _elsewhere(d, request)) is not None:
        return misdirected
    thread = request.path_params["thread"]
    try:
        messages.check_member(d.desired, thread, reader)
    except messages.Refused as exc:
        return _error(str(exc), 400)
    read = functools.partial(messaging.read, rec.wiring.store, thread, reader)
    found = await anyio.to_thread.run_sync(read)
    return JSONResponse({"messages": [_message(m) for m in found]})


def _message(m: messaging.Message) -> dict[str, Any]:
    """A message as ``controller read -o json`` shows it."""
    return {
        "thread": m.thread,
        "seq": m.seq,
        "sender": m.sender,
        "body": m.body,
        "at": m.at.isoformat(),
    }


async def _heartbeat(api: _Api, request: Request) -> Response:
    rec = api.daemon.reconciler
    if rec is None:
        return _error("no pass has run yet", 503)
    lane, participant = await _fields(request, "lane", "participant")
    if (misdirected := await _elsewhere(api.daemon, request)) is not None:
        return misdirected
    now = api.daemon.clock.now()
    where = {"lane": lane, "participant": participant}
    beat = functools.partial(rec.wiring.store.update_agents, now, where=where, heartbeat_at=now)
    if await anyio.to_thread.run_sync(beat) == 0:
        return _error(f"no agent of {participant} in lane {lane} is recorded", 404)
    return JSONResponse({"lane": lane, "participant": participant, "at": now.isoformat()})


def _lines(found: list[Any]) -> str:
    return "".join(json.dumps(e.to_json(), sort_keys=True) + "\n" for e in found)


def _since(given: str | None, now: datetime) -> datetime | None:
    """``since``: a duration back from now (30s, 10m), or a point in time (UTC unless it says)."""
    if given is None:
        return None
    with contextlib.suppress(ValueError):
        return now - timedelta(seconds=meta.parse_duration(given))
    when = datetime.fromisoformat(given)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
