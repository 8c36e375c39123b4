"""The planner: ``plan(desired, observed, memory, now)`` computes what to do, and does nothing.

It compares declared lanes with git's worktrees, the worktree root and the store's inventory,
and returns a ``Plan``: ordered actions per lane, conditions to show, notices about things it
will not touch, and the guards that held actions back. It never creates or removes anything
on an unknown observation, never removes what is not in the inventory, and never removes
every lane unless allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import PurePosixPath

from controller.core import actions, agents, memory, world
from controller.core.actions import ActionBase, Change
from controller.core.phases import ACTIVE, Phase
from controller.core.workflows import expansion
from controller.spec.lane import Lane
from controller.spec.state import DesiredState

INITIALIZING = "initializing"  # the lock reason git writes while `worktree add` checks out


@dataclass(frozen=True, slots=True)
class Plan:
    """What one pass intends to do, and what it holds back and why."""

    actions: tuple[ActionBase, ...] = ()
    pending: tuple[ActionBase, ...] = ()
    conditions: Mapping[str, tuple[world.Condition, ...]] = field(default_factory=dict)
    notices: tuple[str, ...] = ()
    refused: str | None = None
    selection: frozenset[str] | None = None  # --lane: the lanes this pass may act on
    unselected: tuple[ActionBase, ...] = ()  # held back: their lanes are not selected

    def counts(self) -> Mapping[Change, int]:
        """How many actions of each change kind, for the summary line."""
        totals = dict.fromkeys(Change, 0)
        for action in self.actions:
            totals[action.change] += 1
        return totals

    @property
    def lanes(self) -> tuple[str, ...]:
        """Lanes with at least one action, in order."""
        return tuple(dict.fromkeys(a.lane for a in self.actions))


@dataclass(slots=True)
class _Draft:
    """Mutable accumulator used while planning; frozen into a ``Plan`` at the end."""

    steps: dict[str, list[actions.Action]] = field(default_factory=dict)
    conditions: dict[str, list[world.Condition]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def add(self, *steps: actions.Action) -> None:
        for step in steps:
            self.steps.setdefault(step.lane, []).append(step)

    def note(self, lane: str, type_: str, reason: str, message: str) -> None:
        self.conditions.setdefault(lane, []).append(world.Condition(type_, reason, message))


def plan(
    desired: DesiredState,
    observed: world.Observed,
    memories: Mapping[str, memory.LaneMemory],
    now: datetime,
    *,
    allow_empty: bool = False,
    released: frozenset[str] = frozenset(),
    selection: frozenset[str] | None = None,
) -> Plan:
    """Compute the actions that bring the world to the desired state, and nothing else.

    Every declared lane gets a worktree on its branch; every inventory lane no longer declared
    is removed (its work saved or the removal refused, by its ``onDirtyCleanup``); orphans in
    the inventory are repaired. Lanes backing off after failures keep their actions pending
    until ``now`` passes their next attempt time. With a ``selection`` (``--lane``), only the
    selected lanes' actions and conditions are kept; the others' actions are ``unselected``,
    and workspace-wide cleanup (stray processes) waits too. Output is sorted by lane name.
    """
    draft = _Draft()
    unknown = _unknown_reasons(observed)
    if unknown:
        return _plan_blind(desired, observed, unknown, selection)
    for lane in desired.lanes.values():
        _plan_desired(draft, lane, observed)
    for name, record in observed.records.items():
        if name not in desired.lanes:
            _plan_undesired(draft, record, observed)
    _note_strays(draft, desired, observed)
    _add_agents(draft, desired, observed, now)
    guards = _Guards(allow_empty=allow_empty, released=released, selection=selection)
    return _finish(draft, desired, observed, memories, now, guards=guards)


def _add_agents(
    draft: _Draft, desired: DesiredState, observed: world.Observed, now: datetime
) -> None:
    """Agent actions join each lane's chain: stops first, starts after provisioning."""
    paths = {
        name: (r.path if (r := observed.records.get(name)) else lane_path(observed.root, name))
        for name in {*desired.lanes, *observed.records}
    }
    rebuilt = frozenset(
        name
        for name, chain in draft.steps.items()
        if any(isinstance(a, actions.ProvisionLane) for a in chain)
    )
    result = agents.plan_agents(
        desired,
        observed,
        now,
        paths=paths,
        usable=_usable(draft, desired, observed, paths),
        rebuilt=rebuilt,
    )
    for lane in sorted({*result.before, *result.after}):
        chain = draft.steps.get(lane, [])
        draft.steps[lane] = [*result.before.get(lane, []), *chain, *result.after.get(lane, [])]
    for lane, conditions in result.conditions.items():
        draft.conditions.setdefault(lane, []).extend(conditions)


