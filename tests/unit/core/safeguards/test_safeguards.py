"""Every safeguard branch, table-driven, time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core import world
from controller.core.safeguards import collision, fallback, loops, payload, ratelimits
from controller.core.safeguards.decisions import Decision, Reason, Verdict

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
POLICY = collision.Policy(quiet=20, recheck=5, max_defer=60)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# -- collision ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("screen", "first", "previous", "own", "verdict", "reason"),
    [
        (collision.Screen(ago(30)), ago(0), None, None, Verdict.ALLOW, None),
        (collision.Screen(None), ago(0), None, None, Verdict.ALLOW, None),
        (collision.Screen(ago(5)), ago(0), None, None, Verdict.DEFER, Reason.COLLISION_DEFERRED),
        (
            collision.Screen(ago(30), ago(3)),
            ago(0),
            None,
            None,
            Verdict.DEFER,
            Reason.COLLISION_DEFERRED,
        ),  # an attached client typed
        (
            collision.Screen(ago(30), None, "h2"),
            ago(10),
            "h1",
            None,
            Verdict.DEFER,
            Reason.COLLISION_DEFERRED,
        ),  # content changed between checks
        (collision.Screen(ago(30), None, "h1"), ago(10), "h1", None, Verdict.ALLOW, None),
        (collision.Screen(ago(5)), ago(60), None, None, Verdict.BLOCK, Reason.COLLISION_TIMEOUT),
        (collision.Screen(ago(2)), ago(0), None, ago(3), Verdict.ALLOW, None),  # our own echo
        (collision.Screen(ago(5)), ago(0), None, ago(4.5), Verdict.ALLOW, None),  # 1 s stamp
        (
            collision.Screen(ago(2)),
            ago(0),
            None,
            ago(30),
            Verdict.DEFER,
            Reason.COLLISION_DEFERRED,
        ),  # long after our delivery: real activity
    ],
    ids=[
        "quiet",
        "never-active",
        "busy",
        "client-busy",
        "content-changed",
        "content-same",
        "max-defer",
        "own-echo-ignored",
        "own-echo-whole-seconds",
        "not-own-echo",
    ],
)
def test_collision(
    screen: collision.Screen,
    first: datetime,
    previous: str | None,
    own: datetime | None,
    verdict: Verdict,
    reason: Reason | None,
) -> None:
    got = collision.decide(
        screen, POLICY, NOW, first_check=first, previous_hash=previous, own_delivery=own
    )
    assert (got.verdict, got.reason) == (verdict, reason)
    if verdict == Verdict.DEFER:
        assert got.until == NOW + timedelta(seconds=5)


# -- rate limits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("participant", "thread", "verdict", "reason", "until"),
    [
        ([], [], Verdict.ALLOW, None, None),
        ([ago(10)] * 5, [], Verdict.ALLOW, None, None),
        (
            [ago(50), ago(40), ago(30), ago(20), ago(10), ago(5)],
            [],
            Verdict.DEFER,
            Reason.RATE_LIMITED_PARTICIPANT,
            ago(50) + timedelta(hours=1),
        ),
        ([ago(3700)] * 6, [], Verdict.ALLOW, None, None),  # out of the window
        (
            [],
            [ago(100)] * 20,
            Verdict.DEFER,
            Reason.RATE_LIMITED_THREAD,
            ago(100) + timedelta(hours=1),
        ),
        (
            [ago(10)] * 6,
            [ago(5)] * 20,
            Verdict.DEFER,
            Reason.RATE_LIMITED_THREAD,
            ago(5) + timedelta(hours=1),
        ),  # the later deferral wins
    ],
    ids=["none", "under", "participant-limit", "window-slides", "thread-limit", "both"],
)
def test_rate_limits(
    participant: list[datetime],
    thread: list[datetime],
    verdict: Verdict,
    reason: Reason | None,
    until: datetime | None,
) -> None:
    got = ratelimits.decide(
        participant, thread, per_participant=(6, 3600), per_thread=(20, 3600), now=NOW
    )
    assert (got.verdict, got.reason, got.until) == (verdict, reason, until)


# -- loops --------------------------------------------------------------------------------------


def test_twenty_turns_without_progress_block() -> None:
    state = loops.LoopState()
    for _ in range(19):
        state = loops.after_turn(state, loops.Progress())
        assert loops.decide(state, max_no_progress=20, max_identical=3).allowed
    state = loops.after_turn(state, loops.Progress())
    got = loops.decide(state, max_no_progress=20, max_identical=3)
    assert (got.verdict, got.reason) == (Verdict.BLOCK, Reason.LOOP_NO_PROGRESS)


@pytest.mark.parametrize(
    "progress",
    [
        loops.Progress(committed=True),
        loops.Progress(worktree_changed=True),
        loops.Progress(posted=("done",)),
    ],
)
def test_progress_resets_the_count(progress: loops.Progress) -> None:
    state = loops.LoopState(no_progress=15)
    assert loops.after_turn(state, progress).no_progress == 0


def test_three_identical_findings_block() -> None:
    state = loops.LoopState()
    for text in ("Found  a bug\n", "Found a   bug"):  # the same once white space is normalised
        state = loops.after_turn(state, loops.Progress(posted=(text,)))
    assert state.identical == 2
    assert loops.decide(state, max_no_progress=20, max_identical=3).allowed
    state = loops.after_turn(state, loops.Progress(posted=("\tFound a bug ",)))
    got = loops.decide(state, max_no_progress=20, max_identical=3)
    assert (got.verdict, got.reason) == (Verdict.BLOCK, Reason.LOOP_IDENTICAL_FINDINGS)


def test_case_makes_a_different_finding() -> None:
    state = loops.after_turn(loops.LoopState(), loops.Progress(posted=("Found a bug",)))
    assert loops.after_turn(state, loops.Progress(posted=("found a bug",))).identical == 1


def test_a_different_finding_starts_over() -> None:
    state = loops.LoopState(finding=loops.finding_digest("x"), identical=2)
    assert loops.after_turn(state, loops.Progress(posted=("y",))).identical == 1


# -- payload ------------------------------------------------------------------------------------

TEMPLATE = "You have {unread} unread message(s) in {thread} from {sender}."


def render(
    template: str = TEMPLATE, *, max_bytes: int = 2048, control_chars: str = "strip"
) -> str | Decision:
    return payload.render(
        template,
        participant="claude-1",
        thread="review",
        unread=2,
        sender="human",
        max_bytes=max_bytes,
        control_chars=control_chars,
    )


def test_template_is_filled() -> None:
    assert render() == "You have 2 unread message(s) in review from human."


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a\x1b[2Jb", "ab"),  # clear screen
        ("a\x1b]0;title\x07b", "ab"),  # OSC title
        ("a\x1b]52;c;ZWNobw==\x1b\\b", "ab"),  # OSC 52 clipboard write
        ("a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),  # DCS
        ("a\x9b31mb", "ab"),  # 8-bit CSI
        ("line1\nline2\r\n", "line1 line2"),  # no early Enter
        ("a\x03\x04\x1a\x00b", "ab"),  # ^C ^D ^Z NUL
        ("a\u202eb\u2066c", "abc"),  # bidi overrides
        ("{unread:>999999999}", "2"),  # format specs are ignored, never expanded
    ],
)
def test_control_bytes_never_reach_the_terminal(template: str, expected: str) -> None:
    assert render(template) == expected


def test_reject_policy_refuses_control_characters() -> None:
    got = render("hi\x1b[31m", control_chars="reject")
    assert isinstance(got, Decision) and got.reason == Reason.PAYLOAD_REJECTED


def test_payload_is_bounded_on_a_character_boundary() -> None:
    got = render("é" * 100, max_bytes=9)
    assert got == "éééé"


@given(st.text())
def test_any_template_renders_clean_text(text: str) -> None:
    got = render(text.replace("{", "").replace("}", ""), max_bytes=64)
    if isinstance(got, str):
        assert len(got.encode()) <= 64
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in got)


# -- fallback -----------------------------------------------------------------------------------


HOUR_AGO = NOW - timedelta(hours=1)


def agent(
    *, state: world.AgentState = world.AgentState.EXITED, started_at: datetime = HOUR_AGO
) -> world.AgentRecord:
    return world.AgentRecord(
        binding="b",
        lane="a",
        participant="p",
        runtime="tmux",
        state=state,
        spec_hash="x",
        started_at=started_at,
    )


@pytest.mark.parametrize(
    ("kw", "hop", "reason"),
    [
        ({"managed": False}, fallback.Hop.REQUIRED, Reason.FALLBACK_REQUIRED_UNMANAGED),
        ({"live": True}, fallback.Hop.DELIVER, Reason.DELIVERED),
        ({"agent": None}, fallback.Hop.REQUIRED, Reason.FALLBACK_REQUIRED_NO_SESSION),
        ({}, fallback.Hop.RESUME, Reason.RESUMED),
        ({"resumes_used": 2}, fallback.Hop.SPAWN, Reason.SPAWNED),
        ({"agent": agent(started_at=ago(13 * 3600))}, fallback.Hop.SPAWN, Reason.SPAWNED),
        (
            {"agent": agent(state=world.AgentState.BLOCKED)},
            fallback.Hop.DEAD,
            Reason.FALLBACK_REQUIRED_OFFLINE,
        ),
        ({"has_resume": False, "has_spawn": False}, fallback.Hop.DEAD, Reason.FALLBACK_EXHAUSTED),
        ({"resumes_used": 2, "has_spawn": False}, fallback.Hop.DEAD, Reason.FALLBACK_EXHAUSTED),
    ],
    ids=[
        "unmanaged",
        "live",
        "no-session",
        "resume",
        "resume-exhausted",
        "stale-session",
        "crash-looping",
        "nothing-declared",
        "exhausted",
    ],
)
def test_fallback_chain(kw: dict[str, Any], hop: fallback.Hop, reason: Reason) -> None:
    args: dict[str, Any] = {
        "managed": True,
        "agent": agent(),
        "live": False,
        "has_resume": True,
        "has_spawn": True,
        "resumes_used": 0,
        "resume_attempts": 2,
        "stale_hours": 12,
        "now": NOW,
        **kw,
    }
    step = fallback.next_hop(**args)
    assert (step.hop, step.reason) == (hop, reason)
