"""Rendering for humans (Terraform-like plans, tables) and for programs (stable JSON).

Every function here returns text; the commands decide where it goes.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

from controller.core import actions, drift, planner, strays, world
from controller.executors.context import Outcome
from controller.spec.loading import Problem
from controller.store import events

SYMBOL = {actions.Change.ADD: "+", actions.Change.CHANGE: "~", actions.Change.DESTROY: "-"}
STATUS_SYMBOL = {"applied": "ok", "unchanged": "ok", "refused": "refused", "failed": "FAILED"}
# Terraform's colours: what is added is green, changed yellow, destroyed red.
HUE = {actions.Change.ADD: "green", actions.Change.CHANGE: "yellow", actions.Change.DESTROY: "red"}
STATUS_HUE = {"refused": "yellow", "failed": "red"}


class Color(enum.StrEnum):
    """``--color``: when text output gets colours."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


def colors_on(
    choice: str | None, *, tty: bool, no_color: str | None, force_color: str | None
) -> bool:
    """``--color`` wins; under ``auto``, a non-empty ``NO_COLOR`` turns colours off, then a
    non-empty ``FORCE_COLOR`` turns them on, else a terminal gets them."""
    if choice == Color.ALWAYS:
        return True
    if choice == Color.NEVER or no_color:
        return False
    return bool(force_color) or tty


def paint(text: str, hue: str | None, *, color: bool, bold: bool = False) -> str:
    """``text`` in ``hue`` when colours are on (ANSI codes), else as it is."""
    if not color or (hue is None and not bold):
        return text
    return click.style(text, fg=hue, bold=bold)


