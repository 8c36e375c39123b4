"""Which wakes are wanted, and the decision for one job, table-driven (time passed in)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core import triggers, world
from controller.core.safeguards import collision, loops
from controller.core.safeguards.decisions import Reason
from controller.spec.state import DesiredState
from controller.spec.thread import Thread
from controller.spec.triggerpolicy import TriggerPolicy
from tests.factories import agent, binding, lane

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
K = triggers.Kind


def doc(model: Any, name: str, **spec: Any) -> Any:
    return model.model_validate(
        {
            "apiVersion": "lanes/v1",
            "kind": model.__name__,
            "metadata": {"name": name},
            "spec": spec,
        },
        strict=False,
    )


def state(*extra: Any, policy: dict[str, Any] | None = None, closed: bool = False) -> DesiredState:
    docs = [
        lane("a"),
        binding("a-bot", "a", "bot", resume=["agent", "--continue"], spawn=["agent", "{summary}"]),
        doc(Thread, "review", participants=["bot", "human"], closed=closed),
        doc(Thread, "other", participants=["human", "bot"]),
        doc(TriggerPolicy, "default", **(policy or {})),
        *extra,
    ]
    return DesiredState.build(docs)


def unread(p: str = "bot", t: str = "review", **kw: Any) -> world.UnreadCount:
    values: dict[str, Any] = {"count": 2, "last_seq": 5, "sender": "human", "woken": 0, **kw}
    return world.UnreadCount(p, t, **values)


def test_wanted_wakes() -> None:
    got = triggers.wanted(state(), [unread(), unread("human"), unread(t="other", woken=5)])
    assert [(w.participant, w.thread, w.unread_seq) for w in got] == [("bot", "review", 5)]


@pytest.mark.parametrize(
    ("desired", "entry"),
    [
        (state(closed=True), unread()),  # closed thread
        (state(), unread(woken=5)),  # already woken about these
        (state(), unread(t="nope")),  # unknown thread
        (state(policy={"threads": ["other"]}), unread()),  # policy does not select the thread
        (
            DesiredState.build(
                [
                    lane("a"),
                    binding("a-bot", "a", "bot"),
                    doc(Thread, "review", participants=["bot"]),
                ]
            ),
            unread(),
        ),  # no policy
    ],
)
def test_no_wake(desired: DesiredState, entry: world.UnreadCount) -> None:
    assert triggers.wanted(desired, [entry]) == []


def test_policy_can_select_an_unmanaged_participant() -> None:
    desired = state(policy={"participants": ["human"]})
    assert triggers.policy_for(desired, "human", "review") is not None
    assert triggers.policy_for(desired, "bot", "review") is None


def live_facts(**kw: Any) -> triggers.Facts:
    record = agent(binding("a-bot", "a", "bot"), started_at=NOW - timedelta(hours=1))
    pane = world.Pane("$1", "@1", "%1", 100, activity=NOW - timedelta(minutes=5))
    values: dict[str, Any] = {
        "participant": "bot",
        "thread": "review",
        "forced": False,
        "unread": unread(),
        "agent": record,
        "pane": pane,
        "screen": collision.Screen(pane.activity),
        **kw,
    }
    return triggers.Facts(**values)


def test_deliver_renders_the_template_without_message_bodies() -> None:
    step = triggers.decide(state(), live_facts(), NOW)
    assert step.kind == K.DELIVER and step.reason == Reason.DELIVERED
    assert step.text.startswith("You have 2 unread message(s) in review from human.")


@pytest.mark.parametrize(
    ("kw", "kind", "reason"),
    [
        ({"participant": "stranger"}, K.DONE, Reason.NOT_MEMBER),
        ({"thread": "nope"}, K.DONE, Reason.THREAD_UNKNOWN),
        ({"unread": None}, K.DONE, Reason.NOTHING_UNREAD),
        (
            {"screen": collision.Screen(NOW - timedelta(seconds=3))},
            K.DEFER,
            Reason.COLLISION_DEFERRED,
        ),
        (
            {
                "screen": collision.Screen(NOW - timedelta(seconds=3)),
                "first_check": NOW - timedelta(seconds=61),
            },
            K.FAIL,
            Reason.COLLISION_TIMEOUT,
        ),
        (
            {"participant_deliveries": [NOW - timedelta(minutes=m) for m in range(6)]},
            K.DEFER,
            Reason.RATE_LIMITED_PARTICIPANT,
        ),
        ({"loop": loops.LoopState(no_progress=20)}, K.DONE, Reason.LOOP_NO_PROGRESS),
        ({"loop": loops.LoopState(identical=3)}, K.DONE, Reason.LOOP_IDENTICAL_FINDINGS),
        ({"blocked": "loop"}, K.DONE, Reason.PARTICIPANT_BLOCKED),
        ({"pane": world.Pane("$1", "@1", "%1", 100, in_mode=True)}, K.DEFER, Reason.PANE_IN_MODE),
        ({"pane": None}, K.RESUME, Reason.RESUMED),
        ({"pane": world.Pane("$1", "@1", "%1", 100, dead=True)}, K.RESUME, Reason.RESUMED),
        ({"pane": None, "resumes": 2}, K.SPAWN, Reason.SPAWNED),
        ({"pane": None, "agent": None}, K.DONE, Reason.FALLBACK_REQUIRED_NO_SESSION),
    ],
    ids=[
        "not-member",
        "unknown-thread",
        "read-meanwhile",
        "busy",
        "busy-too-long",
        "rate-limited",
        "no-progress",
        "identical-findings",
        "blocked",
        "copy-mode",
        "window-gone",
        "pane-dead",
        "resume-exhausted",
        "no-session",
    ],
)
def test_decide(kw: dict[str, Any], kind: K, reason: Reason) -> None:
    step = triggers.decide(state(), live_facts(**kw), NOW)
    assert (step.kind, step.reason) == (kind, reason)
    assert step.block_participant is (
        reason in (Reason.LOOP_NO_PROGRESS, Reason.LOOP_IDENTICAL_FINDINGS)
    )


def test_unmanaged_participant_is_fallback_required() -> None:
    step = triggers.decide(state(), live_facts(participant="human", agent=None, pane=None), NOW)
    assert (step.kind, step.reason) == (K.DONE, Reason.FALLBACK_REQUIRED_UNMANAGED)


def test_force_bypasses_collision_rate_and_loop() -> None:
    facts = live_facts(
        forced=True,
        unread=None,
        loop=loops.LoopState(no_progress=99),
        blocked="loop",
        screen=collision.Screen(NOW),
        participant_deliveries=[NOW] * 50,
    )
    step = triggers.decide(state(), facts, NOW)
    assert (step.kind, step.reason) == (K.DELIVER, Reason.FORCED)


def test_control_bytes_in_a_template_never_reach_the_terminal() -> None:
    desired = state(policy={"template": "wake {participant}\x1b]52;c;aGk=\x07\x1b[2J now\r\n"})
    step = triggers.decide(desired, live_facts(), NOW)
    assert step.text == "wake bot now"


def test_retry_delay_doubles_caps_and_jitters() -> None:
    delays = [triggers.retry_delay(7, n, backoff=10, max_backoff=300) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        base = min(10 * 2 ** (n - 1), 300)
        assert timedelta(seconds=base * 0.8) <= delay <= timedelta(seconds=base * 1.2)
    assert triggers.retry_delay(7, 3, backoff=10, max_backoff=300) == delays[2]  # deterministic


def test_members() -> None:
    assert triggers.members(state()) == [
        ("bot", "other"),
        ("bot", "review"),
        ("human", "other"),
        ("human", "review"),
    ]


def test_unread_dataclass_is_frozen() -> None:
    u = unread()
    assert replace(u, count=3).count == 3
