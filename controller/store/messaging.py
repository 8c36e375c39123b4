"""Threads, messages and cursors: posting (sequence numbers per thread), reading (advancing a
participant's cursor), and counting what each participant has not read yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from controller.core import world
from controller.store import tables
from controller.store.queries import Store, dialect_insert

T = tables


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a thread."""

    thread: str
    seq: int
    sender: str
    body: str
    at: datetime


Unread = world.UnreadCount


def _insert(store: Store, table: sa.Table) -> Any:
    """An INSERT that supports ON CONFLICT on both backends (their dialect constructs)."""
    return dialect_insert(store.engine, table)


def post(store: Store, thread: str, sender: str, body: str, now: datetime) -> int:
    """Append a message; return its sequence number (one transaction: no gaps, no duplicates)."""
    head = _insert(store, T.thread_heads).values(
        workspace=store.workspace, thread=thread, last_seq=1
    )
    head = head.on_conflict_do_update(
        index_elements=["workspace", "thread"],
        set_={"last_seq": T.thread_heads.c.last_seq + 1},
    ).returning(T.thread_heads.c.last_seq)
    with store.engine.begin() as conn:
        seq = int(conn.execute(head).scalar_one())
        conn.execute(
            sa.insert(T.messages).values(
                workspace=store.workspace,
                thread=thread,
                seq=seq,
                sender=sender,
                body=body,
                at=now,
            )
        )
    return seq


def read(store: Store, thread: str, participant: str) -> list[Message]:
    """Messages after the participant's cursor (others' only); the cursor moves to the end."""
    with store.engine.begin() as conn:
        cursor = _cursor(conn, store.workspace, thread, participant)
        rows = (
            conn.execute(
                sa.select(T.messages)
                .where(
                    T.messages.c.workspace == store.workspace,
                    T.messages.c.thread == thread,
                    T.messages.c.seq > cursor,
                )
                .order_by(T.messages.c.seq)
            )
            .mappings()
            .all()
        )
        if rows:
            _set_cursor(conn, store, thread, participant, seq=rows[-1]["seq"])
    return [_message(r) for r in rows if r["sender"] != participant]


def history(store: Store, thread: str, *, limit: int = 50) -> list[Message]:
    """The newest ``limit`` messages of a thread, oldest first."""
    with store.engine.connect() as conn:
        rows = (
            conn.execute(
                sa.select(T.messages)
                .where(T.messages.c.workspace == store.workspace, T.messages.c.thread == thread)
                .order_by(T.messages.c.seq.desc())
                .limit(limit)
            )
            .mappings()
            .all()
        )
    return [_message(r) for r in reversed(rows)]


def heads(store: Store) -> dict[str, int]:
    """Thread name -> newest sequence number, for every thread with messages."""
    h = T.thread_heads
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(h.c.thread, h.c.last_seq).where(h.c.workspace == store.workspace)
        )
        return {str(thread): int(seq) for thread, seq in rows}


def unread(store: Store, pairs: Iterable[tuple[str, str]]) -> list[Unread]:
    """For each (participant, thread): how many messages by others it has not read."""
    wanted = sorted(set(pairs))
    if not wanted:
        return []
    found: list[Unread] = []
    with store.engine.connect() as conn:
        cursors = _cursors(conn, store.workspace)
        for participant, thread in wanted:
            seq, woken = cursors.get((thread, participant), (0, 0))
            row = _unread_row(conn, store.workspace, thread, participant, seq)
            if row is not None:
                found.append(Unread(participant, thread, row[0], row[1], row[2], woken))
    return found


def _unread_row(
    conn: sa.Connection, workspace: str, thread: str, participant: str, after: int
) -> tuple[int, int, str] | None:
    m = T.messages
    where = (
        m.c.workspace == workspace,
        m.c.thread == thread,
        m.c.seq > after,
        m.c.sender != participant,
    )
    count, last = conn.execute(sa.select(sa.func.count(), sa.func.max(m.c.seq)).where(*where)).one()
    if not count:
        return None
    sender = conn.execute(
        sa.select(m.c.sender).where(
            m.c.workspace == workspace, m.c.thread == thread, m.c.seq == last
        )
    ).scalar_one()
    return int(count), int(last), str(sender)


def mark_woken(store: Store, thread: str, participant: str, seq: int) -> None:
    """Remember that a delivered wake covered messages up to ``seq``."""
    with store.engine.begin() as conn:
        cursor = _cursor(conn, store.workspace, thread, participant)
        _set_cursor(conn, store, thread, participant, seq=cursor, woken=seq)


def _cursors(conn: sa.Connection, workspace: str) -> dict[tuple[str, str], tuple[int, int]]:
    c = T.cursors
    rows = conn.execute(
        sa.select(c.c.thread, c.c.participant, c.c.seq, c.c.woken).where(c.c.workspace == workspace)
    )
    return {(t, p): (seq, woken) for t, p, seq, woken in rows}


def _cursor(conn: sa.Connection, workspace: str, thread: str, participant: str) -> int:
    c = T.cursors
    seq = conn.execute(
        sa.select(c.c.seq).where(
            c.c.workspace == workspace, c.c.thread == thread, c.c.participant == participant
        )
    ).scalar()
    return int(seq or 0)


def _set_cursor(
    conn: sa.Connection,
    store: Store,
    thread: str,
    participant: str,
    *,
    seq: int,
    woken: int | None = None,
) -> None:
    values = {
        "workspace": store.workspace,
        "thread": thread,
        "participant": participant,
        "seq": seq,
        "woken": woken or 0,
    }
    update: dict[str, object] = {"seq": seq}
    if woken is not None:
        update["woken"] = woken
    stmt = _insert(store, T.cursors).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace", "thread", "participant"], set_=update
    )
    conn.execute(stmt)


def _message(row: sa.RowMapping) -> Message:
    return Message(row["thread"], row["seq"], row["sender"], row["body"], row["at"])


def posted_since(store: Store, participant: str, seqs: dict[str, int]) -> list[str]:
    """Bodies of messages ``participant`` posted after the given per-thread sequence numbers."""
    m = T.messages
    query = sa.select(m.c.thread, m.c.seq, m.c.body).where(
        m.c.workspace == store.workspace, m.c.sender == participant
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(m.c.at, m.c.seq)).all()
    return [body for thread, seq, body in rows if seq > seqs.get(thread, 0)]


def last_seqs(store: Store) -> dict[str, int]:
    """Newest sequence number of every thread (an alias of ``heads`` for snapshots)."""
    return heads(store)
