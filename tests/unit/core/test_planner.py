"""The planner, table-driven: one row per situation a lane can be in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core import actions as A
from controller.core import memory, planner, world
from controller.core.phases import Phase
from tests.factories import binding, desired, entry, lane, observed, path, record, tree

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def kinds(plan: planner.Plan) -> list[tuple[str, str]]:
    return [(a.kind, a.lane) for a in plan.actions]


def condition_types(plan: planner.Plan, name: str) -> list[str]:
    return [c.type for c in plan.conditions.get(name, ())]


# Lane a's directory is there, but git's record of it names /moved/a, where nothing is.
MOVED = replace(tree("a"), path="/moved/a", prunable="gitdir file points to non-existent location")
MISRECORDED = replace(entry("a"), misrecorded="/moved/a")

CASES: list[tuple[str, Any, world.Observed, list[tuple[str, str]], dict[str, list[str]]]] = [
    ("declared-nothing-on-disk", desired("a"), observed(), [("provision", "a")], {}),
    ("converged", desired("a"), observed([tree("a")], records=[record("a")]), [], {}),
    ("complete-but-unrecorded", desired("a"), observed([tree("a")]), [("adopt", "a")], {}),
    (
        "interrupted-after-add",
        desired("a"),
        observed([tree("a")], records=[record("a", Phase.PROVISIONING)]),
        [("adopt", "a")],
        {},
    ),
    (
        "directory-vanished",
        desired("a"),
        observed([tree("a", prunable="gone")], records=[record("a")]),
        [("prune", "a"), ("provision", "a")],
        {},
    ),
    (
        "interrupted-during-add",
        desired("a"),
        observed([tree("a", locked="initializing")], records=[record("a", Phase.PROVISIONING)]),
        [("discard-interrupted", "a"), ("provision", "a")],
        {},
    ),
    (
        "on-another-branch",
        desired("a"),
        observed([tree("a", branch="feature")], records=[record("a")]),
        [],
        {"a": ["BranchMismatch"]},
    ),
    (
        "orphan-directory-in-inventory",
        desired("a"),
        observed(entries=[entry("a")], records=[record("a")]),
        [("quarantine", "a"), ("provision", "a")],
        {},
    ),
    (
        "someone-elses-directory",
        desired("a"),
        observed(entries=[entry("a")]),
        [],
        {"a": ["PathOccupied"]},
    ),
    (
        "symlink-at-lane-path",
        desired("a"),
        observed(entries=[entry("a", is_dir=False, is_symlink=True)], records=[record("a")]),
        [],
        {"a": ["PathOccupied"]},
    ),
    (
        "branch-checked-out-elsewhere",
        desired(lane("a", branch="main")),
        observed(),
        [],
        {"a": ["BranchInUse"]},
    ),
    (
        "undeclared-present",
        desired("b"),
        observed([tree("a"), tree("b")], records=[record("a"), record("b")]),
        [("remove", "a")],
        {},
    ),
    (
        "undeclared-directory-gone",
        desired("b"),
        observed([tree("a", prunable="gone"), tree("b")], records=[record("a"), record("b")]),
        [("prune", "a"), ("forget", "a")],
        {},
    ),
    (
        "undeclared-not-a-worktree",
        desired("b"),
        observed([tree("b")], entries=[entry("a"), entry("b")], records=[record("a")]),
        [("quarantine", "a"), ("forget", "a"), ("adopt", "b")],
        {},
    ),
    (
        "undeclared-nothing-left",
        desired("b"),
        observed([tree("b")], records=[record("a"), record("b")]),
        [("forget", "a")],
        {},
    ),
    (
        "undeclared-locked-by-user",
        desired("b"),
        observed([tree("a", locked="usb disk"), tree("b")], records=[record("a"), record("b")]),
        [],
        {"a": ["CleanupBlocked"]},
    ),
    (
        "undeclared-interrupted",
        desired("b"),
        observed(
            [tree("a", locked="initializing"), tree("b")],
            records=[record("a", Phase.PROVISIONING), record("b")],
        ),
        [("discard-interrupted", "a"), ("forget", "a")],
        {},
    ),
    (
        "damaged-record-is-repaired",
        desired("a"),
        observed([MOVED], entries=[MISRECORDED], records=[record("a")]),
        [("repair", "a")],
        {},
    ),
    (
        "damaged-record-without-inventory-is-repaired-and-adopted",
        desired("a"),
        observed([MOVED], entries=[MISRECORDED]),
        [("repair", "a"), ("adopt", "a")],
        {},
    ),
    (
        "undeclared-with-damaged-record-is-repaired-then-removed",
        desired("b"),
        observed([MOVED, tree("b")], entries=[MISRECORDED, entry("b")], records=[record("a")]),
        [("repair", "a"), ("remove", "a"), ("adopt", "b")],
        {},
    ),
    (
        "record-naming-a-live-worktree-is-not-taken-over",
        desired("a"),
        observed([replace(MOVED, prunable=None)], entries=[MISRECORDED], records=[record("a")]),
        [("quarantine", "a"), ("provision", "a")],
        {},
    ),
    (
        "branch-held-by-a-missing-worktree",
        desired("a"),
        observed([MOVED], entries=[]),
        [],
        {"a": ["BranchInUse"]},
    ),
    (
        "undeclared-under-an-old-worktree-root",
        desired("b"),
        replace(
            observed([replace(tree("a"), path="/r/.lanes/old/a")], entries=[]),
            records={"a": replace(record("a"), path="/r/.lanes/old/a")},
        ),
        [("remove", "a"), ("provision", "b")],
        {},
    ),
    (
        "unmanaged-worktree-is-not-removed",
        desired("b"),
        observed([tree("a"), tree("b")], records=[record("b")]),
        [],
        {},
    ),
]


@pytest.mark.parametrize(
    ("want", "seen", "expected", "conditions"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan(
    want: Any,
    seen: world.Observed,
    expected: list[tuple[str, str]],
    conditions: dict[str, list[str]],
) -> None:
    result = planner.plan(want, seen, {}, NOW)
    assert kinds(result) == expected
    for name, types in conditions.items():
        assert condition_types(result, name) == types
    assert result.refused is None


def test_provision_details() -> None:
    want = desired(lane("a", branch="feat/x", base="v1.2"), "b")
    result = planner.plan(want, observed(branches={"lane/b": "beef"}), {}, NOW)
    a, b = result.actions
    assert isinstance(a, A.ProvisionLane) and isinstance(b, A.ProvisionLane)
    assert (a.path, a.branch, a.base, a.reuse_branch) == (path("a"), "feat/x", "v1.2", False)
    assert (b.branch, b.base, b.reuse_branch) == ("lane/b", "HEAD", True)


def test_remove_uses_recorded_policy() -> None:
    seen = observed([tree("a")], records=[record("a", on_dirty="refuse")])
    result = planner.plan(desired("b"), seen, {}, NOW)
    removal = next(a for a in result.actions if isinstance(a, A.RemoveLane))
    assert removal.on_dirty == "refuse"


def test_strays_are_reported_not_touched() -> None:
    seen = observed(
        [tree("x")], entries=[entry("x"), entry("junk"), entry(".gitignore", is_dir=False)]
    )
    result = planner.plan(desired(), seen, {}, NOW)
    assert result.actions == ()
    assert len(result.notices) == 2
    assert all("not in the controller's inventory" in n for n in result.notices)


@pytest.mark.parametrize("source", ["worktrees", "root_entries", "branches"])
def test_unknown_source_means_no_action(source: str) -> None:
    changes: dict[str, Any] = {source: world.Unknown("tmux went away")}
    seen = replace(observed([tree("a")], records=[record("a"), record("gone")]), **changes)
    result = planner.plan(desired("a", "new"), seen, {}, NOW)
    assert result.actions == ()
    assert set(result.conditions) == {"a", "gone", "new"}
    assert all(c[0].type == "ObservationUnknown" for c in result.conditions.values())


def test_empty_desired_is_refused() -> None:
    seen = observed([tree("a"), tree("b")], records=[record("a"), record("b")])
    result = planner.plan(desired(), seen, {}, NOW)
    assert result.actions == ()
    assert result.refused is not None
    assert "--allow-empty" in result.refused and "all 2 lane(s)" in result.refused


@pytest.mark.parametrize(
    ("want", "flag"), [(desired(), True), (desired(allowEmpty=True), False)], ids=["flag", "spec"]
)
def test_empty_desired_allowed(want: Any, flag: bool) -> None:
    seen = observed([tree("a")], records=[record("a")])
    result = planner.plan(want, seen, {}, NOW, allow_empty=flag)
    assert kinds(result) == [("remove", "a")]
    assert result.refused is None


def test_empty_desired_with_nothing_to_remove_is_fine() -> None:
    assert planner.plan(desired(), observed(), {}, NOW).refused is None


def test_max_deletions_per_pass() -> None:
    names = ["a", "b", "c", "d"]
    seen = observed([tree(n) for n in names], records=[record(n) for n in names])
    result = planner.plan(desired("keep", maxDeletionsPerPass=2), seen, {}, NOW)
    assert kinds(result) == [("remove", "a"), ("remove", "b"), ("provision", "keep")]
    assert [a.lane for a in result.pending] == ["c", "d"]
    assert condition_types(result, "c") == ["DeletionPending"]


def test_backoff_holds_actions_until_next_attempt() -> None:
    mem = memory.after_failure(memory.LaneMemory(), "git exploded", NOW)
    waiting = planner.plan(desired("a", "b"), observed(), {"a": mem}, NOW + timedelta(seconds=5))
    assert kinds(waiting) == [("provision", "b")]
    assert [a.lane for a in waiting.pending] == ["a"]
    assert condition_types(waiting, "a") == ["BackingOff"]
    later = planner.plan(desired("a", "b"), observed(), {"a": mem}, NOW + timedelta(seconds=10))
    assert kinds(later) == [("provision", "a"), ("provision", "b")]


def test_stalled_condition_carries_last_error() -> None:
    mem = memory.LaneMemory()
    for _ in range(3):
        mem = memory.after_failure(mem, "fatal: bad object", NOW)
    result = planner.plan(desired("a"), observed(), {"a": mem}, NOW + timedelta(hours=1))
    stalled = next(c for c in result.conditions["a"] if c.type == "Stalled")
    assert "fatal: bad object" in stalled.message and "3 consecutive" in stalled.message


def test_output_is_sorted_and_deterministic() -> None:
    want = desired("zeta", "alpha", "mid")
    first = planner.plan(want, observed(), {}, NOW)
    assert [a.lane for a in first.actions] == ["alpha", "mid", "zeta"]
    assert planner.plan(want, observed(), {}, NOW) == first


def test_counts() -> None:
    seen = observed([tree("old")], records=[record("old")])
    counts = planner.plan(desired("new"), seen, {}, NOW).counts()
    assert counts == {A.Change.ADD: 1, A.Change.CHANGE: 0, A.Change.DESTROY: 1}


def test_repair_names_the_wrong_path_and_lets_agents_start() -> None:
    seen = observed([MOVED], entries=[MISRECORDED], records=[record("a")])
    result = planner.plan(desired("a", binding("one")), seen, {}, NOW)
    repair, start = result.actions
    assert isinstance(repair, A.RepairWorktree) and repair.recorded == "/moved/a"
    assert "/moved/a" in repair.describe()
    assert isinstance(start, A.StartAgent)  # in the same chain, after the repair


def test_branch_held_by_a_missing_worktree_says_what_to_run() -> None:
    result = planner.plan(desired("a"), observed([MOVED], entries=[]), {}, NOW)
    (held,) = result.conditions["a"]
    assert held.reason == "HeldByMissingWorktree"
    assert "git worktree prune" in held.message and "/moved/a" in held.message


class Scanned(tuple[Any, ...]):
    """An observed list that counts how often it is read from start to end."""

    scans = 0

    def __iter__(self) -> Any:
        self.scans += 1
        return super().__iter__()


def scans(situation: str, lanes: int) -> tuple[int, int]:
    """How often planning ``lanes`` lanes reads the worktree list and the worktree root."""
    names = [f"l{i:03d}" for i in range(lanes)]
    trees = [tree(n) for n in names] if situation != "from-scratch" else []
    records = [record(n) for n in names] if situation != "from-scratch" else []
    declared = desired(*names) if situation != "all-removed" else desired("other")
    seen = observed(trees, records=records)
    assert not isinstance(seen.worktrees, world.Unknown)
    assert not isinstance(seen.root_entries, world.Unknown)
    seen = replace(seen, worktrees=Scanned(seen.worktrees), root_entries=Scanned(seen.root_entries))
    plan = planner.plan(declared, seen, {}, NOW)
    assert plan.actions or situation == "converged"
    assert isinstance(seen.worktrees, Scanned) and isinstance(seen.root_entries, Scanned)
    return seen.worktrees.scans, seen.root_entries.scans


@pytest.mark.parametrize("situation", ["converged", "from-scratch", "all-removed"])
def test_planning_reads_each_observed_list_a_fixed_number_of_times(situation: str) -> None:
    # Looked up by path, branch and name (indexes), not scanned once per lane: planning 5
    # times the lanes took 8 times as long when every look-up scanned the worktree list.
    assert scans(situation, 5) == scans(situation, 50)


def test_observed_look_ups_find_what_a_scan_finds() -> None:
    detached = replace(tree("d"), branch=None, detached=True)
    listed = [tree("a"), replace(tree("a"), head="beef"), tree("b", branch="lane/a"), detached]
    seen = observed(listed)
    assert seen.worktree_at(path("a")) == listed[0]  # git lists each path once; first wins
    assert seen.worktree_at(path("d")) == detached
    assert seen.branch_holder("lane/a", other_than=path("a")) == listed[2]
    assert seen.branch_holder("lane/a", other_than=path("x")) == listed[0]
    assert seen.branch_holder("lane/d", other_than=path("x")) is None
    assert seen.root_entry("d") == entry("d")
    assert seen.root_entry("x") is None
