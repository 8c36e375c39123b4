"""Worktree handlers: provision, adopt, remove (saving work first), and orphan repairs.

Each handler is idempotent and re-checks the live world before it acts. Inventory records are
written *before* the git command that creates something, so a crash at any point leaves a
record the next pass reconciles from; and removal only ever touches inventory paths inside the
worktree root.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

from controller import errors
from controller.core import actions, phases, world
from controller.core.phases import Phase
from controller.executors import agents, inspecting, quarantining, removing
from controller.executors.context import Context, Outcome
from controller.store import events
from controller.system import git as gitseam
from controller.system import paths

GITIGNORE = (
    "# Created by the lane controller: lane worktrees are not part of the main checkout.\n*\n"
)


async def provision(action: actions.ProvisionLane, ctx: Context) -> Outcome:
    """Add the lane's worktree; on any failure, leave nothing behind."""
    path = paths.inside(ctx.root_of(action.path), action.path)
    if await _is_worktree_on(ctx, path, action.branch):
        return await adopt(actions.AdoptWorktree(action.lane, action.path, "", action.branch), ctx)
    record = await ctx.db(_begin, ctx, action)
    base = None if action.reuse_branch else action.base
    for attempt in range(1, gitseam.ATTEMPTS + 1):
        done = await ctx.git.worktree_add(path, branch=action.branch, base=base)
        if done.ok:
            break
        await _roll_back(ctx, action, path, record, keep_record=True)
        if attempt == gitseam.ATTEMPTS or not gitseam.raced(done):
            await ctx.db(ctx.store.delete_lane, action.lane, keep_memory=True)
            await ctx.emit(
                "ProvisionRolledBack",
                done.stderr.strip(),
                lane=action.lane,
                path=str(path),
                branch=action.branch,
            )
            return Outcome(action, "failed", f"git worktree add failed: {done.stderr.strip()}")
        await gitseam.back_off(ctx.clock, attempt)
    await ctx.db(_provisioned, ctx, action, record, path)
    note = await _check_out_submodules(ctx, action.lane, path=path)
    return Outcome(action, "applied", f"created {path} on {action.branch}{note}")


async def _check_out_submodules(ctx: Context, lane: str, *, path: Path) -> str:
    """Check out, in a new worktree, the submodules the main checkout has initialised.

    ``git submodule update`` without ``--init`` takes exactly those (their URLs are in the
    shared config); a submodule nobody initialised stays empty, as in the main checkout. A
    failure (a remote out of reach) keeps the lane: the outcome and an event say what to run.
    """
    if not await _exists(path / ".gitmodules"):
        return ""
    try:
        done = await ctx.git.submodule_update(path)
        error = "" if done.ok else done.stderr.strip()
    except errors.CommandFailed as exc:
        error = str(exc)
    if not error:
        return ""
    hint = f"git -C {path} submodule update --init --recursive"
    last = error.splitlines()[-1]
    await ctx.emit(
        "SubmodulesNotCheckedOut", f"run `{hint}`", lane=lane, path=str(path), error=last
    )
    return f"; submodules not checked out ({last}): run `{hint}`"


def _begin(ctx: Context, action: actions.ProvisionLane) -> world.LaneRecord:
    """Write the inventory record before git creates anything (and the worktree root).

    Blocking (the store, files): one worker thread for all of it, once per lane.
    """
    old = ctx.store.lane_record(action.lane)
    current = old.phase if old else Phase.NEW
    if current == Phase.CLOSED:
        current = phases.transition(current, Phase.NEW)
    phases.transition(current, Phase.PROVISIONING)
    record = world.LaneRecord(
        name=action.lane,
        phase=Phase.PROVISIONING,
        path=action.path,
        branch=action.branch,
        on_dirty=action.on_dirty,
        created_branch=(not action.reuse_branch) or bool(old and old.created_branch),
        conditions=(),
    )
    ctx.store.put_lane(record, ctx.clock.now())
    _ensure_root(ctx.root)
    return record


