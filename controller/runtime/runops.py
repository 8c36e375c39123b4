"""What the run commands do: submit, abort, retry, resolve, clean, record usage by hand.

Each takes the workspace lock (a pass never sees half of it), records an audited event with
who asked and why, and leaves the rest to the next pass (``--once`` or the daemon): the store
is the truth, the pass acts on it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

import anyio

from controller import errors
from controller.core.workflows import actions as run_actions
from controller.core.workflows import budget, model, naming
from controller.executors import runs as run_handlers
from controller.runtime import reconcile, wiring
from controller.spec.state import DesiredState
from controller.store import queries
from controller.store import runs as runs_store
from controller.system import git as gitseam
from controller.system import locks

TaskPhase = model.TaskPhase


class RunError(errors.ControllerError):
    """A run command that cannot be done (unknown run, wrong phase)."""


@dataclass(frozen=True, slots=True)
class Done:
    """What a command did, for its output."""

    run: str
    message: str


async def submit(
    rec: reconcile.Reconciler,
    desired: DesiredState,
    workflow: str,
    *,
    name: str | None,
    lock_timeout: float,
) -> Done:
    """Create a run of ``workflow`` (named ``name``, or ``<workflow>-<n>``)."""
    if workflow not in desired.workflows:
        known = ", ".join(desired.workflows) or "none"
        raise RunError(f"workflow {workflow} is not declared (declared: {known})")
    store = rec.wiring.store
    async with locks.workspace_lock(rec.wiring.paths.lock, wait=lock_timeout):
        rows = await anyio.to_thread.run_sync(runs_store.runs, store)
        taken = frozenset(r.record.name for r in rows)
        run = name or naming.run_name(workflow, taken)
        if run in taken:
            raise RunError(f"run {run} exists already; choose another --name")
        ctx = rec.context("submit")
        tasks = len(desired.workflows[workflow].spec.tasks)
        why = f"submitted by {wiring.who()}"
        action = run_actions.CreateRun(run, "", why, run=run, workflow=workflow, tasks=tasks)
        outcome = await run_handlers.create_run(action, ctx, desired, source="submit")
    if outcome.status != "applied":
        raise RunError(outcome.message)
    return Done(run, outcome.message)


async def abort(rec: reconcile.Reconciler, run: str, *, reason: str, lock_timeout: float) -> Done:
    """Ask for ``run`` to end now; the next pass stops its tasks (their lanes stay)."""
    store = rec.wiring.store
    async with locks.workspace_lock(rec.wiring.paths.lock, wait=lock_timeout):
        now = rec.wiring.clock.now()
        if not await anyio.to_thread.run_sync(runs_store.request_abort, store, run, reason, now):
            raise RunError(_not_running(store, run))
        await rec.context("abort").emit("RunAbortRequested", reason, run=run, by=wiring.who())
    return Done(run, f"abort of {run} requested: {reason}")


def _not_running(store: queries.Store, run: str) -> str:
    row = runs_store.get(store, run)
    if row is None:
        return f"run {run} is unknown (see `controller runs`)"
    return f"run {run} has already ended ({row.record.phase})"


async def retry(
    rec: reconcile.Reconciler, run: str, *, task: str | None, lock_timeout: float
) -> Done:
    """Failed, aborted and skipped tasks (or ``task`` and what depends on it) back to pending."""
    store = rec.wiring.store
    async with locks.workspace_lock(rec.wiring.paths.lock, wait=lock_timeout):
        row = await anyio.to_thread.run_sync(runs_store.get, store, run)
        if row is None:
            raise RunError(f"run {run} is unknown (see `controller runs`)")
        tasks = await anyio.to_thread.run_sync(lambda: runs_store.tasks(store, run=run))
        chosen = _retryable(row.record.snapshot, {k[1]: v for k, v in tasks.items()}, task)
        if not chosen:
            raise RunError(f"nothing to retry in run {run}: no failed, aborted or skipped task")
        now = rec.wiring.clock.now()
        for name in chosen:
            attempt = tasks[(run, name)].record.attempt
            again = functools.partial(
                runs_store.move_task,
                store,
                run,
                name,
                now,
                expect=_RETRYABLE,
                phase=TaskPhase.PENDING,
                reason="",
                detail="",
                due_at=None,
                finished_at=None,
                attempt=attempt + 1 if attempt else 0,
            )
            await anyio.to_thread.run_sync(again)
        await anyio.to_thread.run_sync(runs_store.reopen, store, run, now)
        await rec.context("retry").emit(
            "RunRetried", f"retried by {wiring.who()}", run=run, tasks=list(chosen)
        )
    return Done(run, f"retrying {', '.join(chosen)} of run {run}")


_RETRYABLE = (TaskPhase.FAILED, TaskPhase.ABORTED, TaskPhase.SKIPPED)


def _retryable(
    snapshot: model.RunSnapshot, tasks: dict[str, runs_store.TaskRow], task: str | None
) -> tuple[str, ...]:
    if task is None:
        return tuple(t.name for t in snapshot.tasks if tasks[t.name].record.phase in _RETRYABLE)
    if task not in tasks:
        raise RunError(f"run has no task {task} (tasks: {', '.join(tasks)})")
    wanted = {task} | _dependents(snapshot, task)
    return tuple(
        t.name
        for t in snapshot.tasks
        if t.name in wanted and tasks[t.name].record.phase in _RETRYABLE
    )


def _dependents(snapshot: model.RunSnapshot, task: str) -> set[str]:
    found: set[str] = set()
    frontier = {task}
    while frontier:
        frontier = {t.name for t in snapshot.tasks if set(t.depends_on) & frontier} - found
        found |= frontier
    return found


async def resolve(
    rec: reconcile.Reconciler,
    run: str,
    task: str,
    *,
    base: str,
    reason: str,
    lock_timeout: float,
) -> Done:
    """Unblock a task whose dependencies conflicted: it branches from ``base`` instead."""
    store = rec.wiring.store
    git = gitseam.Git(rec.wiring.runner, rec.wiring.paths.repo)
    sha = await git.commit_of(base)
    if sha is None:
        raise RunError(f"--base {base} names no commit")
    async with locks.workspace_lock(rec.wiring.paths.lock, wait=lock_timeout):
        now = rec.wiring.clock.now()
        unblock = functools.partial(
            runs_store.move_task,
            store,
            run,
            task,
            now,
            expect=(TaskPhase.BLOCKED,),
            phase=TaskPhase.PENDING,
            reason="",
            detail="",
            base_commit=sha,
        )
        moved = await anyio.to_thread.run_sync(unblock)
        if not moved:
            raise RunError(f"task {task} of run {run} is not blocked")
        await rec.context("resolve").emit(
            "TaskResolved", reason, run=run, task=task, base=sha, by=wiring.who()
        )
    return Done(run, f"{task} of run {run} will branch from {sha[:12]}")


async def clean(rec: reconcile.Reconciler, run: str, *, lock_timeout: float) -> Done:
    """Let an ended run's lanes go (through the normal, no-loss cleanup)."""
    store = rec.wiring.store
    async with locks.workspace_lock(rec.wiring.paths.lock, wait=lock_timeout):
        row = await anyio.to_thread.run_sync(runs_store.get, store, run)
        if row is None:
            raise RunError(f"run {run} is unknown (see `controller runs`)")
        if row.record.phase == model.RunPhase.RUNNING:
            raise RunError(f"run {run} is still running; `controller abort {run}` first")
        await anyio.to_thread.run_sync(runs_store.mark_cleaned, store, run, rec.wiring.clock.now())
        await rec.context("clean").emit("RunCleaned", f"by {wiring.who()}", run=run)
    return Done(run, f"the lanes of run {run} are removed by the next pass")


def add_usage(store: queries.Store, run: str, task: str, used: model.Usage, now: datetime) -> Done:
    """``controller usage add``: a manual task reports its own usage (to its current attempt)."""
    row = runs_store.get(store, run)
    rows = runs_store.tasks(store, run=run)
    found = rows.get((run, task))
    if row is None or found is None:
        raise RunError(f"no task {task} in run {run}")
    if found.record.attempt < 1:
        raise RunError(f"task {task} of run {run} has not started")
    price = row.record.snapshot.models[row.record.snapshot.task(task).model]
    inc = runs_store.Increment(
        run,
        task,
        found.record.attempt,
        price.name,
        used,
        cost_usd=budget.charged(price, used),
        catalog_cost_usd=budget.cost(price, used),
        source="manual",
    )
    runs_store.add_usage(store, inc, now)
    return Done(run, f"recorded {used.tokens} token(s) for {task} of run {run}")
