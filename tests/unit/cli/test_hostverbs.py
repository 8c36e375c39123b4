"""What `hosts forget --drop-lanes` prints of the records it dropped."""

from __future__ import annotations

from controller.cli.hostverbs import dropped_line
from controller.store.leases import Forgotten


def test_one_lane_and_one_agent_are_singular() -> None:
    line = dropped_line(Forgotten("build-2", ("storefront",), ("storefront-worker",)))
    assert line == (
        "dropped the records of lane storefront and 1 agent: "
        "a host that selects them creates them anew from their branches"
    )


def test_several_lanes_and_no_agent_are_plural() -> None:
    line = dropped_line(Forgotten("build-2", ("a", "b"), ()))
    assert line.startswith("dropped the records of lanes a, b and 0 agents: ")