def _provisioned(
    ctx: Context, action: actions.ProvisionLane, record: world.LaneRecord, path: Path
) -> None:
    """Record the new worktree, and the events saying so, in one transaction.

    The lane is ready, or running (shared) when agents of it are still recorded running.
    Blocking (the store): one worker thread for all of it, once per lane.
    """
    phases.transition(record.phase, Phase.READY)
    target = agents.phase_for(ctx.store.running_agents(action.lane))
    log = [_phase_changed(ctx, action.lane, record.phase, Phase.READY)]
    if target != Phase.READY:
        phases.transition(Phase.READY, target)
        log.append(_phase_changed(ctx, action.lane, Phase.READY, target))
    log.append(
        ctx.event(
            "LaneProvisioned",
            action.reason,
            lane=action.lane,
            path=str(path),
            branch=action.branch,
            createdBranch=record.created_branch,
        )
    )
    ctx.store.update_lane(action.lane, ctx.clock.now(), emit=log, phase=target, conditions=())


def _phase_changed(ctx: Context, lane: str, current: Phase, target: Phase) -> events.Event:
    why = f"{current} -> {target}"
    return ctx.event("PhaseChanged", why, lane=lane, previous=str(current), phase=str(target))


async def _roll_back(
    ctx: Context,
    action: actions.ProvisionLane,
    path: Path,
    record: world.LaneRecord,
    *,
    keep_record: bool = False,
) -> None:
    """Undo a partial provisioning: the worktree and the branch we created (and the record)."""
    if await _exists(path) and await _is_worktree_on(ctx, path, action.branch):
        await _remove_tree(ctx, action.lane, path, action.branch)
    if not action.reuse_branch:
        await _delete_fresh_branch(ctx, action.branch, action.base)
    if not keep_record:
        await ctx.db(ctx.store.delete_lane, record.name, keep_memory=True)


async def _delete_fresh_branch(ctx: Context, branch: str, base: str) -> None:
    """Delete the branch this action created, only while it still points at ``base``.

    A branch at its base commit holds no commit of its own, so deleting it loses nothing,
    even in the unlikely case that someone else created the same name meanwhile.
    """
    ref = f"refs/heads/{branch}"
    sha = await ctx.git.ref_target(ref)
    if sha is not None and sha == await ctx.git.commit_of(base):
        # Compare-and-delete: if anything moves the branch meanwhile, it is kept.
        await ctx.git.delete_ref(ref, old=sha)


async def adopt(action: actions.AdoptWorktree, ctx: Context) -> Outcome:
    """Record a complete worktree on the lane's branch as ready."""
    paths.inside(ctx.root_of(action.path), action.path)
    old = await ctx.db(ctx.store.lane_record, action.lane)
    if old is not None and old.phase in phases.ACTIVE:
        return Outcome(action, "unchanged", "already recorded")
    if old is not None:
        await _set_phase(ctx, action.lane, old.phase, Phase.READY, conditions=())
    else:
        record = world.LaneRecord(
            name=action.lane,
            phase=Phase.READY,
            path=action.path,
            branch=action.branch,
            adopted=True,
        )
        await ctx.db(ctx.store.put_lane, record, ctx.clock.now())
    await agents.refresh_phase(ctx, action.lane)  # e.g. a lost lane record, agents still running
    await ctx.emit("LaneAdopted", action.reason, lane=action.lane, path=action.path)
    return Outcome(action, "applied", f"recorded {action.path}")


