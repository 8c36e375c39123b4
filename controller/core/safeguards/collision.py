"""Collision avoidance: never type into a terminal someone (or something) is using.

A window is quiet when neither it nor an attached client has shown activity for
``quietSeconds`` and its visible content did not change since the last check. Activity the
controller caused itself (its own delivery) is ignored for a short while. A busy window is
re-checked every ``recheckSeconds``; past ``maxDeferSeconds`` since the first check the attempt
ends as ``collision_timeout``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.core.safeguards import decisions
from controller.core.safeguards.decisions import Decision, Reason

# Activity this close to our own delivery is its echo. tmux stamps activity in whole seconds,
# so the window opens a second before the delivery.
ECHO_BEFORE = timedelta(seconds=1)
ECHO_AFTER = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class Screen:
    """What the observer saw of a window at one check."""

    window_activity: datetime | None
    client_activity: datetime | None = None
    content_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """The collision settings of a TriggerPolicy, in seconds."""

    quiet: float
    recheck: float
    max_defer: float


def last_activity(screen: Screen, *, own_delivery: datetime | None) -> datetime | None:
    """The latest activity that was not the echo of our own delivery."""
    times = [t for t in (screen.window_activity, screen.client_activity) if t is not None]
    if own_delivery is not None:
        start, end = own_delivery - ECHO_BEFORE, own_delivery + ECHO_AFTER
        times = [t for t in times if not start <= t <= end]
    return max(times, default=None)


def decide(
    screen: Screen,
    policy: Policy,
    now: datetime,
    *,
    first_check: datetime,
    previous_hash: str | None = None,
    own_delivery: datetime | None = None,
) -> Decision:
    """Allow when quiet; defer for a re-check while busy; time out past the maximum."""
    last = last_activity(screen, own_delivery=own_delivery)
    changed = previous_hash is not None and screen.content_hash != previous_hash
    quiet_since = now if changed else last
    if quiet_since is None or now - quiet_since >= timedelta(seconds=policy.quiet):
        return decisions.ALLOW
    if now - first_check >= timedelta(seconds=policy.max_defer):
        busy = "its content keeps changing" if changed else f"last activity at {quiet_since}"
        return decisions.block(Reason.COLLISION_TIMEOUT, f"window busy for too long ({busy})")
    wait = timedelta(seconds=policy.recheck)
    return decisions.defer(now + wait, Reason.COLLISION_DEFERRED, "window in use; re-checking")