def _usable(
    draft: _Draft, desired: DesiredState, observed: world.Observed, paths: Mapping[str, str]
) -> frozenset[str]:
    """Lanes whose worktree exists on its branch, or is created earlier in this pass."""
    usable = set()
    for name, lane in desired.lanes.items():
        chain = draft.steps.get(name, [])
        tree = observed.worktree_at(paths[name]) or _repaired_tree(observed, paths[name])
        intact = (
            tree is not None
            and tree.branch == lane.branch
            and tree.prunable is None
            and tree.locked != INITIALIZING
        )
        creates = any(isinstance(a, actions.ProvisionLane | actions.AdoptWorktree) for a in chain)
        repairs = all(isinstance(a, actions.RepairWorktree) for a in chain)
        if (intact and repairs) or creates:
            usable.add(name)
    return frozenset(usable)


def lane_path(root: str, name: str) -> str:
    """Where a lane's worktree lives: directly under the worktree root, named after the lane."""
    return str(PurePosixPath(root) / name)


def _unknown_reasons(observed: world.Observed) -> tuple[str, ...]:
    sources = {
        "git worktrees": observed.worktrees,
        "worktree root": observed.root_entries,
        "git branches": observed.branches,
    }
    return tuple(
        f"{name}: {value.reason}"
        for name, value in sources.items()
        if isinstance(value, world.Unknown)
    )


def _plan_blind(
    desired: DesiredState,
    observed: world.Observed,
    unknown: tuple[str, ...],
    selection: frozenset[str] | None,
) -> Plan:
    """Nothing is done on an unknown observation; every (selected) lane says why."""
    message = "not reconciled this pass, a source could not be read: " + "; ".join(unknown)
    condition = world.Condition("ObservationUnknown", "SourceUnreadable", message)
    names = sorted(n for n in set(desired.lanes) | set(observed.records) if _chosen(n, selection))
    return Plan(
        conditions=dict.fromkeys(names, (condition,)), notices=(message,), selection=selection
    )


def _plan_desired(draft: _Draft, lane: Lane, observed: world.Observed) -> None:
    record = observed.records.get(lane.name)
    path = record.path if record else lane_path(observed.root, lane.name)
    tree = _repair(draft, lane.name, path=path, observed=observed) or observed.worktree_at(path)
    if tree is not None:
        _plan_existing(draft, lane, record, tree, observed)
    elif _entry(observed, path) is not None:
        _plan_occupied(draft, lane, record, path, observed)
    else:
        _plan_provision(draft, lane, path, observed)


def _plan_existing(
    draft: _Draft,
    lane: Lane,
    record: world.LaneRecord | None,
    tree: world.GitWorktree,
    observed: world.Observed,
) -> None:
    name, path = lane.name, tree.path
    if tree.prunable is not None:
        draft.add(actions.PruneRecord(name, path, "worktree directory is gone; git still lists it"))
        draft.add(_provision(lane, path, observed, "re-create the missing worktree"))
    elif tree.locked == INITIALIZING:
        _plan_interrupted(draft, lane, record, tree, observed)
    elif tree.branch != lane.branch:
        on = tree.branch or f"a detached HEAD ({(tree.head or '?')[:12]})"
        draft.note(
            name,
            "BranchMismatch",
            "WorktreeOnOtherBranch",
            f"{path} is on {on} but the lane declares {lane.branch}; the controller never "
            "switches a worktree's branch. Set spec.branch to match, or remove the lane "
            "(its work is saved) and declare it again.",
        )
    elif record is None or record.phase not in ACTIVE:
        why = "no inventory record" if record is None else f"recorded as {record.phase}"
        draft.add(actions.AdoptWorktree(name, path, f"worktree is complete ({why})", lane.branch))


