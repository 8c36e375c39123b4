"""The API's routes for the trigger queue and workflow runs, and the text the thin client prints.

``GET /v1/triggers``, ``GET /v1/runs`` and ``GET /v1/runs/{run}`` answer the objects the
commands print with ``--output json``; with ``format=text`` the text they print, drawn by the
command line's own functions (``Texts``, given by the command line: the server is the layer
below it and cannot import it). ``POST /v1/runs`` and ``POST /v1/runs/{run}/abort`` change
state through ``runtime/runops.py``, as ``submit`` and ``abort`` do. Every route here is served
on the unix socket only: runs carry agents' final messages, and the POSTs change state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from controller import errors
from controller.runtime import jobviews, runops, runviews

if TYPE_CHECKING:
    from controller.runtime.daemon import Daemon

TEXT = "text/plain; charset=utf-8"
JOB_STATES = ("queued", "running", "done", "dead")  # store.jobs.JobState
OTHER_WORKSPACE = 421  # Misdirected Request: the thin client falls back to the command line


@dataclass(frozen=True, slots=True)
class Texts:
    """How the command line draws views for people: each takes the JSON view, returns the
    exact standard output of the command (``status`` also ``color`` and ``width``)."""

    status: Callable[..., str]
    triggers: Callable[[list[dict[str, Any]]], str]
    runs: Callable[[Mapping[str, Any]], str]
    run: Callable[[Mapping[str, Any]], str]


def error(message: str, code: int, **more: Any) -> Response:
    """``{error}`` (and more) with ``code``."""
    return JSONResponse({"error": message, **more}, code)


def misdirected(daemon: Daemon, desired: object, state: object) -> Response | None:
    """421 unless ``desired`` and ``state`` (when given) are the daemon's own."""
    if desired is not None and str(desired) != str(daemon.settings.desired.resolve()):
        return error(f"this daemon serves {daemon.settings.desired.resolve()}", OTHER_WORKSPACE)
    rec = daemon.reconciler
    if state is not None and rec is not None and state != rec.wiring.paths.state_url:
        return error("this daemon uses another store", OTHER_WORKSPACE)
    return None


def unusable(daemon: Daemon, request: Request) -> Response | None:
    """Why a request about runs or the queue cannot be answered as the command would: no pass
    yet (503), invalid desired state (409: the command prints the problems), or another
    workspace (421, from the query's ``desired`` and ``state``)."""
    if daemon.reconciler is None or daemon.desired is None:
        return error("no pass has run yet", 503)
    if daemon.problems:
        return error("desired state invalid", 409, problems=[str(p) for p in daemon.problems])
    q = request.query_params
    return misdirected(daemon, q.get("desired"), q.get("state"))


class Routes:
    """The queue's and the runs' routes of one listener."""

    def __init__(self, daemon: Daemon, texts: Texts | None) -> None:
        self.daemon = daemon
        self.texts = texts

    async def triggers(self, request: Request) -> Response:
        """``controller triggers``: ``jobState`` (repeatable) as ``--state-filter``."""
        if (refused := unusable(self.daemon, request)) is not None:
            return refused
        states = request.query_params.getlist("jobState")
        if not set(states) <= set(JOB_STATES):
            return error(f"jobState is one of {', '.join(JOB_STATES)}", 400)
        store = self._store()
        view = await anyio.to_thread.run_sync(
            jobviews.triggers_view, store, states, self.daemon.desired
        )
        draw = None if self.texts is None else functools.partial(self.texts.triggers, view)
        return await _answer(view, draw, request)

    async def runs(self, request: Request) -> Response:
        """``controller runs``."""
        if (refused := unusable(self.daemon, request)) is not None:
            return refused
        listing = functools.partial(runviews.runs_view, self._store(), self.daemon.desired)
        view = await anyio.to_thread.run_sync(listing)
        draw = None if self.texts is None else functools.partial(self.texts.runs, view)
        return await _answer(view, draw, request)

    async def run(self, request: Request) -> Response:
        """``controller runs show RUN``; 404 when no such run is recorded."""
        if (refused := unusable(self.daemon, request)) is not None:
            return refused
        run, rec = request.path_params["run"], self.daemon.reconciler
        assert rec is not None  # checked by unusable()
        show = functools.partial(
            runviews.run_view,
            rec.wiring.store,
            self.daemon.desired,
            run,
            root=rec.wiring.paths.root,
        )
        view = await anyio.to_thread.run_sync(show)
        if view is None:
            return error(f"run {run} is unknown (see `controller runs`)", 404)
        draw = None if self.texts is None else functools.partial(self.texts.run, view)
        return await _answer(view, draw, request)

    async def submit(self, request: Request) -> Response:
        """``controller submit``: JSON ``{workflow, name?}``; 201 ``{run, message}``, 400
        ``{error}`` refused (with the command's message)."""
        given = await _body(request)
        if isinstance(given, Response):
            return given
        workflow, name = given.get("workflow"), given.get("name")
        if not isinstance(workflow, str) or not isinstance(name, str | None):
            return error("the body must give workflow (and name) as strings", 400)
        return await self._change(
            given,
            lambda rec, desired, wait: runops.submit(
                rec, desired, workflow, name=name, lock_timeout=wait
            ),
            201,
        )

    async def abort(self, request: Request) -> Response:
        """``controller abort RUN``: JSON ``{reason}``; 200 ``{run, message}``, 400 refused."""
        given = await _body(request)
        if isinstance(given, Response):
            return given
        run, reason = request.path_params["run"], given.get("reason")
        if not isinstance(reason, str):
            return error("the body must give reason as a string", 400)
        return await self._change(
            given,
            lambda rec, _, wait: runops.abort(rec, run, reason=reason, lock_timeout=wait),
            200,
        )

    async def _change(
        self, given: dict[str, Any], change: Callable[..., Any], code: int
    ) -> Response:
        """Run ``change(rec, desired, lock_timeout)`` between passes, then ask for a pass (which
        starts or stops the run's tasks, as the commands' own pass does)."""
        d = self.daemon
        if d.reconciler is None or d.desired is None:
            return error("no pass has run yet", 503)
        if d.problems:
            return error("desired state invalid", 409, problems=[str(p) for p in d.problems])
        if (wrong := misdirected(d, given.get("desired"), given.get("state"))) is not None:
            return wrong
        try:
            async with d.busy:  # the pass and this change share the reconciler
                done = await change(d.reconciler, d.desired, d.settings.lock_timeout)
        except errors.ControllerError as exc:  # RunError, WorkspaceBusy: the command's message
            return error(str(exc), 400)
        d.notify()
        return JSONResponse({"run": done.run, "message": done.message}, code)

    def _store(self) -> Any:
        rec = self.daemon.reconciler
        assert rec is not None  # checked by unusable()
        return rec.wiring.store


async def _answer(view: Any, draw: Callable[[], str] | None, request: Request) -> Response:
    """``view`` as JSON (what ``--output json`` prints), or with ``format=text`` the text the
    command prints, drawn in a worker thread (rich takes a while on a big workspace)."""
    chosen = request.query_params.get("format", "json")
    if chosen == "json":
        return JSONResponse(view)
    if chosen != "text" or draw is None:
        return error("format is json, or text when the command line runs the daemon", 400)
    return Response(await anyio.to_thread.run_sync(draw), media_type=TEXT)


async def _body(request: Request) -> dict[str, Any] | Response:
    try:
        given = await request.json()
    except ValueError as exc:
        return error(f"the body is not JSON ({exc})", 400)
    if not isinstance(given, dict):
        return error("the body must be a JSON object", 400)
    return given
