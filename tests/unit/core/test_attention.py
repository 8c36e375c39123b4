"""What needs attention in a status view, and in which order (`status --watch` shows it)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core import attention, drift
from controller.core.attention import Concern, Kind, Severity


def view(**fields: Any) -> dict[str, Any]:
    """A `status -o json` view with nothing wrong, and the given fields."""
    return {
        "desiredValid": True,
        "problems": [],
        "lanes": [],
        "participants": [],
        "triggers": {},
        "runs": [],
        "notices": [],
        "refused": None,
        **fields,
    }


def lane(name: str, *conditions: tuple[str, str], agents: list[Any] | None = None) -> Any:
    return {
        "name": name,
        "conditions": [{"type": t, "reason": r, "message": "msg"} for t, r in conditions],
        "agents": agents or [],
    }


def agent(participant: str, state: str = "running", **fields: Any) -> dict[str, Any]:
    return {
        "participant": participant,
        "state": state,
        "blocked": None,
        "lastExit": None,
        "heartbeatAge": None,
        **fields,
    }


def test_a_healthy_view_needs_no_attention() -> None:
    healthy = view(
        lanes=[lane("a", ("Suspended", "Declared"), agents=[agent("p")])],
        participants=[{"name": "p", "blocked": False, "reason": None}],
        triggers={"done": 4, "queued": 1},
        runs=[{"name": "r1", "phase": "running"}],
    )
    assert attention.concerns(healthy) == ()


@pytest.mark.parametrize(
    ("condition", "severity", "kind"),
    [
        ("Stalled", Severity.STALLED, Kind.STALLED),
        ("CrashLoop", Severity.BLOCKED, Kind.CRASH_LOOP),
        ("BranchMismatch", Severity.BLOCKED, Kind.BLOCKED),
        ("PathOccupied", Severity.BLOCKED, Kind.BLOCKED),
        ("BackingOff", Severity.WARNING, Kind.BACKING_OFF),
        ("AgentUnknown", Severity.WARNING, Kind.UNKNOWN),
        ("HostLost", Severity.FAILED, Kind.HOST_LOST),
    ],
)
def test_lane_conditions_rank(condition: str, severity: Severity, kind: Kind) -> None:
    found = attention.concerns(view(lanes=[lane("a", (condition, "Why"))]))
    assert found == (Concern(severity, "a", kind, f"{condition} (Why): msg"),)


def test_every_drift_blocker_needs_attention() -> None:
    for blocker in drift.BLOCKERS:
        assert attention.concerns(view(lanes=[lane("a", (blocker, "Why"))])), blocker


def test_the_most_urgent_come_first_then_by_subject() -> None:
    found = attention.concerns(
        view(
            lanes=[
                lane("b", ("BackingOff", "RetryLater")),
                lane("a", ("Stalled", "RepeatedFailure"), ("BackingOff", "RetryLater")),
                lane("c", ("CrashLoop", "Blocked")),
            ],
            triggers={"dead": 2, "done": 9},
            runs=[{"name": "nightly", "phase": "failed", "reason": "task_failed"}],
        )
    )
    assert [(c.severity, c.subject, c.kind) for c in found] == [
        (Severity.FAILED, "nightly", Kind.RUN_FAILED),
        (Severity.FAILED, "queue", Kind.JOBS_DEAD),
        (Severity.BLOCKED, "c", Kind.CRASH_LOOP),
        (Severity.STALLED, "a", Kind.STALLED),
        (Severity.WARNING, "a", Kind.BACKING_OFF),
        (Severity.WARNING, "b", Kind.BACKING_OFF),
    ]
    assert found[1].message.startswith("2 out of attempts")


def test_invalid_desired_state_and_a_refusal() -> None:
    found = attention.concerns(
        view(desiredValid=False, problems=["x.yaml:3: bad", "y.yaml:1: worse"], refused="empty")
    )
    assert found == (
        Concern(Severity.FAILED, "desired", Kind.INVALID, "x.yaml:3: bad (and 1 more)"),
        Concern(Severity.BLOCKED, "pass", Kind.REFUSED, "empty"),
    )


def test_a_dead_agent_and_a_lost_host() -> None:
    found = attention.concerns(
        view(
            lanes=[lane("a", agents=[agent("p", "dead", lastExit=137)])],
            hosts=[
                {"name": "h1", "state": "live"},
                {"name": "h2", "state": "lost", "leaseExpiresAt": "2026-12-02T10:00:00+00:00"},
            ],
        )
    )
    assert found == (
        Concern(Severity.FAILED, "h2", Kind.HOST_LOST, "lease expired 2026-12-02T10:00:00+00:00"),
        Concern(Severity.WARNING, "a/p", Kind.AGENT_DEAD, "its process is gone (last exit 137)"),
    )


def test_a_crash_loop_is_named_once_a_wake_block_is_named() -> None:
    loop = "crash loop: 5 exits in 60s"
    found = attention.concerns(
        view(
            lanes=[
                lane("a", ("CrashLoop", "Blocked"), agents=[agent("p", "blocked", blocked=loop)])
            ],
            participants=[
                {"name": "p", "blocked": True, "reason": loop},
                {"name": "q", "blocked": True, "reason": "loop_no_progress: 4 wakes"},
            ],
        )
    )
    assert [(c.subject, c.kind) for c in found] == [("a", Kind.CRASH_LOOP), ("q", Kind.BLOCKED)]


def test_each_concern_once() -> None:
    twice = lane("a", ("Stalled", "R"), ("Stalled", "R"))
    assert len(attention.concerns(view(lanes=[twice]))) == 1


def test_the_fingerprint_ignores_small_heartbeat_moves_only() -> None:
    def at(age: float, state: str = "running") -> str:
        return attention.fingerprint(
            view(lanes=[lane("a", agents=[agent("p", state, heartbeatAge=age)])])
        )

    assert at(1.0) == at(9.9)
    assert at(1.0) != at(10.0)
    assert at(1.0) != at(1.0, "dead")
    assert attention.fingerprint(view()) != attention.fingerprint(view(lanes=[lane("new")]))
