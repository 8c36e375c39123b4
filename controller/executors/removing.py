"""What removing a lane decides and records around the worktree handler's removal.

The conditions a removal is refused with, the rescue written before it (``WorkRescued``), the
agents that must not be running, and the ``LaneRemoved`` record. The order of the removal
itself lives in ``worktrees.remove``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import anyio

from controller.core import actions, world
from controller.executors import inspecting, rescue, signals
from controller.executors.context import Context, Outcome


async def removed(
    ctx: Context, action: actions.RemoveLane, *, path: Path, ref: str | None
) -> Outcome:
    """Record the removal (``LaneRemoved``) and say where the work went."""
    await ctx.emit(
        "LaneRemoved",
        action.reason,
        lane=action.lane,
        path=str(path),
        branch=action.branch,
        rescueRef=ref,
    )
    note = f"; work saved to {ref}" if ref else ""
    return Outcome(action, "applied", f"removed {path}{note}")


async def save_work(
    ctx: Context,
    action: actions.RemoveLane,
    *,
    path: Path,
    work: inspecting.LaneWork,
    now: datetime,
) -> rescue.Saved | None:
    """Write (or reuse) the rescue ref if removal would lose anything (``WorkRescued``)."""
    if not work.needs_rescue:
        return None
    saved = await rescue.save(
        ctx.runner,
        path,
        repo=ctx.repo,
        lane=action.lane,
        work=work,
        now=now,
        scratch=ctx.scratch,
    )
    top = work.top
    await ctx.emit(
        "WorkRescued",
        "work reused from an identical earlier rescue"
        if saved.reused
        else "uncommitted work saved before removal",
        lane=action.lane,
        ref=saved.ref,
        reused=saved.reused,
        changes=len(top.changes),
        hidden=len(top.hidden),
        detached=top.branch is None,
        branchDeleted=top.orphaned is not None,
        inner=[s.prefix for s in saved.inner if s.prefix is not None],
    )
    return saved


def dirty(action: actions.RemoveLane, work: inspecting.LaneWork) -> world.Condition:
    """Why ``onDirtyCleanup: refuse`` keeps the worktree, and what to do about it."""
    listed = work.uncommitted
    files = ", ".join(listed[:5]) + (", ..." if len(listed) > 5 else "")
    message = (
        f"{len(listed)} uncommitted change(s) in {action.path} ({files}) and "
        "onDirtyCleanup is refuse. Commit or discard them there, or declare the lane again "
        "with onDirtyCleanup: preserve so that removal saves them to a rescue ref."
    )
    return world.Condition("CleanupRefused", "UncommittedChanges", message)


def too_deep(exc: inspecting.TooDeep) -> world.Condition:
    """Why a worktree with repositories nested too deep is kept, and what to do about it."""
    message = (
        f"{exc}; the controller does not look that deep, so it cannot save that work. Move "
        "that repository out of the worktree (or delete it), and the next pass removes the lane."
    )
    return world.Condition("CleanupRefused", "RepositoriesTooDeep", message)


async def live_agents(ctx: Context, lane: str) -> list[str]:
    """Agents of ``lane`` whose recorded process is still alive (never remove under them)."""
    agents = await ctx.db(ctx.store.agent_records)
    live = []
    for record in agents.values():
        if record.lane != lane or record.pid is None:
            continue
        if await anyio.to_thread.run_sync(signals.matches, record.pid, record.pid_created):
            live.append(f"{record.participant} (pid {record.pid})")
    return live
