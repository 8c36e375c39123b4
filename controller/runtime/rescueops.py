"""What `controller rescues restore` does around the files: find the target (a lane, a
checkout, a new folder), hold the workspace lock (a pass never removes the lane meanwhile),
plan, refuse on any conflict, apply, and record ``RescueRestored`` (who, what, where).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import anyio

from controller import errors
from controller.core import rescues
from controller.executors import restoring
from controller.runtime import wiring
from controller.spec.state import DesiredState
from controller.store import events
from controller.system import clock, locks, proc


@dataclass(frozen=True, slots=True)
class Into:
    """Where a restore writes: a folder, what kind of target it is, and its lane if any."""

    path: Path
    kind: restoring.Target
    lane: str | None = None


@dataclass(frozen=True, slots=True)
class Restored:
    """A restore planned (and done, unless a dry run)."""

    rescued: restoring.Rescued
    into: Into
    restore: rescues.Restore
    dry_run: bool


class Refused(errors.ControllerError):
    """The target has work a restore would overwrite or delete; nothing was changed."""

    def __init__(self, done: Restored) -> None:
        super().__init__(f"{len(done.restore.conflicts)} conflicting file(s)")
        self.done = done


def target(paths: wiring.Paths, desired: DesiredState, *, into: str) -> Into:
    """A lane (a bare name) or a path (with a slash); see ``restoring.Target``."""
    if "/" not in into and into not in (".", ".."):
        return _lane(paths, desired, lane=into)
    # `..` folded for what is shown, without following a symlink (as resolve() would).
    path = Path(os.path.normpath(Path(into).expanduser().absolute()))
    if not path.exists() and not path.is_symlink():
        return Into(path, restoring.Target.NEW)
    if path.is_dir() and not any(path.iterdir()):
        return Into(path, restoring.Target.NEW)
    if path.is_dir() and _checkout_top(path):
        return Into(path, restoring.Target.CHECKOUT)
    raise errors.ControllerError(
        f"{path} is neither the top folder of a git checkout nor empty; restore into a lane, "
        "a checkout, or a path that does not exist yet"
    )


def _lane(paths: wiring.Paths, desired: DesiredState, *, lane: str) -> Into:
    store = wiring.open_store(paths)
    try:
        records = store.lane_records()
    finally:
        store.close()
    if lane in records:
        path = Path(records[lane].path)
    elif lane in desired.lanes:
        path = paths.root / lane
    else:
        known = ", ".join(sorted({*records, *desired.lanes})) or "none"
        raise errors.ControllerError(
            f"unknown lane {lane} (lanes: {known}); to restore into a folder, give a path "
            f"with a slash: ./{lane}"
        )
    if not path.is_dir():
        raise errors.ControllerError(
            f"lane {lane} has no worktree at {path} yet; run `controller --once` first, or "
            "restore into a new folder"
        )
    return Into(path, restoring.Target.CHECKOUT, lane)


def _checkout_top(path: Path) -> bool:
    try:
        top = wiring.run_git(path, "rev-parse", "--show-toplevel")
    except errors.ControllerError:
        return False
    return Path(os.fsdecode(top.strip())).resolve() == path.resolve()


async def restore(
    paths: wiring.Paths,
    runner: proc.Runner,
    *,
    ref: str,
    into: Into,
    dry_run: bool,
    lock_timeout: float,
) -> Restored:
    """Restore rescue ``ref`` into ``into`` (or only plan it), under the workspace lock."""
    rescued = await restoring.resolve(runner, paths.repo, ref=ref)
    async with locks.workspace_lock(paths.lock, wait=lock_timeout):
        plan = await restoring.plan(
            runner, paths.repo, rescued=rescued, target=into.path, kind=into.kind
        )
        done = Restored(rescued, into, plan, dry_run)
        if plan.conflicts:
            raise Refused(done)
        if dry_run:
            return done
        if into.kind is restoring.Target.NEW:
            await anyio.Path(into.path).mkdir(parents=True, exist_ok=True)
        scratch = paths.state_dir / "tmp"
        await restoring.apply(
            runner, paths.repo, rescued=rescued, target=into.path, restore=plan, scratch=scratch
        )
        await anyio.to_thread.run_sync(_audit, paths, done)
    return done


def _audit(paths: wiring.Paths, done: Restored) -> None:
    r = done.restore
    data = {
        "ref": done.rescued.name.ref,
        "commit": done.rescued.commit,
        "into": str(done.into.path),
        "intoLane": done.into.lane,
        "target": str(done.into.kind),
        "written": len(r.write),
        "deleted": len(r.delete),
        "unchanged": len(r.unchanged),
        "skipped": len(r.skipped),
        "by": wiring.who(),
    }
    event = events.Event(
        "RescueRestored",
        "work restored from a rescue",
        clock.SystemClock().now(),
        uuid.uuid4().hex[:16],
        lane=done.rescued.name.lane,
        data=data,
    )
    store = wiring.open_store(paths)
    try:
        store.append_events([event])
    finally:
        store.close()