async def remove(action: actions.RemoveLane, ctx: Context) -> Outcome:
    """Remove the lane's worktree after saving its work, or refuse, as its policy says."""
    record = await ctx.db(ctx.store.lane_record, action.lane)
    if record is None or record.path != action.path:
        return Outcome(action, "refused", "not in the inventory; the controller leaves it alone")
    path = paths.child_of(ctx.root_of(record.path), action.path)
    if not await _exists(path):
        await _close(ctx, action.lane, record.phase)
        return Outcome(action, "unchanged", "worktree already gone")
    await _check_owned(ctx, path)
    running = await removing.live_agents(ctx, action.lane)
    if running:
        return Outcome(action, "failed", f"agents still running in the lane: {', '.join(running)}")
    try:
        work = await inspecting.inspect(ctx.runner, path)
    except inspecting.TooDeep as exc:
        return await _refuse(ctx, action, record, removing.too_deep(exc), count=0)
    if work.uncommitted and action.on_dirty == "refuse":
        dirty = removing.dirty(action, work)
        return await _refuse(ctx, action, record, dirty, count=len(work.uncommitted))
    await _set_phase(ctx, action.lane, record.phase, Phase.CLEANING)
    now = ctx.clock.now()  # one removal, one time: the rescue ref and quarantine folder share it
    saved = await removing.save_work(ctx, action, path=path, work=work, now=now)
    inner = [r.path for r in work.inner]
    kept = await quarantining.keep_ignored(ctx, action.lane, path=path, inner=inner, now=now)
    # --force only once everything is saved or moved, or known to be elsewhere: git refuses a
    # worktree with submodules without it, and they were inspected like the rest.
    force = saved is not None or kept or bool(inner)
    await _remove_tree(ctx, action.lane, path, action.branch, force=force)
    await _close(ctx, action.lane, Phase.CLEANING)
    return await removing.removed(ctx, action, path=path, ref=saved.ref if saved else None)


async def _refuse(
    ctx: Context,
    action: actions.RemoveLane,
    record: world.LaneRecord,
    condition: world.Condition,
    *,
    count: int,
) -> Outcome:
    message = condition.message
    if record.phase == Phase.BLOCKED and condition in record.conditions:
        return Outcome(action, "refused", message)  # said already: no new events every pass
    await _set_phase(ctx, action.lane, record.phase, Phase.BLOCKED, conditions=(condition,))
    await ctx.emit("CleanupRefused", message, lane=action.lane, changes=count)
    return Outcome(action, "refused", message)


async def _check_owned(ctx: Context, path: Path) -> None:
    """Just before removal: the path must be the top of a worktree of *our* repository."""
    lines = await ctx.git.top_and_common(path)
    common = await ctx.git.common_dir()
    top_ok = len(lines) == 2 and _same(lines[0], path)
    if not top_ok or not _same(lines[1], common):
        raise errors.ControllerError(f"{path} is not a worktree of {ctx.repo}; not removing it")


async def _remove_tree(
    ctx: Context, lane: str, path: Path, branch: str, *, force: bool = False
) -> None:
    # --force only ever after the work was saved to a rescue ref
    done = await ctx.git.worktree_remove(path, force=int(force))
    if not done.ok and await _exists(path):
        raise errors.CommandFailed(done.argv, done.rc, done.stderr)


async def prune(action: actions.PruneRecord, ctx: Context) -> Outcome:
    """Drop git's record of a worktree whose directory is gone."""
    path = paths.inside(ctx.root_of(action.path), action.path)
    if await _exists(path):
        return Outcome(action, "refused", f"{path} exists again; not pruning")
    done = await ctx.git.worktree_remove(path)
    if not done.ok and "is not a working tree" not in done.stderr:
        return Outcome(action, "failed", done.stderr.strip())
    await ctx.emit("WorktreeRecordPruned", action.reason, lane=action.lane, path=str(path))
    return Outcome(action, "applied", f"pruned git's record of {path}")


async def repair(action: actions.RepairWorktree, ctx: Context) -> Outcome:
    """Point git's record of the lane's worktree back at its directory.

    ``git worktree repair <path>`` reads the directory's ``.git`` file and rewrites the admin
    record it names; on a record that is right already it does nothing.
    """
    path = paths.child_of(ctx.root_of(action.path), action.path)
    if not await _exists(path):
        return Outcome(action, "refused", f"{path} is gone; nothing to repair")
    await _check_owned(ctx, path)
    done = await ctx.git.worktree_repair(path)
    if not done.ok:
        return Outcome(action, "failed", f"git worktree repair failed: {done.stderr.strip()}")
    if "repair:" not in done.stdout + done.stderr:
        return Outcome(action, "unchanged", "git's record is right already")
    await ctx.emit(
        "WorktreeRepaired", action.reason, lane=action.lane, path=str(path), was=action.recorded
    )
    return Outcome(action, "applied", f"repaired git's record of {path}")


