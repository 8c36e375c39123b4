"""The fallback chain, when a participant's window is gone or dead: resume, then spawn fresh
with a summary of the thread, then give up (dead letter). A participant without a binding is
never silently dropped: the result is ``fallback_required`` with why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.core import world
from controller.core.safeguards.decisions import Reason


class Hop(enum.StrEnum):
    """The next step for a wake."""

    DELIVER = "deliver"  # the window is live: type the prompt
    RESUME = "resume"  # start the binding's `resume` command, then deliver
    SPAWN = "spawn"  # start the binding's `spawn` command with the thread summary
    DEAD = "dead"  # every hop failed or none applies: dead letter
    REQUIRED = "fallback_required"  # not the controller's to wake


@dataclass(frozen=True, slots=True)
class Step:
    """A hop and the reason code it is recorded with."""

    hop: Hop
    reason: Reason
    detail: str = ""


def next_hop(
    *,
    managed: bool,
    agent: world.AgentRecord | None,
    live: bool,
    has_resume: bool,
    has_spawn: bool,
    resumes_used: int,
    resume_attempts: int,
    stale_hours: float,
    now: datetime,
) -> Step:
    """Where a wake goes next, by the fallback rules."""
    if not managed:
        return Step(Hop.REQUIRED, Reason.FALLBACK_REQUIRED_UNMANAGED, "no Binding: not managed")
    if live:
        return Step(Hop.DELIVER, Reason.DELIVERED)
    if agent is None:
        return Step(Hop.REQUIRED, Reason.FALLBACK_REQUIRED_NO_SESSION, "no agent session yet")
    stale = _stale(agent, stale_hours, now)
    looping = agent.state == world.AgentState.BLOCKED
    if has_resume and resumes_used < resume_attempts and not stale and not looping:
        return Step(Hop.RESUME, Reason.RESUMED, f"resume attempt {resumes_used + 1}")
    if has_spawn and not looping:
        why = "stale session" if stale else "resume exhausted or not declared"
        return Step(Hop.SPAWN, Reason.SPAWNED, why)
    if looping:
        return Step(Hop.DEAD, Reason.FALLBACK_REQUIRED_OFFLINE, "the agent is crash-looping")
    return Step(Hop.DEAD, Reason.FALLBACK_EXHAUSTED, "no resume or spawn left to try")


def _stale(agent: world.AgentRecord, stale_hours: float, now: datetime) -> bool:
    since = agent.heartbeat_at or agent.started_at
    return since is None or now - since > timedelta(hours=stale_hours)