def _plan_interrupted(
    draft: _Draft,
    lane: Lane,
    record: world.LaneRecord | None,
    tree: world.GitWorktree,
    observed: world.Observed,
) -> None:
    """A `git worktree add` died part way: redo it if it was ours, else only report it."""
    if record is not None and record.phase == Phase.PROVISIONING:
        draft.add(actions.DiscardInterrupted(lane.name, tree.path, "an earlier add was killed"))
        draft.add(_provision(lane, tree.path, observed, "provision again"))
        return
    draft.note(
        lane.name,
        "PathOccupied",
        "InterruptedAddNotOurs",
        f"{tree.path} is a half-created worktree the controller did not start; inspect it, "
        f"then `git worktree remove --force --force {tree.path}`",
    )


def _plan_occupied(
    draft: _Draft,
    lane: Lane,
    record: world.LaneRecord | None,
    path: str,
    observed: world.Observed,
) -> None:
    entry = _entry(observed, path)
    if record is not None and entry is not None and entry.is_dir and not entry.is_symlink:
        draft.add(actions.QuarantineDir(lane.name, path, "directory is no longer a git worktree"))
        draft.add(_provision(lane, path, observed, "re-create after quarantine"))
        return
    draft.note(
        lane.name,
        "PathOccupied",
        "NotAWorktree",
        f"{path} exists but is not a git worktree the controller created; move it away "
        "and the lane will be provisioned on the next pass",
    )


def _plan_provision(draft: _Draft, lane: Lane, path: str, observed: world.Observed) -> None:
    holder = _branch_holder(observed, lane.branch, path)
    if holder is not None and holder.prunable is not None:
        draft.note(
            lane.name,
            "BranchInUse",
            "HeldByMissingWorktree",
            f"branch {lane.branch} is held by git's record of a worktree at {holder.path}, "
            "where nothing is; git will not check the branch out again while that record "
            "exists. Run `git worktree repair <path>` with the worktree's current path if it "
            "was moved, else `git worktree prune` (it drops only records of missing worktrees).",
        )
    elif holder is not None:
        draft.note(
            lane.name,
            "BranchInUse",
            "CheckedOutElsewhere",
            f"branch {lane.branch} is checked out at {holder.path}; git allows a branch in one "
            "worktree only. Switch that checkout to another branch or set spec.branch.",
        )
    else:
        draft.add(_provision(lane, path, observed, "lane is declared but has no worktree"))


def _provision(
    lane: Lane, path: str, observed: world.Observed, reason: str
) -> actions.ProvisionLane:
    assert not isinstance(observed.branches, world.Unknown)
    return actions.ProvisionLane(
        lane.name,
        path,
        reason,
        branch=lane.branch,
        base=lane.spec.base or "HEAD",
        reuse_branch=lane.branch in observed.branches,
        on_dirty=lane.spec.on_dirty_cleanup,
    )


def _plan_undesired(draft: _Draft, record: world.LaneRecord, observed: world.Observed) -> None:
    name, path = record.name, record.path
    tree = _repair(draft, name, path=path, observed=observed) or observed.worktree_at(path)
    gone = "lane is no longer declared"
    if tree is not None and tree.prunable is not None:
        draft.add(actions.PruneRecord(name, path, f"{gone}; its directory is already gone"))
    elif tree is not None and tree.locked == INITIALIZING and record.phase == Phase.PROVISIONING:
        draft.add(actions.DiscardInterrupted(name, path, f"{gone}; its creation was interrupted"))
    elif tree is not None and tree.locked is not None:
        _note_locked(draft, name, path, tree.locked)
        return
    elif tree is not None:
        draft.add(
            actions.RemoveLane(name, path, gone, branch=record.branch, on_dirty=record.on_dirty)
        )
        return
    elif _entry(observed, path) is not None:
        draft.add(actions.QuarantineDir(name, path, f"{gone}; directory is not a git worktree"))
    draft.add(actions.ForgetLane(name, path, f"{gone}; nothing of it is left to remove"))


def _repair(
    draft: _Draft, name: str, *, path: str, observed: world.Observed
) -> world.GitWorktree | None:
    """Plan `git worktree repair` for a worktree git lists elsewhere; return it as repaired."""
    listed = _listed_elsewhere(observed, path)
    if listed is None:
        return None
    why = "git's record of the worktree names a path where nothing is"
    draft.add(actions.RepairWorktree(name, path, why, recorded=listed.path))
    return replace(listed, path=path, prunable=None)


