"""Run values survive the store: a snapshot round-trips through JSON; usage adds up."""

from __future__ import annotations

import json

from controller.core.workflows import model


def snapshot() -> model.RunSnapshot:
    return model.RunSnapshot(
        workflow="release-notes",
        template_hash="abc",
        tasks=(
            model.TaskSpec("collect", "sonnet", ("claude", "-p", "{prompt}"), prompt="List"),
            model.TaskSpec(
                "write",
                "sonnet",
                ("claude",),
                depends_on=("collect",),
                outputs=("NOTES.md",),
                usage=model.UsageFormat.CLAUDE_STREAM,
                timeout=60.0,
                retry_limit=2,
                env=(("A", "1"),),
            ),
        ),
        models={"sonnet": model.ModelSpec("sonnet", 200_000, 8192, 3.0, 15.0, aliases=("s",))},
        max_parallel=2,
        active_deadline=7200.0,
        budget=model.BudgetSpec(max_tokens=1000, max_cost_usd=2.5),
    )


def test_a_snapshot_round_trips_through_json() -> None:
    original = snapshot()
    text = json.dumps(original.to_json())
    assert model.RunSnapshot.from_json(json.loads(text)) == original


def test_usage_adds_up_and_keeps_unknown_reported_cost_unknown() -> None:
    a = model.Usage(10, 5, 1, 2)
    b = model.Usage(1, 1, reported_cost_usd=0.5)
    assert (a + a).reported_cost_usd is None
    assert (a + b) == model.Usage(11, 6, 1, 2, 0.5)
    assert (a + b).tokens == 17
    assert model.Usage.from_json((a + b).to_json()) == a + b


def test_a_task_is_found_by_name() -> None:
    assert snapshot().task("write").depends_on == ("collect",)
