"""What needs a person's attention in a status view, most urgent first.

``controller status --watch`` shows these on top of its tables. They are read from the same
object ``controller status --output json`` prints (DESIGN §8, §11), so every view agrees. Pure:
no I/O.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from controller.core.drift import BLOCKERS, Blocker


class Severity(enum.IntEnum):
    """How urgent a concern is; a lower value is shown first."""

    FAILED = 0  # something ended badly and stays so: a failed run, dead jobs, a lost host
    BLOCKED = 1  # waits for a person: a crash loop, a blocked participant, a refusal
    STALLED = 2  # keeps failing: an action failed three times or more
    WARNING = 3  # may clear by itself: a retry backs off, something cannot be seen


class Kind(enum.StrEnum):
    """What kind of concern; the label a person reads."""

    INVALID = "invalid desired state"
    HOST_LOST = "host lost"
    RUN_FAILED = "run failed"
    JOBS_DEAD = "trigger jobs dead"
    CRASH_LOOP = "crash-looping"
    BLOCKED = "blocked"
    REFUSED = "refused"
    STALLED = "stalled"
    BACKING_OFF = "backing off"
    AGENT_DEAD = "agent dead"
    UNKNOWN = "not observed"


@dataclass(frozen=True, slots=True, order=True)
class Concern:
    """One thing that needs attention: what, about whom, and the detail to act on."""

    severity: Severity
    subject: str
    kind: Kind
    message: str


_CONDITIONS: Mapping[str, tuple[Severity, Kind]] = {
    "HostLost": (Severity.FAILED, Kind.HOST_LOST),
    Blocker.CRASH_LOOP: (Severity.BLOCKED, Kind.CRASH_LOOP),
    Blocker.STALLED: (Severity.STALLED, Kind.STALLED),
    Blocker.BACKING_OFF: (Severity.WARNING, Kind.BACKING_OFF),
    "ObservationUnknown": (Severity.WARNING, Kind.UNKNOWN),
    "AgentUnknown": (Severity.WARNING, Kind.UNKNOWN),
}
"""Lane conditions by rank; the other drift blockers (a branch in use, a path occupied, a
refused cleanup...) wait for a person: ``BLOCKED``."""


def concerns(view: Mapping[str, Any]) -> tuple[Concern, ...]:
    """Every concern of a ``status --output json`` view, most urgent first, each once."""
    found = {
        *_desired(view),
        *_hosts(view),
        *_lanes(view),
        *_participants(view),
        *_queue(view),
        *_runs(view),
    }
    return tuple(sorted(found))


def _desired(view: Mapping[str, Any]) -> Iterator[Concern]:
    if not view.get("desiredValid", True):
        problems = list(view.get("problems", ()))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        first = problems[0] if problems else "see controller validate"
        yield Concern(Severity.FAILED, "desired", Kind.INVALID, f"{first}{more}")
    if view.get("refused"):
        yield Concern(Severity.BLOCKED, "pass", Kind.REFUSED, str(view["refused"]))


def _hosts(view: Mapping[str, Any]) -> Iterator[Concern]:
    for host in view.get("hosts", ()):
        if host.get("state") == "lost":
            since = host.get("leaseExpiresAt") or "?"
            yield Concern(Severity.FAILED, host["name"], Kind.HOST_LOST, f"lease expired {since}")


def _lanes(view: Mapping[str, Any]) -> Iterator[Concern]:
    for lane in view.get("lanes", ()):
        for c in lane.get("conditions", ()):
            rank = _rank(c["type"])
            if rank is not None:
                message = f"{c['type']} ({c['reason']}): {c['message']}"
                yield Concern(rank[0], lane["name"], rank[1], message)
        for agent in lane.get("agents", ()):
            if agent.get("state") == "dead":
                subject = f"{lane['name']}/{agent['participant']}"
                yield Concern(Severity.WARNING, subject, Kind.AGENT_DEAD, _exit(agent))


def _rank(condition: str) -> tuple[Severity, Kind] | None:
    """Where a lane condition ranks; None for one that needs no attention (e.g. Suspended)."""
    if condition in _CONDITIONS:
        return _CONDITIONS[condition]
    if condition in BLOCKERS:
        return Severity.BLOCKED, Kind.BLOCKED
    return None


def _exit(agent: Mapping[str, Any]) -> str:
    status = agent.get("lastExit")
    return "its process is gone" + ("" if status is None else f" (last exit {status})")


def _participants(view: Mapping[str, Any]) -> Iterator[Concern]:
    # An agent's crash loop is already its lane's CrashLoop condition: name it once.
    crash_loops = {
        (a["participant"], a["blocked"])
        for lane in view.get("lanes", ())
        for a in lane.get("agents", ())
        if a.get("blocked")
    }
    for p in view.get("participants", ()):
        if p.get("blocked") and (p["name"], p.get("reason")) not in crash_loops:
            yield Concern(Severity.BLOCKED, p["name"], Kind.BLOCKED, str(p.get("reason") or "?"))


def _queue(view: Mapping[str, Any]) -> Iterator[Concern]:
    dead = int(view.get("triggers", {}).get("dead", 0))
    if dead:
        message = f"{dead} out of attempts; see controller triggers"
        yield Concern(Severity.FAILED, "queue", Kind.JOBS_DEAD, message)


def _runs(view: Mapping[str, Any]) -> Iterator[Concern]:
    for run in view.get("runs", ()):
        if run.get("phase") == "failed":
            reason = run.get("reason") or "failed"
            message = f"{reason}; see controller runs show {run['name']}"
            yield Concern(Severity.FAILED, run["name"], Kind.RUN_FAILED, message)


def fingerprint(view: Mapping[str, Any]) -> str:
    """What a redraw depends on: the view, with heartbeat ages in ten-second steps.

    A heartbeat age grows on every look; redrawing for each second would redraw all the time.
    """
    return json.dumps(_coarse(view), sort_keys=True, default=str)


def _coarse(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _coarse_field(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_coarse(v) for v in value]
    return value


def _coarse_field(key: str, value: Any) -> Any:
    if key == "heartbeatAge" and isinstance(value, int | float):
        return int(value // 10)
    return _coarse(value)
