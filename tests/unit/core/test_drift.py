"""Drift: which lane conditions make `--once` and `plan --detailed-exitcode` exit 2."""

from __future__ import annotations

import pytest

from controller.core import drift, world

# Every condition type the planner, the agent planner and the executors emit, and whether it
# means "will not converge by waiting" (drift) or "waiting on policy / informational" (not).
CLASSIFICATION = [
    ("BranchInUse", True),
    ("BranchMismatch", True),
    ("PathOccupied", True),
    ("CleanupRefused", True),
    ("CleanupBlocked", True),
    ("BackingOff", True),
    ("Stalled", True),
    ("CrashLoop", True),
    ("DeletionPending", False),  # maxDeletionsPerPass: the next pass removes it
    ("AgentRestarting", False),  # restart backoff: declared policy
    ("AgentWaiting", False),  # waits for its lane's worktree, made in this pass or a later one
    ("AgentExited", False),  # restart: never / on-failure after a clean exit
    ("Suspended", False),  # spec.suspend
    ("AgentUnknown", False),  # unreadable sources have their own exit code (2 for --once)
    ("ObservationUnknown", False),  # ditto; `plan --detailed-exitcode` exits 1 on it
]


@pytest.mark.parametrize(("kind", "blocks"), CLASSIFICATION)
def test_which_conditions_are_drift(kind: str, blocks: bool) -> None:
    condition = world.Condition(kind, "Reason", "message")
    found = drift.find_drift({"lane": (condition,)})
    assert found == ((drift.Drift("lane", kind, "Reason", "message"),) if blocks else ())


def test_every_blocker_is_classified() -> None:
    assert {kind for kind, blocks in CLASSIFICATION if blocks} == set(drift.BLOCKERS)


def test_sources_are_merged_deduplicated_and_sorted() -> None:
    in_use = world.Condition("BranchInUse", "CheckedOutElsewhere", "b")
    refused = world.Condition("CleanupRefused", "UncommittedChanges", "r")
    waiting = world.Condition("AgentRestarting", "Backoff", "w")
    plan = {"b": (in_use, waiting), "a": (refused,)}
    records = {"a": (refused,), "c": ()}
    found = drift.find_drift(plan, records)
    assert [(d.lane, d.type) for d in found] == [("a", "CleanupRefused"), ("b", "BranchInUse")]
    assert found[0].to_json() == {
        "lane": "a",
        "type": "CleanupRefused",
        "reason": "UncommittedChanges",
        "message": "r",
    }
    assert drift.find_drift() == ()