def to_json(value: Any) -> str:
    """Stable JSON: sorted keys, two-space indent."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


# -- problems ---------------------------------------------------------------------------------


def problems_text(problems: Sequence[Problem], *, origin: str | None = None) -> str:
    """``path:line: message`` lines and a summary (saying which commit, if read from git)."""
    lines = [str(p) for p in problems]
    lines.append(f"{len(problems)} problem(s) in desired state; nothing was applied.")
    if origin:
        lines.append(origin)
    return "\n".join(lines)


def problems_json(problems: Sequence[Problem]) -> list[dict[str, Any]]:
    """Problems as JSON objects."""
    return [{"path": p.path, "line": p.line, "message": p.message} for p in problems]


# -- plans ------------------------------------------------------------------------------------


def plan_text(the_plan: planner.Plan, *, color: bool = False) -> str:
    """A plan as Terraform shows one: a line per action with its reason, then the summary."""
    out: list[str] = []
    if the_plan.refused:
        out += [paint(f"Refused: {the_plan.refused}", "red", color=color), ""]
    if the_plan.actions:
        out += ["The controller will perform the following actions:", ""]
        out += [line for a in the_plan.actions for line in _action_lines(a, color=color)]
        out.append("")
    if the_plan.pending:
        out += ["Held back this pass:", ""]
        out += [line for a in the_plan.pending for line in _action_lines(a, color=color)]
        out.append("")
    out += conditions_text(the_plan.conditions, the_plan.notices, color=color)
    out += unselected_text(the_plan)
    tips = hints(the_plan)
    out += [f"Hint: {h}" for h in tips] + ([""] if tips else [])
    counts = the_plan.counts()
    if the_plan.actions:
        out.append(
            f"Plan: {counts[actions.Change.ADD]} to add, {counts[actions.Change.CHANGE]} to "
            f"change, {counts[actions.Change.DESTROY]} to destroy."
        )
    else:
        out.append(idle_line(the_plan))
    return "\n".join(out)


def hints(the_plan: planner.Plan) -> list[str]:
    """Advice on what a plan does that people may not mean. A lane removed while another is
    created on a new branch looks like a rename, but the new lane does not get the old one's
    commits: they stay on the old branch (which is kept)."""
    every = (*the_plan.actions, *the_plan.pending)
    created = sorted(
        {a.lane for a in every if isinstance(a, actions.ProvisionLane) and not a.reuse_branch}
    )
    if not created:
        return []
    return [
        f"lane {a.lane} is removed while {', '.join(created)} is created; if this is a "
        f"rename, set `spec.branch: {a.branch}` on the new lane to continue on {a.lane}'s "
        "branch (it is kept)"
        for a in every
        if isinstance(a, actions.RemoveLane)
    ]


def blind(the_plan: planner.Plan) -> bool:
    """Whether the plan was made without being able to read some source."""
    return any(
        c.type == "ObservationUnknown" or c.reason == "SourceUnreadable"
        for cs in the_plan.conditions.values()
        for c in cs
    )


def idle_line(the_plan: planner.Plan) -> str:
    """What to say when there is nothing to do, without hiding why."""
    warnings = sum(len(cs) for cs in the_plan.conditions.values()) + len(the_plan.notices)
    if the_plan.refused:
        return "Nothing was changed (refused, see above)."
    if blind(the_plan):
        return "Nothing was changed: a source could not be read (see warnings)."
    if the_plan.pending:
        return f"No changes now; {len(the_plan.pending)} action(s) held back (see warnings)."
    if warnings:
        return f"No changes, but {warnings} warning(s) above need attention."
    if the_plan.selection is not None:
        return "No changes in the selected lane(s)."
    return "No changes. The world matches the desired state."


def unselected_text(the_plan: planner.Plan) -> list[str]:
    """With ``--lane``: what the pass leaves alone, counted by lane."""
    if not the_plan.unselected:
        return []
    counts = Counter(a.lane for a in the_plan.unselected)
    shown = ", ".join(
        f"{'no lane' if lane == strays.WORKSPACE_WIDE else lane} ({n} action{'s' * (n != 1)})"
        for lane, n in sorted(counts.items())
    )
    return [f"Held back, not selected by --lane: {shown}.", ""]


def _action_lines(action: actions.ActionBase, *, color: bool = False) -> list[str]:
    symbol = paint(SYMBOL[action.change], HUE[action.change], color=color, bold=True)
    return [
        f"  {symbol} {action.lane}: {action.describe()}",
        f"      # {action.reason}",
    ]


def conditions_text(
    conditions: Mapping[str, Sequence[world.Condition]],
    notices: Sequence[str],
    *,
    color: bool = False,
) -> list[str]:
    """Warnings: lane conditions and workspace notices."""
    out: list[str] = []
    items = [(lane, c) for lane, cs in conditions.items() for c in cs]
    mark = paint("!", "yellow", color=color, bold=True)
    if items or notices:
        out.append(paint("Warnings:", "yellow", color=color))
        out += [f"  {mark} {lane}: {c.type} ({c.reason}): {c.message}" for lane, c in items]
        out += [f"  {mark} {n}" for n in notices]
        out.append("")
    return out


def plan_json(the_plan: planner.Plan) -> dict[str, Any]:
    """A plan as a stable JSON object."""
    counts = the_plan.counts()
    return {
        "actions": [dict(a.to_json()) for a in the_plan.actions],
        "pending": [dict(a.to_json()) for a in the_plan.pending],
        "conditions": {
            lane: [condition_json(c) for c in cs] for lane, cs in the_plan.conditions.items()
        },
        "notices": list(the_plan.notices),
        "hints": hints(the_plan),
        "refused": the_plan.refused,
        "summary": {str(k): v for k, v in counts.items()},
        "selection": sorted(the_plan.selection) if the_plan.selection is not None else None,
        "unselected": [dict(a.to_json()) for a in the_plan.unselected],
    }


def drift_text(found: Sequence[drift.Drift]) -> list[str]:
    """The closing line when lanes cannot converge without a person (the exit code is 2)."""
    if not found:
        return []
    shown = ", ".join(f"{d.lane} ({d.type})" for d in found[:10])
    more = f" and {len(found) - 10} more" if len(found) > 10 else ""
    return [f"Not converged: {len(found)} condition(s) need you: {shown}{more}."]


def condition_json(condition: world.Condition) -> dict[str, str]:
    """A condition as JSON."""
    return {"type": condition.type, "reason": condition.reason, "message": condition.message}


# -- apply ------------------------------------------------------------------------------------


def outcome_line(outcome: Outcome, *, color: bool = False) -> str:
    """One progress line as an action finishes."""
    a = outcome.action
    symbol = paint(SYMBOL[a.change], HUE[a.change], color=color, bold=True)
    status = STATUS_SYMBOL[outcome.status]
    status = paint(status, STATUS_HUE.get(outcome.status), color=color)
    return f"  {symbol} {a.lane}: {status}: {outcome.message}"


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """An outcome as JSON."""
    return {**outcome.action.to_json(), "status": outcome.status, "message": outcome.message}


def apply_summary(outcomes: Iterable[Outcome]) -> str:
    """The closing line of an apply."""
    done = [o for o in outcomes if o.status in ("applied", "unchanged")]
    counts = dict.fromkeys(actions.Change, 0)
    for o in done:
        counts[o.action.change] += 1
    items = list(outcomes)
    failed = sum(1 for o in items if o.failed)
    refused = sum(1 for o in items if o.status == "refused")
    return (
        f"Apply complete: {counts[actions.Change.ADD]} added, {counts[actions.Change.CHANGE]} "
        f"changed, {counts[actions.Change.DESTROY]} destroyed, {refused} refused, "
        f"{failed} failed."
    )


# -- events -----------------------------------------------------------------------------------


def event_line(event: events.Event) -> str:
    """One event for humans."""
    data = " ".join(f"{k}={v}" for k, v in sorted(event.data.items()) if v not in (None, ""))
    where = event.lane or (f"@{event.participant}" if event.participant else "-")
    at = event.at.strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{at} {event.correlation_id[:8]} {where:<20} {event.kind:<24} {event.reason} {data}"
    return line.rstrip()


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned columns (two spaces apart, no trailing spaces); the first is a header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = (
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
    return "\n".join(lines)
