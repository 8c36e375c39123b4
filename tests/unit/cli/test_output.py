"""Plan rendering: hints for what a plan does that people may not mean."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.cli import output
from controller.core import planner
from tests.factories import desired, lane, observed, record, tree

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_a_rename_says_how_to_keep_the_old_branch() -> None:
    seen = observed([tree("a"), tree("c")], records=[record("a"), record("c")])
    the_plan = planner.plan(desired("b", maxDeletionsPerPass=1), seen, {}, NOW)
    assert [a.lane for a in the_plan.pending] == ["c"]  # a removal held back counts too
    hint, held = output.hints(the_plan)
    assert "lane c is removed" in held
    assert "lane a is removed while b is created" in hint and "spec.branch: lane/a" in hint
    assert f"Hint: {hint}" in output.plan_text(the_plan)
    assert output.plan_json(the_plan)["hints"] == [hint, held]


def test_no_hint_without_a_new_branch() -> None:
    seen = observed([tree("a")], records=[record("a")], branches={"main": "c0", "lane/b": "c1"})
    assert output.hints(planner.plan(desired("b"), seen, {}, NOW)) == []  # b reuses its branch
    kept = planner.plan(desired("a", lane("b")), seen, {}, NOW)  # nothing removed
    assert output.hints(kept) == [] and "Hint" not in output.plan_text(kept)
    assert output.plan_json(kept)["hints"] == []
