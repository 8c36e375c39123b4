"""The transition table is the specification: every pair of phases is checked."""

from __future__ import annotations

import itertools

import pytest

from controller import errors
from controller.core import phases
from controller.core.phases import Phase as P

EXPECTED_ALLOWED = {
    (P.NEW, P.PROVISIONING),
    (P.NEW, P.CLEANING),
    (P.NEW, P.CLOSED),
    (P.PROVISIONING, P.READY),
    (P.PROVISIONING, P.NEW),
    (P.PROVISIONING, P.BLOCKED),
    (P.PROVISIONING, P.CLEANING),
    (P.READY, P.RUNNING),
    (P.READY, P.SHARED),
    (P.READY, P.BLOCKED),
    (P.READY, P.CLEANING),
    (P.READY, P.PROVISIONING),
    (P.RUNNING, P.READY),
    (P.RUNNING, P.SHARED),
    (P.RUNNING, P.BLOCKED),
    (P.RUNNING, P.CLEANING),
    (P.RUNNING, P.PROVISIONING),
    (P.SHARED, P.READY),
    (P.SHARED, P.RUNNING),
    (P.SHARED, P.BLOCKED),
    (P.SHARED, P.CLEANING),
    (P.SHARED, P.PROVISIONING),
    (P.BLOCKED, P.READY),
    (P.BLOCKED, P.RUNNING),
    (P.BLOCKED, P.SHARED),
    (P.BLOCKED, P.CLEANING),
    (P.BLOCKED, P.PROVISIONING),
    (P.BLOCKED, P.NEW),
    (P.CLEANING, P.CLOSED),
    (P.CLEANING, P.BLOCKED),
    (P.CLEANING, P.READY),
    (P.CLEANING, P.PROVISIONING),
    (P.CLOSED, P.NEW),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(P, P)))
def test_every_pair(current: P, target: P) -> None:
    allowed = current == target or (current, target) in EXPECTED_ALLOWED
    assert phases.can_transition(current, target) is allowed
    if allowed:
        assert phases.transition(current, target) is target
    else:
        with pytest.raises(errors.InvalidTransition, match=f"{current} cannot move to {target}"):
            phases.transition(current, target)


def test_table_covers_every_phase() -> None:
    assert set(phases.ALLOWED) == set(P)


def test_closed_is_reached_only_through_cleaning_or_from_new() -> None:
    sources = {c for c, targets in phases.ALLOWED.items() if P.CLOSED in targets}
    assert sources == {P.NEW, P.CLEANING}
