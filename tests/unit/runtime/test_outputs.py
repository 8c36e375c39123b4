"""Which output `controller logs` shows: choosing the lane's participant and its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core import world
from controller.runtime import outputs

LOG = Path("/ws/.lanes/logs/b/worker.log")


def agent(lane: str, participant: str, **fields: object) -> world.AgentRecord:
    return world.AgentRecord(
        binding=f"{lane}-{participant}",
        lane=lane,
        participant=participant,
        runtime=str(fields.pop("runtime", "tmux")),
        state=world.AgentState.RUNNING,
        spec_hash="h",
        **fields,  # type: ignore[arg-type]
    )


KNOWN = outputs.Known(
    agents=(
        agent("a", "one", pane_id="%3"),
        agent("b", "worker", runtime="process", log_path=str(LOG)),
        agent("s", "gone", pane_id=None),
    ),
    bindings={"c": frozenset({"x", "y"}), "n": frozenset({"later"})},
    logs={"t": {"t": (Path("/ws/t.log"), Path("/ws/t.err"))}},
    lanes=frozenset({"empty", "a"}),
)


@pytest.mark.parametrize(
    ("lane", "participant", "source"),
    [
        ("a", None, outputs.Source("a", "one", outputs.Kind.PANE, pane_id="%3")),
        ("b", "worker", outputs.Source("b", "worker", outputs.Kind.FILES, files=(LOG,))),
        (
            "t",
            None,
            outputs.Source(
                "t", "t", outputs.Kind.FILES, files=(Path("/ws/t.log"), Path("/ws/t.err"))
            ),
        ),
    ],
)
def test_find(lane: str, participant: str | None, source: outputs.Source) -> None:
    assert outputs.find(lane, participant, known=KNOWN) == source


@pytest.mark.parametrize(
    ("lane", "participant", "message"),
    [
        ("nope", None, "unknown lane nope (lanes: a, b, c, empty, n, s, t)"),
        ("c", None, "lane c has 2 participants (x, y); name one: controller logs c PARTICIPANT"),
        ("c", "z", "z has no agent in lane c (participants: x, y)"),
        ("empty", None, "lane empty has no agent"),
        ("n", None, "later in lane n has not started yet"),
        ("s", None, "gone's pane in lane s was closed when its agent stopped"),
    ],
)
def test_find_says_why_there_is_nothing_to_show(
    lane: str, participant: str | None, message: str
) -> None:
    with pytest.raises(outputs.NoOutput, match=message.replace("(", r"\(").replace(")", r"\)")):
        outputs.find(lane, participant, known=KNOWN)
