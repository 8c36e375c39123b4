"""Agent lifecycle rules, pure: is an agent alive, stale, due for a restart, crash-looping?

Restart policy (DESIGN §5): the first restart is immediate, then 10 s doubling to 300 s; an
agent that stayed up 10 minutes starts over at "first". A binding that dies ``deaths`` times
within ``within`` is crash-looping: blocked, not restarted, until ``controller unblock``.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.core import world
from controller.spec.binding import Binding

RESTART_BASE = timedelta(seconds=10)
RESTART_CAP = timedelta(seconds=300)
STABLE_AFTER = timedelta(minutes=10)
DEATH_HISTORY = 50
CREATE_TIME_TOLERANCE = 0.05  # seconds; psutil's create time is a float of clock ticks


class Life(enum.StrEnum):
    """What the observation says about a recorded agent."""

    ALIVE = "alive"
    DEAD = "dead"  # ended; its exit status may be known
    ORPHANED = "orphaned"  # its process lives but its tmux window is gone (e.g. another socket)
    SETTLING = "settling"  # it just ended; tmux has not reported the status yet
    UNKNOWN = "unknown"  # a source could not be read: decide nothing


@dataclass(frozen=True, slots=True)
class Seen:
    """Liveness plus the exit status when known."""

    life: Life
    exit_code: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """What to record after an agent died, and when (if ever) to start it again."""

    state: world.AgentState
    deaths: tuple[datetime, ...]
    consecutive: int
    last_exit: int | None
    next_start_at: datetime | None
    blocked: str | None


def spec_hash(binding: Binding) -> str:
    """A digest of what the agent process is made from; a change means a restart."""
    s = binding.spec
    material = {
        "command": list(s.command),
        "env": dict(sorted(s.env.items())),
        "runtime": s.runtime,
        "lane": s.lane,
        "participant": s.participant,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """A field of a binding that differs from what its running agent was started with.

    ``field`` is one of ``SPEC_FIELDS``, or ``binding`` when the record is too old to tell;
    ``keys`` names the environment variables added, removed or changed (never their values).
    """

    field: str
    keys: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.field} ({', '.join(self.keys)})" if self.keys else self.field


SPEC_FIELDS = ("command", "env", "runtime", "participant", "lane")
"""What an agent process is made from, in the order a restart names them."""


def spec_fields(binding: Binding) -> tuple[tuple[str, str], ...]:
    """A digest of each field in ``SPEC_FIELDS`` (``env.NAME`` per variable), sorted.

    Kept in the agent's record so that a restart can say which fields changed. The digests
    cover the binding's name too; they are no easier to reverse than ``spec_hash``.
    """
    s = binding.spec
    values: dict[str, object] = {
        "command": list(s.command),
        "runtime": s.runtime,
        "participant": s.participant,
        "lane": s.lane,
    }
    values.update({f"env.{name}": value for name, value in s.env.items()})
    return tuple(sorted((k, _digest(binding.name, k, v)) for k, v in values.items()))


def _digest(binding: str, name: str, value: object) -> str:
    material = json.dumps([binding, name, value], sort_keys=True).encode()
    return hashlib.sha256(material).hexdigest()[:16]


def changed_fields(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[FieldChange, ...]:
    """Which fields differ between two ``spec_fields`` digests, in ``SPEC_FIELDS`` order.

    A record written before the digests were kept has none: the change is ``binding``.
    """
    if not before:
        return (FieldChange("binding"),)
    names = {k for k in (*before, *after) if k.startswith("env.")}
    env = tuple(sorted(k[4:] for k in names if before.get(k) != after.get(k)))
    found = [
        FieldChange(name, env) if name == "env" else FieldChange(name)
        for name in SPEC_FIELDS
        if (env if name == "env" else before.get(name) != after.get(name))
    ]
    return tuple(found) or (FieldChange("binding"),)


def same_process(proc: world.Proc | None, record: world.AgentRecord) -> bool:
    """Whether ``proc`` is the very process recorded (PID *and* create time match)."""
    if proc is None or record.pid_created is None or proc.zombie:
        return False
    return abs(proc.created - record.pid_created) <= CREATE_TIME_TOLERANCE


def liveness(record: world.AgentRecord, observed: world.Observed) -> Seen:
    """Is the recorded agent alive, dead (with status if known), or unknown this pass?"""
    if isinstance(observed.processes, world.Unknown):
        return Seen(Life.UNKNOWN, reason=f"process table: {observed.processes.reason}")
    if record.state == world.AgentState.STARTING:
        # Only the agent planner settles an interrupted start (agents.interrupted_start).
        return Seen(Life.SETTLING, reason="its start was interrupted; the next pass settles it")
    proc = observed.processes.get(record.pid or -1)
    if record.runtime == "process":
        if same_process(proc, record):
            return Seen(Life.ALIVE)
        return Seen(Life.DEAD, observed.exits.get(record.binding), "process ended")
    if isinstance(observed.panes, world.Unknown):
        return Seen(Life.UNKNOWN, reason=f"tmux: {observed.panes.reason}")
    pane = next((p for p in observed.panes if p.pane_id == record.pane_id), None)
    if pane is None or pane.pid != record.pid:
        if same_process(proc, record):
            return Seen(Life.ORPHANED, reason="its process runs outside the workspace's server")
        return Seen(Life.DEAD, None, "its tmux window is gone")
    if same_process(proc, record):
        return Seen(Life.ALIVE)  # even if its terminal closed (pane_dead), the process lives
    if pane.dead and pane.dead_status is not None:
        return Seen(Life.DEAD, pane.dead_status, "the program in its pane exited")
    # tmux reports the status a moment after the process ends; deciding now would lose it,
    # and a clean exit could be taken for a failure.
    return Seen(Life.SETTLING, reason="its process ended; waiting for tmux's exit status")


def restart_delay(consecutive: int) -> timedelta:
    """Delay before restart number ``consecutive`` in a row: 0, then 10 s doubling to 300 s."""
    if consecutive <= 1:
        return timedelta(0)
    return min(RESTART_BASE * (1 << min(consecutive - 2, 16)), RESTART_CAP)


def after_death(
    record: world.AgentRecord,
    binding: Binding | None,
    *,
    exit_code: int | None,
    now: datetime,
) -> ExitDecision:
    """Record a death at ``now`` and decide the restart, by the binding's policy.

    An unknown exit status (the window vanished, the process was killed) counts as a failure.
    Without a binding (it was removed) nothing is restarted.
    """
    deaths = (*record.deaths, now)[-DEATH_HISTORY:]
    stable = record.started_at is not None and now - record.started_at >= STABLE_AFTER
    consecutive = 1 if stable else record.consecutive + 1
    blocked = _crash_loop(binding, deaths, now) if binding else None
    restart = binding is not None and _wants_restart(binding.spec.restart, exit_code)
    if blocked is not None:
        return ExitDecision(world.AgentState.BLOCKED, deaths, consecutive, exit_code, None, blocked)
    next_at = now + restart_delay(consecutive) if restart else None
    return ExitDecision(world.AgentState.EXITED, deaths, consecutive, exit_code, next_at, None)


def _wants_restart(policy: str, exit_code: int | None) -> bool:
    return policy == "always" or (policy == "on-failure" and exit_code != 0)


def _crash_loop(binding: Binding, deaths: tuple[datetime, ...], now: datetime) -> str | None:
    rule = binding.spec.crash_loop
    window = timedelta(seconds=rule.within)
    recent = [d for d in deaths if now - d <= window]
    if len(recent) < rule.deaths:
        return None
    return (
        f"crash loop: {len(recent)} deaths within {rule.within:g}s (crashLoop.deaths "
        f"{rule.deaths}); not restarted until `controller unblock {binding.spec.participant} "
        "--reason ...`"
    )


def last_heartbeat(
    record: world.AgentRecord, binding: Binding, observed: world.Observed
) -> datetime | None:
    """The newest sign of life by the binding's heartbeat source (never before its start)."""
    beat = binding.spec.heartbeat
    if beat is None:
        return None
    signs = [record.started_at]
    if beat.source == "explicit":
        signs.append(record.heartbeat_at)
    elif record.runtime == "process":
        signs.append(observed.log_activity.get(record.binding))
    elif not isinstance(observed.panes, world.Unknown):
        pane = next((p for p in observed.panes if p.pane_id == record.pane_id), None)
        signs.append(pane.activity if pane else None)
    known = [s for s in signs if s is not None]
    return max(known) if known else None


def is_stale(
    record: world.AgentRecord, binding: Binding, observed: world.Observed, now: datetime
) -> bool:
    """Whether the agent has shown no heartbeat within ``heartbeat.staleAfter``."""
    beat = binding.spec.heartbeat
    last = last_heartbeat(record, binding, observed)
    if beat is None or last is None:
        return False
    return now - last > timedelta(seconds=beat.stale_after)
