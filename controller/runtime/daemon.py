"""The daemon: a pass on start, on every change under desired/ (debounced), and every resync.

With a desired ref (`--desired-ref`, or the Workspace's `desiredRef`) it also polls the commit
the ref names, in a worker thread, and runs a pass when the ref moves; with the option, the
working tree is not watched at all.

It keeps running on the last valid desired state when an edit is invalid (and says so), takes
the workspace lock for each pass only (so a ``--once`` can run between passes), and shuts
down gracefully on SIGINT/SIGTERM: the pass under way finishes, then it exits 0. A second
signal stops at once.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from controller import errors
from controller.core import alerts
from controller.runtime import hosting, reconcile, sources, wiring
from controller.spec.loading import Problem
from controller.spec.state import DesiredState
from controller.store import jobs, messaging, queries
from controller.store import runs as runs_store
from controller.system import clock, locks

if TYPE_CHECKING:
    from controller.executors import triggers as deliver

Log = Callable[..., None]  # log(event, /, *, level=Level.INFO, **fields)
SLOW_PASS = 120.0  # seconds a pass may take before /healthz reports the loop stuck


@dataclass(frozen=True, slots=True)
class Settings:
    """How the daemon runs."""

    desired: Path
    desired_ref: str | None = None  # --desired-ref: read desired state at this revision
    state: str | None = None
    allow_empty: bool = False
    debounce: float = 0.5
    resync: float | None = None  # None: the Workspace's resyncSeconds
    lock_timeout: float = 60.0
    host: str | None = None  # --host: this controller's host name (many hosts)
    max_passes: int | None = None  # for tests: stop after this many passes
    wake_poll: float = 0.25  # how often new messages and due wakes are looked for
    listen: bool = True  # on PostgreSQL: LISTEN for posts and look for wakes at once
    ref_poll: float = 2.0  # how often a desired ref is checked for a new commit


class Level(enum.IntEnum):
    """How much a log line matters (``logging``'s numbers): passes that did nothing and each
    action's details are DEBUG (``-v``); what needs a person is WARNING."""

    DEBUG = logging.DEBUG
    INFO = logging.INFO
    WARNING = logging.WARNING


class PassEnd(enum.StrEnum):
    """How a pass that did not finish ended (``Service.failed``)."""

    ERROR = "error"  # a ControllerError: the workspace busy, not a git repository, ...
    CRASHED = "crashed"  # anything else


class Service(Protocol):
    """Something the daemon runs beside its loop (the HTTP server, ``controller.server``).

    ``open`` binds what it serves (before anything else runs: a failure ends the daemon with
    its message), ``start`` starts its tasks in ``group``; ``passed`` is called after each
    pass while the pass still holds the daemon (nothing else runs then); ``failed`` for a pass
    that raised; ``woke`` after each quick wake step; ``stop`` before the daemon exits,
    whatever happened (more than once is fine).
    """

    async def open(self, daemon: Daemon) -> None: ...
    def start(self, group: anyio.abc.TaskGroup) -> None: ...
    async def passed(
        self, daemon: Daemon, result: reconcile.PassResult, seconds: float
    ) -> None: ...
    def failed(self, result: PassEnd, seconds: float) -> None: ...
    def woke(self, envelopes: list[deliver.Envelope]) -> None: ...
    def listeners(self) -> dict[str, str]: ...
    async def stop(self) -> None: ...


class _Changes(FileSystemEventHandler):
    """Forwards file-system events under desired/ into the event loop (``notify`` marks the
    desired folder changed: the next load reads every file, whatever their times say)."""

    def __init__(self, notify: Callable[[], None], token: anyio.lowlevel.EventLoopToken) -> None:
        self._notify = notify
        self._token = token

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            anyio.from_thread.run_sync(self._notify, token=self._token)


class Daemon:
    """State of one running daemon."""

    def __init__(self, settings: Settings, log: Log, *, services: tuple[Service, ...] = ()) -> None:
        self.settings = settings
        self.log = log
        self.services = services
        self.clock: clock.Clock = clock.SystemClock()
        self.problems: tuple[Problem, ...] = ()  # what the last load found wrong
        self.ticked = self.clock.monotonic()  # when a pass last started or ended
        self.passing = False  # a pass is under way
        self.desired: DesiredState | None = None
        self.origin: sources.Origin | None = None  # where self.desired was read
        self.seen: sources.Origin | None = None  # where the last load read (valid or not)
        self.reconciler: reconcile.Reconciler | None = None
        self.wake = anyio.Event()
        self.nudged = anyio.Event()  # a message arrived: look for wakes now, not at the next poll
        self.stopping = False
        self.passes = 0
        self.due: datetime | None = None
        self.busy = anyio.Lock()  # a pass and a wake step never run at the same time
        self.heads: dict[str, int] | None = None
        self.runs_seen: object = None
        self.cache = sources.Cache()  # what the last load read: a resync reuses it
        self.edited = False  # a file event since the last load: read every file again
        self.resolved: tuple[DesiredState, str | None] | None = None  # what paths are for
        self.shown: alerts.Snapshot = {}  # the conditions the log last reported
        self.refused: str | None = None  # the refusal the log last reported
        self.lease: hosting.HostLease | None = None  # with `hosts`: this host's lease

    def notify(self) -> None:
        """Something changed: run a pass soon."""
        self.wake.set()

    def nudge_wakes(self) -> None:
        """A message was posted (through the API, or a notification): look for wakes at once.

        Call it from the daemon's event loop (a thread uses ``anyio.from_thread.run_sync``).
        """
        self.nudged.set()

    def edit(self) -> None:
        """A file under desired/ changed: load it afresh, and run a pass soon."""
        self.edited = True
        self.notify()

    async def run(self) -> int:
        """Run until a signal; return the exit code."""
        observer = self._watch()
        try:
            await self._open_services()
            await self._first_lease()
            self._started()
            async with anyio.create_task_group() as group:
                group.start_soon(self._signals, group.cancel_scope)
                group.start_soon(self._lease_loop)
                for service in self.services:
                    service.start(group)
                group.start_soon(self._wake_loop)
                group.start_soon(self._listen_loop)
                group.start_soon(self._runs_loop)
                group.start_soon(self._ref_loop)
                await self._loop()
                await self._stop_services()
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_services()
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)
            if self.reconciler is not None and self.lease is not None:
                with anyio.CancelScope(shield=True):
                    await self._give_back(self.reconciler)
            if self.reconciler is not None:
                with anyio.CancelScope(shield=True):
                    released = await self.reconciler.waker.release(
                        self.reconciler.context("shutdown")
                    )
                if released:
                    self.log("leases returned", jobs=released)
                self.reconciler.wiring.close()
        self.log("stopped", passes=self.passes)
        return 0

    async def _open_services(self) -> None:
        await self._reload()  # where the workspace is: its `.lanes/` holds the socket
        for service in self.services:
            await service.open(self)

    def _started(self) -> None:
        """The start-up line: what this daemon reconciles, from where, and where it serves."""
        where = self.locate()
        source = {"desiredRef": where.desired_ref} if where.desired_ref else {}
        served = {k: v for service in self.services for k, v in service.listeners().items()}
        self.log(
            "started",
            workspace=where.workspace,
            repo=str(where.repo),
            desired=str(self.settings.desired),
            **source,
            **served,
            resync=self._resync(),
        )

    async def _first_lease(self) -> None:
        """With `hosts`, take this host's lease before anything else: a second controller of
        the same host name is refused here (``HostTaken``, exit 1)."""
        if self.desired is None:
            return
        rec = await self._reconciler(self.desired)
        if rec.wiring.paths.hosted:
            await self._hold(rec, first=True)

    async def _hold(self, rec: reconcile.Reconciler, *, first: bool = False) -> bool:
        """Whether this daemon may apply now: no `hosts`, or this host's lease is ours (taken
        or renewed now if it was not held). A lease lost while paused is taken again."""
        paths = rec.wiring.paths
        if not paths.hosted:
            return True
        if self.lease is None or self.lease.holder.name != paths.host:
            self.lease = hosting.HostLease.of(paths)
        if self.lease.held():
            return True
        lost = not first and self.lease.valid_until > 0
        try:
            await self.lease.take(rec.wiring.store)
        except hosting.HostTaken as exc:
            if first:
                raise
            self.log("host lease held elsewhere; not applying", level=Level.WARNING, error=str(exc))
            return False
        if lost:
            self.log("host lease lapsed and was taken again", level=Level.WARNING, host=paths.host)
        elif first:
            self.log("host lease taken", host=paths.host, seconds=self.lease.seconds)
        return True

    async def _lease_loop(self) -> None:
        """Renew the host lease a few times per lease (the database's clock sets its expiry)."""
        while not self.stopping:
            every = self.lease.renew_every if self.lease is not None else 1.0
            await anyio.sleep(every)
            rec = self.reconciler
            if self.lease is None or rec is None or not rec.wiring.paths.hosted:
                continue
            was_held = self.lease.held()
            try:
                await self.lease.take(rec.wiring.store)
            except hosting.HostTaken as exc:
                self.log(
                    "host lease held elsewhere; not applying", level=Level.WARNING, error=str(exc)
                )
                continue
            except Exception as exc:  # the store is down: passes stop applying until it is back
                self.log("host lease renewal failed", level=Level.WARNING, error=repr(exc))
                continue
            if not was_held:
                self.log("host lease lapsed and was taken again", level=Level.WARNING)

    async def _give_back(self, rec: reconcile.Reconciler) -> None:
        assert self.lease is not None
        try:
            await self.lease.give_back(rec.wiring.store)
        except Exception as exc:  # it expires by itself
            self.log("host lease not released", level=Level.WARNING, error=repr(exc))

    async def _stop_services(self) -> None:
        for service in self.services:
            await service.stop()

    def stale_after(self) -> float:
        """Seconds without a pass starting or ending after which the loop counts as stuck:
        two resyncs, the wait for the workspace lock, and a slow pass's time."""
        return 2 * self._resync() + self.settings.lock_timeout + SLOW_PASS

    def locate(self) -> wiring.Paths:
        """Where the workspace lives, by the last valid desired state (or the defaults)."""
        return wiring.resolve_paths(
            self.settings.desired,
            self.desired or DesiredState.empty(),
            state_override=self.settings.state,
            desired_ref=self.origin.ref if self.origin is not None else None,
            host=self.settings.host,
        )

    def _watch(self) -> Any:
        folder = self.settings.desired
        if self.settings.desired_ref is not None:
            return None  # the working tree does not matter: the ref is polled instead
        if not folder.is_dir():
            self.log("not watching: desired folder missing", folder=str(folder))
            return None
        observer = Observer()
        handler = _Changes(self.edit, anyio.lowlevel.current_token())
        observer.schedule(handler, str(folder), recursive=True)
        observer.daemon = True
        observer.start()
        return observer

    async def _signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            async for signum in received:
                if self.stopping:
                    self.log("second signal: stopping now", signal=signal.Signals(signum).name)
                    scope.cancel()
                    return
                self.log(
                    "signal received: finishing the current pass",
                    signal=signal.Signals(signum).name,
                )
                self.stopping = True
                self.wake.set()

    async def _loop(self) -> None:
        while not self.stopping:
            self.ticked, self.passing = self.clock.monotonic(), True
            try:
                await self._pass()
            finally:
                self.ticked, self.passing = self.clock.monotonic(), False
            self.passes += 1
            if self.settings.max_passes is not None and self.passes >= self.settings.max_passes:
                return
            await self._wait()

    async def _wait(self) -> None:
        with anyio.move_on_after(self._timeout()):
            await self.wake.wait()
        while self.wake.is_set() and not self.stopping:
            # Debounce: an editor's save is often several events; wait until they settle.
            self.wake = anyio.Event()
            with anyio.move_on_after(self.settings.debounce):
                await self.wake.wait()
        self.wake = anyio.Event()

    def _timeout(self) -> float:
        """Until the next resync, or sooner when a restart or retry falls due."""
        resync = self._resync()
        if self.due is None or self.reconciler is None:
            return resync
        until = (self.due - self.reconciler.wiring.clock.now()).total_seconds()
        return max(0.05, min(resync, until + 0.05))

    def _resync(self) -> float:
        if self.settings.resync is not None:
            return self.settings.resync
        if self.reconciler is not None:  # the remembered Workspace's, when none is declared
            return self.reconciler.wiring.paths.spec.resync_seconds
        if self.desired is not None:
            return self.desired.workspace.spec.resync_seconds
        return 30.0

    async def _ref_loop(self) -> None:
        """Between passes: a pass as soon as the desired ref names another commit."""
        while not self.stopping:
            await anyio.sleep(self.settings.ref_poll)
            seen = self.seen
            if seen is None or seen.ref is None:
                continue
            # git runs in a worker thread: a slow repository must not stall the event loop.
            commit = await anyio.to_thread.run_sync(sources.commit_of, seen)
            if commit is not None and commit != seen.commit and not self.wake.is_set():
                self.log("desired ref moved", ref=seen.ref, commit=commit)
                self.notify()

    async def _runs_loop(self) -> None:
        """Between passes: a pass as soon as a run is submitted, aborted or retried, or a task's
        process exits (its launcher writes an exit file), not at the next resync."""
        while not self.stopping:
            await anyio.sleep(self.settings.wake_poll)
            rec = self.reconciler
            if rec is None or self.busy.locked():
                continue
            run_dir = rec.wiring.paths.state_dir / "run"
            seen = await anyio.to_thread.run_sync(runs_store.signature, rec.wiring.store, run_dir)
            if self.runs_seen is not None and seen != self.runs_seen and not self.wake.is_set():
                self.notify()
            self.runs_seen = seen

    async def _listen_loop(self) -> None:
        """On PostgreSQL: nudge the wake loop when a post is notified (``runtime.listening``)."""
        if not self.settings.listen:
            return
        from controller.runtime import listening  # psycopg only once the store is PostgreSQL

        def current() -> queries.Store | None:
            return self.reconciler.wiring.store if self.reconciler is not None else None

        await listening.Listening(current, self.nudge_wakes, self.log).run()

    async def _wake_loop(self) -> None:
        """Between passes: work wakes as soon as a message arrives or a deferral falls due."""
        while not self.stopping:
            with anyio.move_on_after(self.settings.wake_poll):
                await self.nudged.wait()
            nudged, self.nudged = self.nudged.is_set(), anyio.Event()
            rec, desired = self.reconciler, self.desired
            if rec is None or desired is None or not desired.threads:
                continue
            if self.busy.locked():
                if not nudged:
                    continue
                # A post during a pass: the pass's wake step may have read the heads before its
                # commit. Look once the pass is over, not a (maybe long) poll later.
                async with self.busy:
                    pass
            from controller.runtime.wakes import delivered_here  # loaded by a pass's wake step

            store = rec.wiring.store
            mine = delivered_here(desired, rec.wiring.paths.host)
            heads = await anyio.to_thread.run_sync(messaging.heads, store)
            due = await anyio.to_thread.run_sync(jobs.next_due, store, mine)
            if heads == self.heads and (due is None or due > rec.wiring.clock.now()):
                continue
            self.heads = heads
            await self._wake(rec, desired)

    async def _wake(self, rec: reconcile.Reconciler, desired: DesiredState) -> None:
        if self.lease is not None and rec.wiring.paths.hosted and not self.lease.held():
            return  # without this host's lease, nothing is delivered
        try:
            async with self.busy, locks.workspace_lock(rec.wiring.paths.lock, wait=0):
                envelopes, _ = await rec.wake_step(desired)
        except errors.WorkspaceBusy:
            return  # a --once holds the workspace; its pass does the wakes
        except Exception as exc:  # a failing wake step must not end the daemon
            self.log("wake step crashed; the next poll retries", error=repr(exc))
            return
        for service in self.services:
            service.woke(envelopes)
        for w in envelopes:
            self.log(
                "wake", participant=w.participant, thread=w.thread, result=w.result, reason=w.reason
            )

    async def _pass(self) -> None:
        await self._reload()
        if self.desired is None:
            return
        started = self.clock.monotonic()
        try:
            reconciler = await self._reconciler(self.desired)
            paths = reconciler.wiring.paths
            if not await self._hold(reconciler):
                self._failed(PassEnd.ERROR, started)
                return
            async with (
                self.busy,
                locks.workspace_lock(
                    paths.lock, wait=self.settings.lock_timeout, on_wait=self._waiting
                ),
            ):
                result = await reconciler.run_pass(
                    self.desired, allow_empty=self.settings.allow_empty
                )
                for service in self.services:
                    await service.passed(self, result, self.clock.monotonic() - started)
        except errors.ControllerError as exc:
            self.log("pass failed", level=Level.WARNING, error=str(exc))
            self._failed(PassEnd.ERROR, started)
            return
        except Exception as exc:  # one bad pass must not end the daemon
            self.log(
                "pass crashed; the next pass retries",
                level=Level.WARNING,
                error=repr(exc),
                exc_info=True,
            )
            self._failed(PassEnd.CRASHED, started)
            return
        self.due = result.next_due()
        self._report(result)

    def _failed(self, result: PassEnd, started: float) -> None:
        for service in self.services:
            service.failed(result, self.clock.monotonic() - started)

    def _waiting(self, pid: int | None) -> None:
        self.log("waiting for another controller pass", pid=pid)

    def _report(self, result: reconcile.PassResult) -> None:
        """One line for a pass that did something, and for the first pass (which says the
        daemon is at work); DEBUG for the others. A warning per failed action, and the
        conditions and refusal that appeared or cleared."""
        p = result.plan
        did = bool(result.outcomes or result.wakes) or self.passes == 0
        self.log(
            "pass",
            level=Level.INFO if did else Level.DEBUG,
            correlation=result.correlation_id,
            actions=len(result.outcomes),
            failed=len(result.failed),
            pending=len(p.pending),
            wakes=len(result.wakes),
            did=[f"{o.action.kind} {o.action.lane}" for o in result.outcomes],
        )
        for outcome in result.outcomes:
            self.log(
                "action failed" if outcome.failed else "action",
                level=Level.WARNING if outcome.failed else Level.DEBUG,
                correlation=result.correlation_id,
                lane=outcome.action.lane,
                action=outcome.action.kind,
                status=outcome.status,
                message=outcome.message,
            )
        self._refusal(p.refused)
        self._conditions(alerts.conditions_after(p, result.observed))

    def _refusal(self, refused: str | None) -> None:
        if refused == self.refused:
            return
        if refused is None:
            self.log("pass no longer refused", reason=self.refused)
        else:
            self.log("pass refused", level=Level.WARNING, reason=refused)
        self.refused = refused

    def _conditions(self, now: alerts.Snapshot) -> None:
        for alert in alerts.compare(self.shown, now):
            c, appeared = alert.condition, alert.change is alerts.Change.APPEARED
            self.log(
                "condition" if appeared else "condition cleared",
                level=Level.WARNING if appeared else Level.INFO,
                lane=alert.lane,
                type=c.type,
                reason=c.reason,
                **({"message": c.message} if appeared else {}),
            )
        self.shown = now

    async def _reload(self) -> None:
        fresh, self.edited = self.edited, False
        load = functools.partial(
            sources.load,
            self.settings.desired,
            ref=self.settings.desired_ref,
            cache=self.cache,
            fresh=fresh,
        )
        try:
            loaded = await anyio.to_thread.run_sync(load)
        except errors.ControllerError as exc:  # a ref that does not resolve, git missing
            message = _keeping("desired state unreadable", self.desired)
            self.log(message, level=Level.WARNING, error=str(exc))
            return
        self.seen = loaded.origin
        before = self.problems
        self.problems = () if isinstance(loaded.result, DesiredState) else tuple(loaded.result)
        if isinstance(loaded.result, DesiredState):
            if before:
                self.log("desired state valid again", lanes=len(loaded.result.lanes))
            elif self.desired is not None and loaded.result != self.desired:
                self._changed(loaded.result, loaded.origin)
            self.desired, self.origin = loaded.result, loaded.origin
            return
        if self.problems != before:  # once per new set of problems, not on every pass
            problems = [str(p) for p in loaded.result]
            message = _keeping("desired state invalid", self.desired)
            self.log(message, level=Level.WARNING, problems=problems)

    def _changed(self, desired: DesiredState, origin: sources.Origin) -> None:
        if origin.commit is None:
            self.log("desired state changed", lanes=len(desired.lanes))
        else:
            self.log("desired state changed", lanes=len(desired.lanes), commit=origin.commit)

    async def _reconciler(self, desired: DesiredState) -> reconcile.Reconciler:
        """The reconciler for ``desired``, kept while desired state stays the same.

        Resolving the paths asks git (and building the wiring opens the store): that happens
        only when desired state changed, and in a worker thread, never in the event loop.
        """
        ref = self.origin.ref if self.origin is not None else None
        if self.reconciler is not None and self.resolved == (desired, ref):
            return self.reconciler
        resolve = functools.partial(
            wiring.resolve_paths,
            self.settings.desired,
            desired,
            state_override=self.settings.state,
            desired_ref=ref,
            host=self.settings.host,
        )
        paths = await anyio.to_thread.run_sync(resolve)
        if self.reconciler is not None and not self.reconciler.wiring.moved(paths):
            # New guards or desired ref, same workspace.
            await anyio.to_thread.run_sync(self.reconciler.wiring.adopt, paths)
        else:
            built = await anyio.to_thread.run_sync(wiring.build, paths)
            if self.reconciler is not None:
                self.reconciler.wiring.close()
            self.reconciler = reconcile.Reconciler(built)
        self.resolved = (desired, ref)
        return self.reconciler


def _keeping(what: str, desired: DesiredState | None) -> str:
    keeping = "the last valid desired state" if desired else "nothing (no valid state)"
    return f"{what}; keeping {keeping}"