def _repaired_tree(observed: world.Observed, path: str) -> world.GitWorktree | None:
    """The worktree at ``path`` as git will list it once its damaged record is repaired."""
    listed = _listed_elsewhere(observed, path)
    return replace(listed, path=path, prunable=None) if listed else None


def _listed_elsewhere(observed: world.Observed, path: str) -> world.GitWorktree | None:
    """The worktree git lists at a wrong path for the directory at ``path``, if that is so.

    Only when git lists no worktree at ``path``, the directory's ``.git`` names an admin
    record that names another path, and git lists that path as prunable (nothing is there):
    a worktree that really lives at the other path is never taken over.
    """
    entry = _entry(observed, path)
    if observed.worktree_at(path) is not None or entry is None or entry.misrecorded is None:
        return None
    listed = observed.worktree_at(entry.misrecorded)
    if listed is None or listed.prunable is None or entry.is_symlink or not entry.is_dir:
        return None
    return listed


def _note_locked(draft: _Draft, name: str, path: str, reason: str) -> None:
    because = f" ({reason})" if reason else ""
    draft.note(
        name,
        "CleanupBlocked",
        "WorktreeLocked",
        f"{path} is locked{because}; run `git worktree unlock {path}` to let the controller "
        "remove it",
    )


def _note_strays(draft: _Draft, desired: DesiredState, observed: world.Observed) -> None:
    """Things in the worktree root the controller did not create are reported, never touched."""
    assert not isinstance(observed.root_entries, world.Unknown)
    claimed = {r.path for r in observed.records.values()}
    claimed |= {lane_path(observed.root, name) for name in desired.lanes}
    for entry in observed.root_entries:
        path = lane_path(observed.root, entry.name)
        if entry.name.startswith(".") or path in claimed:
            continue
        kind = "worktree" if observed.worktree_at(path) else "directory"
        draft.notices.append(
            f"{kind} {path} is in the worktree root but not in the controller's inventory; "
            "leaving it alone"
        )


def _entry(observed: world.Observed, path: str) -> world.RootEntry | None:
    assert not isinstance(observed.root_entries, world.Unknown)
    parent, name = str(PurePosixPath(path).parent), PurePosixPath(path).name
    if parent != observed.root:
        return None
    return next((e for e in observed.root_entries if e.name == name), None)


def _branch_holder(observed: world.Observed, branch: str, path: str) -> world.GitWorktree | None:
    """The worktree git lists with ``branch`` checked out, other than ``path``.

    A prunable record (its directory is gone) counts too: git refuses to check the branch out
    again while it exists.
    """
    assert not isinstance(observed.worktrees, world.Unknown)
    return next((t for t in observed.worktrees if t.branch == branch and t.path != path), None)


@dataclass(frozen=True, slots=True)
class _Guards:
    """What limits a pass beyond desired state: the guards' overrides and ``--lane``."""

    allow_empty: bool = False
    released: frozenset[str] = frozenset()
    selection: frozenset[str] | None = None


def _finish(
    draft: _Draft,
    desired: DesiredState,
    observed: world.Observed,
    memories: Mapping[str, memory.LaneMemory],
    now: datetime,
    *,
    guards: _Guards,
) -> Plan:
    steps = {name: draft.steps[name] for name in sorted(draft.steps)}
    released = guards.released
    refused = _empty_guard(desired, observed, allow_empty=guards.allow_empty, released=released)
    if refused is not None:
        steps = {n: s for n, s in steps.items() if n in desired.lanes or n in released}
    # Before the other holds: backoff and maxDeletionsPerPass count the selected lanes only.
    unselected = _hold_unselected(steps, guards.selection)
    pending: list[actions.Action] = []
    _hold_backoffs(draft, steps, pending, memories, now)
    _hold_deletions(draft, steps, pending, desired.workspace.spec.max_deletions_per_pass)
    _hold_moves(draft, steps)
    conditions = sorted(draft.conditions.items())
    return Plan(
        actions=tuple(a for chain in steps.values() for a in chain),
        pending=tuple(pending),
        conditions={n: tuple(c) for n, c in conditions if _chosen(n, guards.selection)},
        notices=tuple(draft.notices),
        refused=refused,
        selection=guards.selection,
        unselected=tuple(unselected),
    )


