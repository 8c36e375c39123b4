"""Budget math: estimates, catalog cost with cache prices, charged cost, what is left and fits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.workflows import budget, model

SONNET = model.ModelSpec("sonnet", 200_000, 8192, 3.0, 15.0)
CACHED = model.ModelSpec(
    "c", 1000, 100, 2.0, 10.0, cache_read_per_mtok=0.5, cache_write_per_mtok=4.0
)
FAST = settings(max_examples=200, database=None, deadline=None)


def run(
    *,
    max_cost: float | None = None,
    max_tokens: int | None = None,
    spent: float = 0.0,
    reserved: float = 0.0,
    spent_tokens: int = 0,
    reserved_tokens: int = 0,
) -> model.RunRecord:
    snapshot = model.RunSnapshot(
        workflow="w",
        template_hash="h",
        tasks=(model.TaskSpec("a", "sonnet", ("true",)),),
        models={"sonnet": SONNET},
        budget=model.BudgetSpec(max_tokens=max_tokens, max_cost_usd=max_cost),
    )
    return model.RunRecord(
        name="r",
        workflow="w",
        snapshot=snapshot,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        spent_usd=spent,
        reserved_usd=reserved,
        spent_tokens=spent_tokens,
        reserved_tokens=reserved_tokens,
    )


def test_an_estimate_is_the_prompt_plus_a_full_answer() -> None:
    est = budget.estimate(SONNET, 10_000)
    assert est.usd == pytest.approx(10_000 * 3.0 / 1e6 + 8192 * 15.0 / 1e6)
    assert est.tokens == 18_192
    usd, tokens = est  # it is also the (usd, tokens) pair of the design
    assert (usd, tokens) == (est.usd, est.tokens)


@pytest.mark.parametrize(
    ("spec", "usage", "expected"),
    [
        (SONNET, model.Usage(1_000_000, 0), 3.0),
        (SONNET, model.Usage(0, 1_000_000), 15.0),
        # Without catalog cache prices: reads at 0.1 x and writes at 1.25 x the input price.
        (SONNET, model.Usage(cache_read_tokens=1_000_000), 0.3),
        (SONNET, model.Usage(cache_write_tokens=1_000_000), 3.75),
        (CACHED, model.Usage(cache_read_tokens=1_000_000), 0.5),
        (CACHED, model.Usage(cache_write_tokens=1_000_000), 4.0),
        (CACHED, model.Usage(1000, 2000, 3000, 4000), (2000 + 20_000 + 1500 + 16_000) / 1e6),
        # The catalog price ignores what the agent reported.
        (SONNET, model.Usage(0, 0, reported_cost_usd=9.0), 0.0),
    ],
)
def test_catalog_cost(spec: model.ModelSpec, usage: model.Usage, expected: float) -> None:
    assert budget.cost(spec, usage) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (model.Usage(1_000_000, 0), 3.0),  # nothing reported: the catalog price
        (model.Usage(1_000_000, 0, reported_cost_usd=1.25), 1.25),  # reported wins
        (model.Usage(1_000_000, 0, reported_cost_usd=0.0), 0.0),  # a reported zero is a cost
    ],
)
def test_charged_prefers_the_reported_cost(usage: model.Usage, expected: float) -> None:
    assert budget.charged(SONNET, usage) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (run(), None),
        (run(max_cost=20.0), 20.0),
        (run(max_cost=20.0, spent=0.5, reserved=0.1), 19.4),
        (run(max_cost=1.0, spent=1.5), 0.0),  # never negative
    ],
)
def test_remaining(record: model.RunRecord, expected: float | None) -> None:
    left = budget.remaining(record)
    assert left == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("record", "usd", "tokens", "expected"),
    [
        (run(), 1e9, 10**12, False),  # no limits: never exceeded
        (run(max_cost=1.0), 1.0, 0, False),  # reaching the limit is not exceeding it
        (run(max_cost=0.3), 0.1 + 0.2, 0, False),  # float rounding is not exceeding
        (run(max_cost=1.0), 1.0001, 0, True),
        (run(max_tokens=100), 0.0, 100, False),
        (run(max_tokens=100), 0.0, 101, True),
        (run(max_cost=1.0, max_tokens=100), 0.5, 101, True),  # either limit
    ],
)
def test_exceeded(record: model.RunRecord, usd: float, tokens: int, expected: bool) -> None:
    assert budget.exceeded(record, usd, tokens) is expected


@pytest.mark.parametrize(
    ("record", "usd", "tokens", "expected"),
    [
        (run(), 1e9, 10**12, True),
        (run(max_cost=20.0, spent=19.0, reserved=0.5), 0.5, 0, True),  # exactly what is left
        (run(max_cost=0.3, spent=0.1), 0.2, 0, True),  # 0.1 + 0.2 > 0.3 in floats
        (run(max_cost=20.0, spent=19.0, reserved=0.5), 0.51, 0, False),
        (run(max_cost=20.0, reserved=20.0), 0.01, 0, False),  # reservations count
        (run(max_tokens=100, spent_tokens=40, reserved_tokens=10), 0.0, 50, True),
        (run(max_tokens=100, spent_tokens=40, reserved_tokens=10), 0.0, 51, False),
        (run(max_cost=5.0, max_tokens=100), 1.0, 101, False),  # both limits must hold
    ],
)
def test_fits(record: model.RunRecord, usd: float, tokens: int, expected: bool) -> None:
    assert budget.fits(record, usd, tokens) is expected


@FAST
@given(
    limit=st.floats(0.01, 1000.0),
    spent=st.floats(0.0, 1.0),
    reserved=st.floats(0.0, 1.0),
)
def test_what_is_left_always_fits(limit: float, spent: float, reserved: float) -> None:
    record = run(max_cost=limit, spent=spent * limit, reserved=reserved * limit * (1 - spent))
    left = budget.remaining(record)
    assert left is not None
    assert budget.fits(record, left, 0)
    assert not budget.fits(record, left + 1e-6, 0)