async def discard_interrupted(action: actions.DiscardInterrupted, ctx: Context) -> Outcome:
    """Remove a worktree whose creation died before git finished checking it out.

    It holds nothing but git's half-done checkout (the lane was never ready, no agent ever ran
    in it), so there is nothing to save; ``--force`` twice is git's way past its own lock.
    """
    path = paths.child_of(ctx.root_of(action.path), action.path)
    done = await ctx.git.worktree_remove(path, force=2)
    if not done.ok and await _exists(path):
        return Outcome(action, "failed", done.stderr.strip())
    await ctx.emit("InterruptedWorktreeDiscarded", action.reason, lane=action.lane, path=str(path))
    return Outcome(action, "applied", f"discarded half-created {path}")


async def quarantine(action: actions.QuarantineDir, ctx: Context) -> Outcome:
    """Move a directory git no longer knows to ``.lanes/quarantine/``, content intact."""
    path = paths.child_of(ctx.root_of(action.path), action.path)
    if not await _exists(path):
        return Outcome(action, "unchanged", "already gone")
    stamp = ctx.clock.now().strftime("%Y%m%dT%H%M%SZ")
    move = functools.partial(quarantining.move_aside, name=f"{action.lane}-{stamp}")
    target = await anyio.to_thread.run_sync(move, path, ctx.quarantine)
    await ctx.emit(
        "DirectoryQuarantined", action.reason, lane=action.lane, path=str(path), movedTo=str(target)
    )
    return Outcome(action, "applied", f"moved {path} to {target}")


async def forget(action: actions.ForgetLane, ctx: Context) -> Outcome:
    """Drop the inventory record of a lane with nothing left on disk."""
    record = await ctx.db(ctx.store.lane_record, action.lane)
    if record is None:
        return Outcome(action, "unchanged", "already forgotten")
    if await _exists(Path(record.path)):
        return Outcome(action, "refused", f"{record.path} still exists; not forgetting the lane")
    await _close(ctx, action.lane, record.phase)
    await ctx.emit("LaneForgotten", action.reason, lane=action.lane, path=record.path)
    return Outcome(action, "applied", "forgot the lane")


async def _close(ctx: Context, lane: str, current: Phase) -> None:
    if current not in (Phase.CLEANING, Phase.NEW):
        current = phases.transition(current, Phase.CLEANING)
    phases.transition(current, Phase.CLOSED)
    await ctx.db(ctx.store.delete_lane, lane)


async def _set_phase(
    ctx: Context,
    lane: str,
    current: Phase,
    target: Phase,
    *,
    conditions: tuple[world.Condition, ...] | None = None,
) -> None:
    phases.transition(current, target)
    changes: dict[str, Any] = {"phase": target}
    if conditions is not None:
        changes["conditions"] = conditions
    await ctx.db(ctx.store.update_lane, lane, ctx.clock.now(), **changes)
    if current != target:
        await ctx.emit(
            "PhaseChanged",
            f"{current} -> {target}",
            lane=lane,
            previous=str(current),
            phase=str(target),
        )


async def _is_worktree_on(ctx: Context, path: Path, branch: str) -> bool:
    """Live check: is ``path`` the top of a worktree with ``branch`` checked out?"""
    if not await _exists(path / ".git"):
        return False
    lines = await ctx.git.head_of(path)
    return (
        lines is not None
        and len(lines) == 2
        and _same(lines[0], path)
        and lines[1] == f"refs/heads/{branch}"
    )


def _same(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same place once symlinks are resolved."""
    return Path(a).resolve() == Path(b).resolve()


async def _exists(path: Path) -> bool:
    return await anyio.Path(path).exists()


def _ensure_root(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text(GITIGNORE)


Handler = Callable[[Any, Context], Awaitable[Outcome]]

HANDLERS: Mapping[type[actions.ActionBase], Handler] = {
    actions.ProvisionLane: provision,
    actions.AdoptWorktree: adopt,
    actions.RemoveLane: remove,
    actions.PruneRecord: prune,
    actions.RepairWorktree: repair,
    actions.DiscardInterrupted: discard_interrupted,
    actions.QuarantineDir: quarantine,
    actions.ForgetLane: forget,
}
