"""Budget math of a run: estimates, catalog cost, what was charged, what is left, what fits.

Money is float USD. Limits are compared with an absolute tolerance of ``EPSILON`` (1e-9 USD)
so that an estimate exactly equal to what is left fits despite float rounding
(``0.1 + 0.2 > 0.3``). Reaching a limit exactly is not exceeding it. Pure: no I/O; the store
reserves and settles atomically with the same rules.
"""

from __future__ import annotations

from typing import NamedTuple

from controller.core.workflows.model import ModelSpec, RunRecord, Usage

EPSILON = 1e-9
MTOK = 1_000_000
CACHE_READ_FACTOR = 0.1  # cache reads cost 0.1 x the input price unless the catalog says
CACHE_WRITE_FACTOR = 1.25  # cache writes cost 1.25 x the input price unless the catalog says


class Estimate(NamedTuple):
    """The most one attempt of a task is expected to cost: its reservation."""

    usd: float
    tokens: int


def estimate(model: ModelSpec, prompt_tokens: int) -> Estimate:
    """The reservation for one attempt: the prompt at the input price plus a full answer.

    The answer is counted at ``max_output_tokens``, the most the model may write, so a task
    whose estimate fits cannot push the run over its budget by its output alone.
    """
    usd = (
        prompt_tokens * model.input_per_mtok + model.max_output_tokens * model.output_per_mtok
    ) / MTOK
    return Estimate(usd=usd, tokens=prompt_tokens + model.max_output_tokens)


def cost(model: ModelSpec, usage: Usage) -> float:
    """The catalog price of ``usage``, cache reads and writes included.

    A model without cache prices pays 0.1 x its input price for cache reads and 1.25 x for
    cache writes (the usual ratios of the providers that report them).
    """
    read = model.cache_read_per_mtok
    write = model.cache_write_per_mtok
    read = model.input_per_mtok * CACHE_READ_FACTOR if read is None else read
    write = model.input_per_mtok * CACHE_WRITE_FACTOR if write is None else write
    return (
        usage.input_tokens * model.input_per_mtok
        + usage.output_tokens * model.output_per_mtok
        + usage.cache_read_tokens * read
        + usage.cache_write_tokens * write
    ) / MTOK


def charged(model: ModelSpec, usage: Usage) -> float:
    """What ``usage`` counts against the budget: the agent's own cost when it reported one."""
    if usage.reported_cost_usd is not None:
        return usage.reported_cost_usd
    return cost(model, usage)


def remaining(run: RunRecord) -> float | None:
    """USD left for new reservations (never negative), or None without a cost limit."""
    limit = run.snapshot.budget.max_cost_usd
    if limit is None:
        return None
    return max(0.0, limit - run.spent_usd - run.reserved_usd)


def exceeded(run: RunRecord, spent_usd: float, spent_tokens: int) -> bool:
    """Whether actual usage went past either limit (reaching a limit exactly is not past it)."""
    budget = run.snapshot.budget
    over_cost = budget.max_cost_usd is not None and spent_usd > budget.max_cost_usd + EPSILON
    over_tokens = budget.max_tokens is not None and spent_tokens > budget.max_tokens
    return over_cost or over_tokens


def fits(run: RunRecord, estimate_usd: float, estimate_tokens: int) -> bool:
    """Whether spent + reserved + the estimate stays within both limits (None always fits)."""
    budget = run.snapshot.budget
    cost_ok = (
        budget.max_cost_usd is None
        or run.spent_usd + run.reserved_usd + estimate_usd <= budget.max_cost_usd + EPSILON
    )
    tokens_ok = (
        budget.max_tokens is None
        or run.spent_tokens + run.reserved_tokens + estimate_tokens <= budget.max_tokens
    )
    return cost_ok and tokens_ok
