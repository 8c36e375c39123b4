"""The status view: the inventory, what desired state declares, and what a plan would do now.

Built from a fresh observation (nothing is changed), so ``controller status`` shows the world
as it is, not as the last pass left it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.core import planner, world
from controller.core.phases import Phase
from controller.runtime.reconcile import Reconciler
from controller.spec.loading import Problem
from controller.spec.state import DesiredState


async def build(
    reconciler: Reconciler, desired: DesiredState, problems: Sequence[Problem] = ()
) -> dict[str, Any]:
    """The ``controller status --output json`` object (DESIGN §8)."""
    the_plan, observed, _ = await reconciler.plan(desired, allow_empty=True)
    names = sorted(set(desired.lanes) | set(observed.records))
    lanes = [_lane(name, desired, observed, the_plan) for name in names]
    return {
        "workspace": reconciler.wiring.paths.workspace,
        "repo": str(reconciler.wiring.paths.repo),
        "worktreeRoot": str(reconciler.wiring.paths.root),
        "desiredValid": not problems,
        "problems": [str(p) for p in problems],
        "lanes": lanes,
        "participants": [],
        "triggers": {},
        "notices": list(the_plan.notices),
        "pending": {
            "actions": len(the_plan.actions),
            "heldBack": len(the_plan.pending),
        },
    }


def _lane(
    name: str, desired: DesiredState, observed: world.Observed, the_plan: planner.Plan
) -> dict[str, Any]:
    record = observed.records.get(name)
    lane = desired.lanes.get(name)
    path = record.path if record else planner.lane_path(observed.root, name)
    conditions = [*(record.conditions if record else ()), *the_plan.conditions.get(name, ())]
    todo = [a.describe() for a in the_plan.actions if a.lane == name]
    return {
        "name": name,
        "phase": str(record.phase if record else Phase.NEW),
        "declared": lane is not None,
        "branch": record.branch if record else (lane.branch if lane else None),
        "worktree": path,
        "conditions": [
            {"type": c.type, "reason": c.reason, "message": c.message} for c in conditions
        ],
        "agents": [],
        "pendingActions": todo,
        "inSync": not todo and not conditions,
    }
