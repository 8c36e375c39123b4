"""Fields of untrusted JSON read without raising, for the usage parsers: whatever an agent
printed, a token count is a non-negative int and a cost a finite non-negative float or None.
Also the compact JSON form of a ``Usage`` kept in a parser's state. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from controller.core.workflows.model import Usage


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def text(value: object) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None


def count(value: object) -> int:
    """A token count: a non-negative integer; anything else (bools, NaN, strings) is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return max(0, int(value))


def money(value: object) -> float | None:
    """A finite, non-negative amount of USD, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        amount = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return amount if math.isfinite(amount) and amount >= 0 else None


def total(usages: Iterable[Usage]) -> Usage:
    """The sum of ``usages``; a cost that overflowed to infinity is not a cost."""
    result = Usage()
    for usage in usages:
        result += usage
    if result.reported_cost_usd is not None and not math.isfinite(result.reported_cost_usd):
        return replace(result, reported_cost_usd=None)
    return result


def priced(usage: Usage, cost: float | None) -> Usage:
    """``usage`` with the agent's reported cost, unless it reported 0 for tokens it spent.

    Claude Code and OpenCode say 0 for a model missing from their price tables (OpenCode also
    for subscription providers): that is "no price known", so the catalog price applies.
    """
    spent = usage.tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return replace(usage, reported_cost_usd=None if cost == 0 and spent else cost)


def usage_json(usage: Usage) -> list[Any]:
    """A compact JSON form: [input, output, cache read, cache write, cost]."""
    counts = [usage.input_tokens, usage.output_tokens, usage.cache_read_tokens]
    return [*counts, usage.cache_write_tokens, usage.reported_cost_usd]


def usage_load(value: object) -> Usage:
    """The inverse of ``usage_json``, tolerant of anything."""
    items = [*value, None, None, None, None, None] if isinstance(value, list) else [None] * 5
    return Usage(
        input_tokens=count(items[0]),
        output_tokens=count(items[1]),
        cache_read_tokens=count(items[2]),
        cache_write_tokens=count(items[3]),
        reported_cost_usd=money(items[4]),
    )
