"""What ``controller wait`` waits for, and whether the world has reached it. Pure.

``converged``: a plan with no actions, nothing held back, no drift, every source readable.
``lane=NAME``: the lane is ready, running or shared, every agent of it runs, and it has no
condition and no action to take. ``run=NAME``: the run ended (succeeded, failed or aborted).
The checks read the same values ``plan``, ``status`` and ``runs`` show; nothing here changes
anything, and nothing here reads a clock.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.core import drift, lifecycle, planner, world
from controller.core.phases import Phase
from controller.spec.state import DesiredState

UP = frozenset({Phase.READY, Phase.RUNNING, Phase.SHARED})
ENDED = frozenset({"succeeded", "failed", "aborted"})
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class Kind(enum.StrEnum):
    """The conditions ``wait --for`` knows."""

    CONVERGED = "converged"
    LANE = "lane"
    RUN = "run"


@dataclass(frozen=True, slots=True)
class Target:
    """One condition to wait for: ``converged``, ``lane=NAME`` or ``run=NAME``."""

    kind: Kind
    name: str = ""

    def __str__(self) -> str:
        """As written after ``--for``."""
        return str(self.kind) if self.kind == Kind.CONVERGED else f"{self.kind}={self.name}"


@dataclass(frozen=True, slots=True)
class Check:
    """One look: reached or not, the state seen (JSON), and a line for people."""

    reached: bool
    summary: str
    state: Mapping[str, Any] = field(default_factory=dict)
    failed: bool = False  # reached, but as a failure (a run that failed or was aborted)


def parse(text: str) -> Target:
    """``converged``, ``lane=NAME`` or ``run=NAME``; a ValueError says what is accepted."""
    kind, _, name = text.partition("=")
    if text == Kind.CONVERGED:
        return Target(Kind.CONVERGED)
    if kind in (Kind.LANE, Kind.RUN) and _NAME.fullmatch(name):
        return Target(Kind(kind), name)
    raise ValueError(f"{text!r}: expected converged, lane=NAME or run=NAME")


def converged(the_plan: planner.Plan, recorded: Mapping[str, Iterable[world.Condition]]) -> Check:
    """Whether a pass would do nothing: no action, nothing held back, no drift, no blind spot.

    ``recorded`` holds the inventory's conditions by lane (a refused cleanup).
    """
    found = drift.find_drift(the_plan.conditions, recorded)
    blind = _blind(the_plan.conditions)
    state = {
        "actions": len(the_plan.actions),
        "pending": len(the_plan.pending),
        "drift": [d.to_json() for d in found],
        "refused": the_plan.refused,
        "blind": blind,
    }
    reached = not (the_plan.actions or the_plan.pending or found or the_plan.refused or blind)
    return Check(reached, _converged_line(the_plan, found, blind=blind), state)


def _blind(conditions: Mapping[str, Iterable[world.Condition]]) -> bool:
    return any(
        c.type == "ObservationUnknown" or c.reason == "SourceUnreadable"
        for cs in conditions.values()
        for c in cs
    )


def _converged_line(the_plan: planner.Plan, found: tuple[drift.Drift, ...], *, blind: bool) -> str:
    parts = []
    if the_plan.refused:
        parts.append("the pass is refused (the empty-desired guard)")
    if blind:
        parts.append("a source cannot be read")
    if the_plan.actions:
        lanes = ", ".join(the_plan.lanes[:5]) + (", ..." if len(the_plan.lanes) > 5 else "")
        parts.append(f"{len(the_plan.actions)} action(s) to apply ({lanes})")
    if the_plan.pending:
        parts.append(f"{len(the_plan.pending)} action(s) held back")
    if found:
        parts.append("drift: " + ", ".join(f"{d.lane} ({d.type})" for d in found[:5]))
    return "; ".join(parts) if parts else "converged"


def lane(
    name: str, desired: DesiredState, observed: world.Observed, the_plan: planner.Plan
) -> Check:
    """Whether lane ``name`` is up (ready, running or shared), every agent of it running, with
    no condition and no action pending."""
    record = observed.records.get(name)
    phase = record.phase if record is not None else Phase.NEW
    conditions = [*(record.conditions if record else ()), *the_plan.conditions.get(name, ())]
    todo = [a for a in (*the_plan.actions, *the_plan.pending) if a.lane == name]
    agents = _agents(name, desired, observed)
    state = {
        "name": name,
        "phase": str(phase),
        "conditions": [_condition(c) for c in conditions],
        "agents": agents,
        "pendingActions": [a.describe() for a in todo],
    }
    running = all(a["state"] == "running" for a in agents)
    reached = phase in UP and running and not conditions and not todo
    return Check(reached, _lane_line(name, phase, agents, conditions, todo), state)


def _condition(c: world.Condition) -> dict[str, str]:
    return {"type": c.type, "reason": c.reason, "message": c.message}


def _agents(name: str, desired: DesiredState, observed: world.Observed) -> list[dict[str, str]]:
    bindings = {b.name: b.spec.participant for b in desired.bindings_of(name)}
    bindings |= {a.binding: a.participant for a in observed.agents.values() if a.lane == name}
    return [
        {"binding": b, "participant": who, "state": _agent_state(observed.agents.get(b), observed)}
        for b, who in sorted(bindings.items())
    ]


def _agent_state(record: world.AgentRecord | None, observed: world.Observed) -> str:
    if record is None:
        return "pending"
    if record.state != world.AgentState.RUNNING:
        return str(record.state)
    life = lifecycle.liveness(record, observed).life
    return {lifecycle.Life.ALIVE: "running", lifecycle.Life.UNKNOWN: "unknown"}.get(life, "dead")


def _lane_line(
    name: str,
    phase: Phase,
    agents: list[dict[str, str]],
    conditions: list[world.Condition],
    todo: list[Any],
) -> str:
    shown = ", ".join(f"{a['participant']} {a['state']}" for a in agents)
    line = f"lane {name}: {phase}" + (f" (agents: {shown})" if shown else "")
    if todo:
        line += f"; {len(todo)} action(s) to apply"
    if conditions:
        line += "; " + ", ".join(f"{c.type} ({c.reason})" for c in conditions)
    return line


def run(name: str, summary: Mapping[str, Any] | None) -> Check:
    """Whether run ``name`` ended, from its ``runs -o json`` entry (None: not created yet)."""
    if summary is None:
        return Check(False, f"run {name}: not created yet", {"name": name, "phase": None})
    phase = summary["phase"]
    why = f" ({summary['reason']})" if summary.get("reason") else ""
    done = {k: n for k, n in summary["tasks"].items() if n}
    tasks = ", ".join(f"{n} {k}" for k, n in done.items())
    line = f"run {name}: {phase}{why}" + (f"; tasks: {tasks}" if tasks else "")
    ended = phase in ENDED
    return Check(ended, line, summary, failed=ended and phase != "succeeded")
