"""Lane, branch and session names of run tasks: valid, stable, distinct."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from controller.core.workflows import naming
from controller.spec.meta import NAME_PATTERN

NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


def test_short_names_read_naturally() -> None:
    assert naming.lane_name("release-notes-1", "collect") == "release-notes-1--collect"
    assert naming.branch("release-notes-1", "collect") == "runs/release-notes-1/collect"


@given(NAMES, NAMES)
def test_lane_names_are_valid_and_distinct(run: str, task: str) -> None:
    name = naming.lane_name(run, task)
    assert re.fullmatch(NAME_PATTERN, name) and len(name) <= 63
    assert name == naming.lane_name(run, task)
    other = (
        naming.lane_name(run, task + "x") if len(task) < 63 else naming.lane_name(run + "x", task)
    )
    assert other != name


def test_session_ids_are_stable_uuids_per_attempt() -> None:
    a = naming.session_id("ws", "r", "t", 1)
    assert a == naming.session_id("ws", "r", "t", 1)
    assert a != naming.session_id("ws", "r", "t", 2)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a)


def test_run_names_count_up() -> None:
    assert naming.run_name("w", frozenset()) == "w-1"
    assert naming.run_name("w", frozenset({"w-1", "w-2"})) == "w-3"
    assert len(naming.run_name("x" * 63, frozenset())) <= 63