def _chosen(lane: str, selection: frozenset[str] | None) -> bool:
    return selection is None or lane in selection


def _hold_unselected(
    steps: dict[str, list[actions.Action]], selection: frozenset[str] | None
) -> list[actions.Action]:
    """With ``--lane``, lanes outside the selection keep their actions for a later pass, and
    so does cleanup that belongs to no lane (stray processes): nothing outside is touched."""
    return [a for name in [n for n in steps if not _chosen(n, selection)] for a in steps.pop(name)]


def _empty_guard(
    desired: DesiredState,
    observed: world.Observed,
    *,
    allow_empty: bool,
    released: frozenset[str],
) -> str | None:
    """Refuse a pass that would remove every lane the user declared (an empty desired/).

    Lanes of workflow runs do not count either way: a run's lanes are not the user's
    declaration, and ``runs clean`` releases them on purpose.
    """
    runs = released | {n for n, lane in desired.lanes.items() if expansion.is_run_lane(lane)}
    declared = [n for n in desired.lanes if n not in runs]
    live = sorted(
        n for n, r in observed.records.items() if r.phase != Phase.CLOSED and n not in runs
    )
    if declared or not live or allow_empty or desired.workspace.spec.allow_empty:
        return None
    shown = ", ".join(live[:10]) + (", ..." if len(live) > 10 else "")
    return (
        f"desired state declares no lanes, which would remove all {len(live)} lane(s) "
        f"({shown}); refusing. If that is what you want, pass --allow-empty or set "
        "allowEmpty: true in the Workspace."
    )


def _hold_backoffs(
    draft: _Draft,
    steps: dict[str, list[actions.Action]],
    pending: list[actions.Action],
    memories: Mapping[str, memory.LaneMemory],
    now: datetime,
) -> None:
    for name in list(steps):
        mem = memories.get(name, memory.LaneMemory())
        if mem.stalled:
            draft.note(name, "Stalled", "RepeatedFailure", _failure_text(mem))
        if memory.waiting(mem, now):
            assert mem.next_attempt_at is not None
            pending.extend(steps.pop(name))
            when = mem.next_attempt_at.isoformat(timespec="seconds")
            draft.note(name, "BackingOff", "RetryLater", f"next attempt at {when}")


def _failure_text(mem: memory.LaneMemory) -> str:
    return f"{mem.failures} consecutive failures; last error: {mem.last_error or 'unknown'}"


def _hold_deletions(
    draft: _Draft,
    steps: dict[str, list[actions.Action]],
    pending: list[actions.Action],
    limit: int | None,
) -> None:
    if limit is None:
        return
    removing = [n for n, chain in steps.items() if _removes(chain)]
    for name in removing[limit:]:
        pending.extend(steps.pop(name))
        draft.note(
            name,
            "DeletionPending",
            "MaxDeletionsPerPass",
            f"held back: at most {limit} lane removal(s) per pass (maxDeletionsPerPass)",
        )


def _hold_moves(draft: _Draft, steps: dict[str, list[actions.Action]]) -> None:
    """A start that must wait for stops in a lane held back this pass waits a pass too: it
    would otherwise run next to the agent it replaces. (Not ``pending``: that would hold the
    memory of its whole lane.)"""
    for name, chain in steps.items():
        for start in [a for a in chain if _waits_for_held(a, steps)]:
            chain.remove(start)
            assert isinstance(start, actions.StartAgent)
            draft.note(
                name,
                "AgentWaiting",
                "PreviousAgentRunning",
                f"{start.binding}: starts once its agent in lane {start.moved_from} is stopped",
            )
    for name in [n for n, chain in steps.items() if not chain]:
        del steps[name]


def _waits_for_held(action: actions.Action, steps: Mapping[str, list[actions.Action]]) -> bool:
    return isinstance(action, actions.StartAgent) and action.moved_from not in (None, *steps)


def _removes(chain: Iterable[actions.Action]) -> bool:
    return any(isinstance(a, actions.RemoveLane) for a in chain)
