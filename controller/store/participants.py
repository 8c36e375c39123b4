"""Per-participant wake state: the auto-block, loop-safeguard counters, and the snapshot its
last delivered turn started from (to tell progress from none at the next wake).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from controller.core.safeguards import loops
from controller.store import queries, tables
from controller.store.queries import Store

P = tables.participants


@dataclass(frozen=True, slots=True)
class State:
    """What the store remembers of one participant."""

    blocked: str | None = None
    loop: loops.LoopState = field(default_factory=loops.LoopState)
    turn: dict[str, Any] | None = None  # {"seqs": {thread: seq}, "worktree": digest}


def get(store: Store, name: str) -> State:
    """The participant's state (a fresh one if nothing is stored)."""
    with store.engine.connect() as conn:
        row = (
            conn.execute(sa.select(P).where(P.c.workspace == store.workspace, P.c.name == name))
            .mappings()
            .first()
        )
    return _state(row) if row is not None else State()


def every(store: Store) -> dict[str, State]:
    """Every stored participant state, by name."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(P).where(P.c.workspace == store.workspace)).mappings()
        return {row["name"]: _state(row) for row in rows}


def put(store: Store, name: str, state: State, now: datetime) -> None:
    """Store the participant's state."""
    values = {
        "workspace": store.workspace,
        "name": name,
        "blocked": state.blocked,
        "no_progress": state.loop.no_progress,
        "finding": state.loop.finding,
        "identical": state.loop.identical,
        "turn": state.turn,
        "updated_at": now,
    }
    stmt = queries.dialect_insert(store.engine, P).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace", "name"],
        set_={k: v for k, v in values.items() if k not in ("workspace", "name")},
    )
    with store.engine.begin() as conn:
        conn.execute(stmt)


def _state(row: sa.RowMapping) -> State:
    loop = loops.LoopState(row["no_progress"], row["finding"], row["identical"])
    return State(blocked=row["blocked"], loop=loop, turn=row["turn"])
