"""Agent lifecycle rules: liveness, restart backoff, crash loops, staleness (time passed in)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core import lifecycle, world
from controller.core.lifecycle import Life
from tests.factories import agent, binding, observed, pane, proc

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
S = world.AgentState


@pytest.mark.parametrize(
    ("consecutive", "seconds"),
    [(0, 0), (1, 0), (2, 10), (3, 20), (4, 40), (5, 80), (6, 160), (7, 300), (40, 300)],
)
def test_restart_delay(consecutive: int, seconds: int) -> None:
    assert lifecycle.restart_delay(consecutive) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("policy", "status", "restarts"),
    [
        ("always", 0, True),
        ("always", 1, True),
        ("always", None, True),
        ("on-failure", 0, False),
        ("on-failure", 1, True),
        ("on-failure", None, True),
        ("never", 1, False),
        ("never", None, False),
    ],
)
def test_policy(policy: str, status: int | None, restarts: bool) -> None:
    b = binding("x", restart=policy)
    decision = lifecycle.after_death(agent(b), b, exit_code=status, now=NOW)
    assert (decision.next_start_at is not None) is restarts
    assert decision.last_exit == status
    assert decision.deaths == (NOW,)


def test_first_restart_is_immediate_then_backs_off() -> None:
    b = binding("x")
    record = agent(b, started_at=NOW - timedelta(seconds=5))
    first = lifecycle.after_death(record, b, exit_code=1, now=NOW)
    assert first.next_start_at == NOW and first.consecutive == 1
    record = replace(record, consecutive=first.consecutive, deaths=first.deaths)
    second = lifecycle.after_death(record, b, exit_code=1, now=NOW + timedelta(seconds=1))
    assert second.next_start_at == NOW + timedelta(seconds=11)
    assert second.consecutive == 2


def test_ten_minutes_up_resets_backoff() -> None:
    b = binding("x")
    record = agent(b, consecutive=6, started_at=NOW - timedelta(minutes=10))
    decision = lifecycle.after_death(record, b, exit_code=1, now=NOW)
    assert decision.consecutive == 1
    assert decision.next_start_at == NOW


def test_crash_loop_blocks() -> None:
    b = binding("x", crashLoop={"deaths": 3, "within": "1m"})
    old = NOW - timedelta(minutes=5)  # outside the window: does not count
    record = agent(b, deaths=(old, NOW - timedelta(seconds=30), NOW - timedelta(seconds=10)))
    decision = lifecycle.after_death(record, b, exit_code=1, now=NOW)
    assert decision.state == S.BLOCKED
    assert decision.next_start_at is None
    assert decision.blocked is not None and "controller unblock x" in decision.blocked
    fewer = replace(record, deaths=(old, NOW - timedelta(seconds=30)))
    assert lifecycle.after_death(fewer, b, exit_code=1, now=NOW).state == S.EXITED


def test_removed_binding_is_never_restarted() -> None:
    record = agent(binding("x"))
    assert lifecycle.after_death(record, None, exit_code=1, now=NOW).next_start_at is None


def test_death_history_is_bounded() -> None:
    b = binding("x", crashLoop={"deaths": 1000, "within": "1d"})
    record = agent(b, deaths=tuple(NOW - timedelta(seconds=i) for i in range(80, 0, -1)))
    assert len(lifecycle.after_death(record, b, exit_code=1, now=NOW).deaths) == 50


def test_liveness_tmux() -> None:
    b = binding("x")
    r = agent(b)
    alive = observed()
    cases = [
        (replace(alive, panes=(pane(r),), processes=proc(r)), Life.ALIVE, None),
        (replace(alive, panes=(pane(r, dead=True, dead_status=3),), processes={}), Life.DEAD, 3),
        (replace(alive, panes=(pane(r, dead=True),), processes={}), Life.SETTLING, None),
        (replace(alive, panes=(), processes=proc(r)), Life.ORPHANED, None),  # other server
        (replace(alive, panes=(pane(r, dead=True),), processes=proc(r)), Life.ALIVE, None),
        (replace(alive, panes=(), processes={}), Life.DEAD, None),
        (replace(alive, panes=(pane(r, pid=999),), processes=proc(r)), Life.ORPHANED, None),
        (replace(alive, panes=(pane(r),), processes={}), Life.SETTLING, None),
        (replace(alive, panes=world.Unknown("hung"), processes=proc(r)), Life.UNKNOWN, None),
        (replace(alive, panes=(pane(r),), processes=world.Unknown("x")), Life.UNKNOWN, None),
    ]
    for seen, life, status in cases:
        got = lifecycle.liveness(r, seen)
        assert (got.life, got.exit_code) == (life, status)


def test_liveness_process_checks_create_time() -> None:
    b = binding("x", runtime="process")
    r = agent(b)
    reused = {100: world.Proc(100, 5555.0)}
    assert lifecycle.liveness(r, replace(observed(), processes=proc(r))).life == Life.ALIVE
    dead = lifecycle.liveness(r, replace(observed(), processes=reused, exits={"x": 7}))
    assert (dead.life, dead.exit_code) == (Life.DEAD, 7)
    zombie = {100: world.Proc(100, 1000.0, zombie=True)}
    assert lifecycle.liveness(r, replace(observed(), processes=zombie)).life == Life.DEAD


@pytest.mark.parametrize(
    ("source", "activity", "explicit", "stale"),
    [
        ("activity", 29, None, False),
        ("activity", 31, None, True),
        ("explicit", 1, 31, True),  # window activity does not count for explicit heartbeats
        ("explicit", 31, 5, False),
    ],
)
def test_staleness(source: str, activity: int, explicit: int | None, stale: bool) -> None:
    b = binding("x", heartbeat={"source": source, "staleAfter": "30s"})
    beat = NOW - timedelta(seconds=explicit) if explicit is not None else None
    r = agent(b, started_at=NOW - timedelta(hours=1), heartbeat_at=beat)
    seen = replace(observed(), panes=(pane(r, activity=NOW - timedelta(seconds=activity)),))
    assert lifecycle.is_stale(r, b, seen, NOW) is stale


def test_no_heartbeat_setting_is_never_stale() -> None:
    b = binding("x")
    r = agent(b, started_at=NOW - timedelta(days=3))
    assert not lifecycle.is_stale(r, b, replace(observed(), panes=(pane(r),)), NOW)


def test_spec_hash_changes_with_command_and_env_only() -> None:
    a = lifecycle.spec_hash(binding("x", command=["a"]))
    assert a == lifecycle.spec_hash(binding("x", command=["a"], stopGraceSeconds=3))
    assert a != lifecycle.spec_hash(binding("x", command=["b"]))
    assert a != lifecycle.spec_hash(binding("x", command=["a"], env={"K": "v"}))


BASE: dict[str, Any] = {"command": ["agent"], "env": {"API_KEY": "k1", "MODE": "dev"}}


@pytest.mark.parametrize(
    ("after", "named"),
    [
        ({}, []),
        ({"command": ["agent", "--new"]}, ["command"]),
        ({"env": {"API_KEY": "k2", "MODE": "dev"}}, ["env (API_KEY)"]),
        ({"env": {"API_KEY": "k1"}}, ["env (MODE)"]),  # a variable removed
        ({"env": {"API_KEY": "k1", "MODE": "dev", "NEW": "1"}}, ["env (NEW)"]),  # added
        (
            {"command": ["b"], "env": {"API_KEY": "k2", "MODE": "x"}},
            ["command", "env (API_KEY, MODE)"],
        ),
        ({"runtime": "process"}, ["runtime"]),
        ({"participant": "someone"}, ["participant"]),
        ({"stopGraceSeconds": 3, "restart": "always"}, []),  # not what the process is made from
    ],
)
def test_changed_fields_names_fields_and_env_keys(after: dict[str, Any], named: list[str]) -> None:
    before = dict(lifecycle.spec_fields(binding("x", **BASE)))
    now = dict(lifecycle.spec_fields(binding("x", **{**BASE, **after})))
    changes = lifecycle.changed_fields(before, now) if before != now else ()
    assert [str(c) for c in changes] == named


def test_a_record_without_digests_says_the_binding_changed() -> None:
    now = dict(lifecycle.spec_fields(binding("x", **BASE)))
    assert lifecycle.changed_fields({}, now) == (lifecycle.FieldChange("binding"),)


def test_digests_never_hold_env_values() -> None:
    fields = lifecycle.spec_fields(binding("x", command=["a"], env={"TOKEN": "hunter2"}))
    assert "hunter2" not in str(fields)
    assert [name for name, _ in fields] == [
        "command",
        "env.TOKEN",
        "lane",
        "participant",
        "runtime",
    ]
