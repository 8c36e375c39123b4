"""``controller wait``: look until a condition holds, as ``kubectl wait`` does.

It only observes and plans (what ``controller plan`` does) and reads the store: it changes
nothing and runs no pass, and it takes no lock, so it waits for someone else's passes (the
daemon, a cron job, a colleague's ``--once``). Desired state is read again at every look.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from controller import errors
from controller.core import waits
from controller.runtime import reconcile, runviews
from controller.spec.state import DesiredState
from controller.store import runs as runs_store

POLL = 1.0  # seconds between looks
DEFAULT_TIMEOUT = 300.0


class WaitError(errors.ControllerError):
    """What to wait for does not exist (an unknown lane or run)."""


async def wait(
    rec: reconcile.Reconciler,
    desired: DesiredState,
    target: waits.Target,
    *,
    timeout: float,
    load: Callable[[], DesiredState | None] | None = None,
    on_look: Callable[[waits.Check], None] | None = None,
    poll: float = POLL,
) -> waits.Check:
    """Look every ``poll`` seconds until ``target`` is reached or ``timeout`` has passed (0:
    look once); return the last look. ``load`` reads desired state again before each look
    after the first (None: invalid now, keep the last valid one); ``on_look`` hears each look
    that is not the last, when its summary changed."""
    clock = rec.wiring.clock
    deadline = clock.monotonic() + timeout
    said = None
    while True:
        check = await look(rec, desired, target)
        left = deadline - clock.monotonic()
        if check.reached or left <= 0:
            return check
        if on_look is not None and check.summary != said:
            on_look(check)
            said = check.summary
        await clock.sleep(min(poll, left))
        desired = (load() if load is not None else None) or desired


async def look(
    rec: reconcile.Reconciler, desired: DesiredState, target: waits.Target
) -> waits.Check:
    """One look at ``target``, changing nothing."""
    if target.kind == waits.Kind.RUN:
        return await anyio.to_thread.run_sync(_run, rec, desired, target.name)
    the_plan, observed, _ = await rec.plan(desired)
    if target.kind == waits.Kind.CONVERGED:
        recorded = {name: r.conditions for name, r in observed.records.items()}
        return waits.converged(the_plan, recorded)
    if target.name not in desired.lanes and target.name not in observed.records:
        known = ", ".join(sorted({*desired.lanes, *observed.records})) or "none"
        raise WaitError(
            f"lane {target.name} is neither declared nor in the inventory (lanes: {known})"
        )
    return waits.lane(target.name, desired, observed, the_plan)


def _run(rec: reconcile.Reconciler, desired: DesiredState, name: str) -> waits.Check:
    store = rec.wiring.store
    row = runs_store.get(store, name)
    if row is None:
        if name in desired.runs:  # a WorkflowRun document the next pass creates
            return waits.run(name, None)
        known = ", ".join(r.record.name for r in runs_store.runs(store)) or "none"
        raise WaitError(f"run {name} is unknown (runs: {known}; see `controller runs`)")
    summary = runviews.run_summary(row, runs_store.tasks(store, run=name), desired)
    return waits.run(name, summary)
