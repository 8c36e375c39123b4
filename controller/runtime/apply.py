"""The apply step: actions serialised per lane, lanes in parallel up to a limit.

One task per lane in an anyio task group, one lock per lane (a task only ever holds its own
lane's lock, so there is no lock ordering to get wrong), actions in plan order. The first
failed or refused action ends its lane's chain: later steps depended on it.

An agent that moves between lanes (its binding's lane changed, or its participant got a binding
in another lane) is stopped in one lane and started in another: its start, and whatever
follows it in its lane, waits for a second round, after every lane's first round is done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import anyio

from controller import errors
from controller.core import actions
from controller.executors import agents, worktrees
from controller.executors.context import Context, Outcome
from controller.executors.worktrees import Handler

OnOutcome = Callable[[Outcome], None]


class LaneLocks:
    """One lock per lane, created on first use."""

    def __init__(self) -> None:
        self._locks: dict[str, anyio.Lock] = {}

    def __call__(self, lane: str) -> anyio.Lock:
        """The lock of ``lane``."""
        return self._locks.setdefault(lane, anyio.Lock())


def registry() -> Mapping[type[actions.ActionBase], Handler]:
    """Every handler, by action type."""
    return {**worktrees.HANDLERS, **agents.HANDLERS}


def chains(
    plan_actions: Iterable[actions.ActionBase],
) -> dict[str, list[actions.ActionBase]]:
    """Actions grouped by lane, plan order kept."""
    grouped: dict[str, list[actions.ActionBase]] = {}
    for action in plan_actions:
        grouped.setdefault(action.lane, []).append(action)
    return grouped


def rounds(
    plan_actions: Iterable[actions.ActionBase],
) -> tuple[dict[str, list[actions.ActionBase]], dict[str, list[actions.ActionBase]]]:
    """Each lane's chain split before its first start that waits for another lane's stops."""
    first: dict[str, list[actions.ActionBase]] = {}
    second: dict[str, list[actions.ActionBase]] = {}
    for lane, chain in chains(plan_actions).items():
        cut = next((i for i, a in enumerate(chain) if _waits(a)), len(chain))
        if chain[:cut]:
            first[lane] = chain[:cut]
        if chain[cut:]:
            second[lane] = chain[cut:]
    return first, second


def _waits(action: actions.ActionBase) -> bool:
    return isinstance(action, actions.StartAgent) and action.moved_from is not None


async def apply(
    plan_actions: Sequence[actions.ActionBase],
    ctx: Context,
    *,
    limit: int,
    locks: LaneLocks,
    on_outcome: OnOutcome | None = None,
) -> list[Outcome]:
    """Execute ``plan_actions``; return every outcome (in completion order)."""
    handlers = registry()
    limiter = anyio.CapacityLimiter(max(1, limit))
    outcomes: list[Outcome] = []
    broken: set[str] = set()  # lanes whose chain ended on a failed or refused action

    async def run_chain(chain: list[actions.ActionBase]) -> None:
        async with limiter, locks(chain[0].lane):
            for action in chain:
                outcome = await _run_one(handlers, action, ctx)
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
                if outcome.status in ("failed", "refused"):
                    broken.add(action.lane)
                    break

    first, second = rounds(plan_actions)
    for round_ in (first, second):
        async with anyio.create_task_group() as group:
            for lane, chain in round_.items():
                if lane not in broken:
                    group.start_soon(run_chain, chain)
    return outcomes


async def _run_one(
    handlers: Mapping[type[actions.ActionBase], Handler], action: actions.ActionBase, ctx: Context
) -> Outcome:
    try:
        outcome: Outcome = await handlers[type(action)](action, ctx)
        return outcome
    except errors.InvalidTransition:
        raise  # a bug, not an outcome
    except (errors.ControllerError, OSError) as exc:
        await _note_failure(ctx, action, str(exc))
        return Outcome(action, "failed", str(exc))
    except Exception as exc:  # an unexpected error fails this action, not the whole pass
        message = f"{type(exc).__name__}: {exc}"
        await _note_failure(ctx, action, message)
        return Outcome(action, "failed", message)


async def _note_failure(ctx: Context, action: actions.ActionBase, message: str) -> None:
    # The failure itself is returned to the caller; recording it is best effort.
    with contextlib.suppress(Exception):
        await ctx.emit("ActionFailed", message, lane=action.lane, action=action.key)
