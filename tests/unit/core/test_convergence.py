"""Plans converge: applying a plan to a pure simulated world leaves nothing to do next pass.

Also the safety properties that must hold in any world: nothing outside the inventory is ever
removed, and nothing at all happens when a source is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core import actions as A
from controller.core import planner, world
from controller.core.phases import Phase
from tests.factories import REPO, ROOT, desired, entry, path, record, tree

NOW = datetime(2026, 11, 21, tzinfo=UTC)
NAMES = ["a", "b", "c", "d"]
DISK_STATES = ["none", "ok", "prunable", "initializing", "dir-only", "other-branch", "locked"]
DISK_STATES += ["misrecorded"]  # git's record of the worktree names a path where nothing is


@dataclass
class SimWorld:
    """A tiny model of git + the worktree root + the inventory that actions act on."""

    trees: dict[str, world.GitWorktree] = field(default_factory=dict)
    entries: set[str] = field(default_factory=set)
    misrecorded: dict[str, str] = field(default_factory=dict)  # entry name -> listed path
    records: dict[str, world.LaneRecord] = field(default_factory=dict)
    branches: set[str] = field(default_factory=set)

    def observed(self) -> world.Observed:
        main = world.GitWorktree(REPO, head="c0ffee", branch="main")
        return world.Observed(
            repo=REPO,
            root=ROOT,
            worktrees=(main, *(self.trees[p] for p in sorted(self.trees))),
            root_entries=tuple(
                replace(entry(n), misrecorded=self.misrecorded.get(n)) for n in sorted(self.entries)
            ),
            branches=dict.fromkeys({"main", *self.branches}, "c0ffee"),
            records=dict(self.records),
        )

    def apply(self, action: A.ActionBase) -> None:
        name = action.path.rsplit("/", 1)[1]
        match action:
            case A.ProvisionLane():
                self.trees[action.path] = world.GitWorktree(action.path, branch=action.branch)
                self.entries.add(name)
                self.branches.add(action.branch)
                self.records[action.lane] = record(action.lane, branch=action.branch)
            case A.AdoptWorktree():
                old = self.records.get(action.lane)
                self.records[action.lane] = (
                    replace(old, phase=Phase.READY) if old else record(action.lane, adopted=True)
                )
            case A.RemoveLane():
                del self.trees[action.path]
                self.entries.discard(name)
                del self.records[action.lane]
            case A.PruneRecord():
                del self.trees[action.path]
            case A.RepairWorktree():
                listed = self.trees.pop(action.recorded)
                self.trees[action.path] = replace(listed, path=action.path, prunable=None)
                del self.misrecorded[name]
            case A.DiscardInterrupted():
                del self.trees[action.path]
                self.entries.discard(name)
            case A.QuarantineDir():
                self.entries.discard(name)
            case A.ForgetLane():
                del self.records[action.lane]


def build_world(disk: dict[str, str], recorded: dict[str, Phase | None]) -> SimWorld:
    sim = SimWorld()
    for name, state in disk.items():
        p = path(name)
        if state in ("ok", "initializing", "other-branch", "locked"):
            branch = "other" if state == "other-branch" else f"lane/{name}"
            lock = {"initializing": "initializing", "locked": "user"}.get(state)
            sim.trees[p] = tree(name, branch=branch, locked=lock)
            sim.entries.add(name)
            sim.branches.add(branch)
        elif state == "prunable":
            sim.trees[p] = tree(name, prunable="gone")
        elif state == "dir-only":
            sim.entries.add(name)
        elif state == "misrecorded":
            elsewhere = f"/moved/{name}"
            sim.trees[elsewhere] = replace(tree(name), path=elsewhere, prunable="gone")
            sim.entries.add(name)
            sim.misrecorded[name] = elsewhere
            sim.branches.add(f"lane/{name}")
    for name, phase in recorded.items():
        if phase is not None:
            sim.records[name] = record(name, phase)
    return sim


worlds = st.fixed_dictionaries(
    {
        "disk": st.dictionaries(st.sampled_from(NAMES), st.sampled_from(DISK_STATES)),
        "recorded": st.dictionaries(
            st.sampled_from(NAMES),
            st.sampled_from([None, Phase.PROVISIONING, Phase.READY, Phase.CLEANING]),
        ),
        "wanted": st.sets(st.sampled_from(NAMES), min_size=1),
    }
)


@settings(max_examples=300, deadline=None)
@given(worlds)
def test_one_pass_converges(case: dict) -> None:  # type: ignore[type-arg]
    sim = build_world(case["disk"], case["recorded"])
    want = desired(*sorted(case["wanted"]))
    first = planner.plan(want, sim.observed(), {}, NOW)
    for action in first.actions:
        sim.apply(action)
    second = planner.plan(want, sim.observed(), {}, NOW)
    assert second.actions == (), (first.actions, second.actions)


@settings(max_examples=300, deadline=None)
@given(worlds)
def test_only_inventory_is_removed(case: dict) -> None:  # type: ignore[type-arg]
    sim = build_world(case["disk"], case["recorded"])
    want = desired(*sorted(case["wanted"]))
    inventory = {r.path for r in sim.records.values()}
    declared = {path(n) for n in case["wanted"]}
    for action in planner.plan(want, sim.observed(), {}, NOW).actions:
        if isinstance(action, A.RemoveLane | A.QuarantineDir | A.DiscardInterrupted):
            assert action.path in inventory
        if isinstance(action, A.PruneRecord):  # nothing on disk; only ours or a declared path
            assert action.path in inventory | declared


@settings(max_examples=100, deadline=None)
@given(worlds)
def test_unknown_changes_nothing(case: dict) -> None:  # type: ignore[type-arg]
    sim = build_world(case["disk"], case["recorded"])
    seen = replace(sim.observed(), worktrees=world.Unknown("git timed out"))
    result = planner.plan(desired(*sorted(case["wanted"])), seen, {}, NOW)
    assert result.actions == () and result.pending == ()
