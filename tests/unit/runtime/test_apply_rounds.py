"""The apply step's two rounds: a moved agent starts after every lane's first round."""

from __future__ import annotations

from controller.core import actions as A
from controller.runtime import apply


def test_a_start_that_waits_and_what_follows_it_go_to_the_second_round() -> None:
    stop = A.StopAgent("a", "/r/a", "moved", binding="x", participant="p", pid=5)
    remove = A.RemoveLane("a", "/r/a", "gone", branch="lane/a")
    provision = A.ProvisionLane("b", "/r/b", "new", branch="lane/b")
    moved = A.StartAgent("b", "/r/b", "moved", binding="x", participant="p", moved_from="a")
    other = A.StartAgent("b", "/r/b", "new", binding="y", participant="q")
    first, second = apply.rounds([stop, remove, provision, moved, other])
    assert first == {"a": [stop, remove], "b": [provision]}
    assert second == {"b": [moved, other]}
    assert apply.rounds([provision, other]) == ({"b": [provision, other]}, {})
    assert apply.rounds([moved]) == ({}, {"b": [moved]})
