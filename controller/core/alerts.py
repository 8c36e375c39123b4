"""Which lane conditions appeared and which cleared between two passes, for the daemon's log.

The daemon logs a condition (CrashLoop, Stalled, BranchMismatch, BranchInUse, ...) once when
it appears and once when it clears, not on every pass. A condition is the same one while its
lane, type and reason stay the same: its message may change between passes (a count, a time)
without a new line. Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from controller.core import planner, world

Snapshot = Mapping[str, tuple[world.Condition, ...]]  # lane -> its conditions


class Change(enum.StrEnum):
    """Whether a condition came or went."""

    APPEARED = "appeared"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class Alert:
    """One condition that appeared or cleared on one lane."""

    lane: str
    condition: world.Condition
    change: Change


def conditions_after(plan: planner.Plan, observed: world.Observed) -> Snapshot:
    """The conditions a pass leaves on each lane: the inventory's and the plan's (as
    ``controller status`` shows them), lanes without any left out."""
    lanes = sorted({*observed.records, *plan.conditions})
    found = {name: _of(name, plan, observed) for name in lanes}
    return {name: conditions for name, conditions in found.items() if conditions}


def _of(name: str, plan: planner.Plan, observed: world.Observed) -> tuple[world.Condition, ...]:
    record = observed.records.get(name)
    return (*(record.conditions if record else ()), *plan.conditions.get(name, ()))


def compare(before: Snapshot, after: Snapshot) -> tuple[Alert, ...]:
    """The conditions in ``after`` and not in ``before`` (appeared, with their new message),
    then those in ``before`` and not in ``after`` (cleared), each sorted by lane and type."""
    old, new = _keyed(before), _keyed(after)
    appeared = [Alert(k[0], c, Change.APPEARED) for k, c in sorted(new.items()) if k not in old]
    cleared = [Alert(k[0], c, Change.CLEARED) for k, c in sorted(old.items()) if k not in new]
    return (*appeared, *cleared)


def _keyed(snapshot: Snapshot) -> dict[tuple[str, str, str], world.Condition]:
    keyed: dict[tuple[str, str, str], world.Condition] = {}
    for lane, conditions in snapshot.items():
        for c in conditions:
            keyed.setdefault((lane, c.type, c.reason), c)  # the first of equal ones
    return keyed
