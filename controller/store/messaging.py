"""Threads, messages and cursors: posting (sequence numbers per thread), reading (advancing a
participant's cursor), and counting what each participant has not read yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from controller.core import world
from controller.store import notifications, queries, tables
from controller.store.queries import Store

M = tables.messages
H = tables.thread_heads
C = tables.cursors


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a thread."""

    thread: str
    seq: int
    sender: str
    body: str
    at: datetime


Unread = world.UnreadCount


def post(store: Store, thread: str, sender: str, body: str, now: datetime) -> int:
    """Append a message; return its sequence number (one transaction: no gaps, no duplicates).

    On PostgreSQL the same transaction notifies the daemons listening (``notifications``).
    """
    head = queries.dialect_insert(store.engine, H).values(
        workspace=store.workspace, thread=thread, last_seq=1
    )
    head = head.on_conflict_do_update(
        index_elements=["workspace", "thread"],
        set_={"last_seq": H.c.last_seq + 1},
    ).returning(H.c.last_seq)
    with store.engine.begin() as conn:
        seq = int(conn.execute(head).scalar_one())
        conn.execute(
            sa.insert(M).values(
                workspace=store.workspace,
                thread=thread,
                seq=seq,
                sender=sender,
                body=body,
                at=now,
            )
        )
        notifications.send(conn, store.workspace, thread, seq)
    return seq


def read(store: Store, thread: str, participant: str) -> list[Message]:
    """Messages after the participant's cursor (others' only); the cursor moves to the end."""
    with store.engine.begin() as conn:
        cursor = _cursor(conn, store.workspace, thread, participant)
        rows = (
            conn.execute(
                sa.select(M)
                .where(
                    M.c.workspace == store.workspace,
                    M.c.thread == thread,
                    M.c.seq > cursor,
                )
                .order_by(M.c.seq)
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
                sa.select(M)
                .where(M.c.workspace == store.workspace, M.c.thread == thread)
                .order_by(M.c.seq.desc())
                .limit(limit)
            )
            .mappings()
            .all()
        )
    return [_message(r) for r in reversed(rows)]


def heads(store: Store) -> dict[str, int]:
    """Thread name -> newest sequence number, for every thread with messages."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(H.c.thread, H.c.last_seq).where(H.c.workspace == store.workspace)
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
                count, last, sender, at = row
                found.append(Unread(participant, thread, count, last, sender, woken, at))
    return found


def _unread_row(
    conn: sa.Connection, workspace: str, thread: str, participant: str, after: int
) -> tuple[int, int, str, datetime] | None:
    where = (
        M.c.workspace == workspace,
        M.c.thread == thread,
        M.c.seq > after,
        M.c.sender != participant,
    )
    count, last = conn.execute(sa.select(sa.func.count(), sa.func.max(M.c.seq)).where(*where)).one()
    if not count:
        return None
    sender, at = conn.execute(
        sa.select(M.c.sender, M.c.at).where(
            M.c.workspace == workspace, M.c.thread == thread, M.c.seq == last
        )
    ).one()
    return int(count), int(last), str(sender), at


def mark_woken(store: Store, thread: str, participant: str, seq: int) -> None:
    """Remember that a delivered wake covered messages up to ``seq``."""
    with store.engine.begin() as conn:
        cursor = _cursor(conn, store.workspace, thread, participant)
        _set_cursor(conn, store, thread, participant, seq=cursor, woken=seq)


def _cursors(conn: sa.Connection, workspace: str) -> dict[tuple[str, str], tuple[int, int]]:
    rows = conn.execute(
        sa.select(C.c.thread, C.c.participant, C.c.seq, C.c.woken).where(C.c.workspace == workspace)
    )
    return {(t, p): (seq, woken) for t, p, seq, woken in rows}


def _cursor(conn: sa.Connection, workspace: str, thread: str, participant: str) -> int:
    seq = conn.execute(
        sa.select(C.c.seq).where(
            C.c.workspace == workspace, C.c.thread == thread, C.c.participant == participant
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
    stmt = queries.dialect_insert(store.engine, C).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace", "thread", "participant"], set_=update
    )
    conn.execute(stmt)


def _message(row: sa.RowMapping) -> Message:
    return Message(row["thread"], row["seq"], row["sender"], row["body"], row["at"])


def posted_since(store: Store, participant: str, seqs: dict[str, int]) -> list[str]:
    """Bodies of messages ``participant`` posted after the given per-thread sequence numbers."""
    query = sa.select(M.c.thread, M.c.seq, M.c.body).where(
        M.c.workspace == store.workspace, M.c.sender == participant
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(M.c.at, M.c.seq)).all()
    return [body for thread, seq, body in rows if seq > seqs.get(thread, 0)]


def last_seqs(store: Store) -> dict[str, int]:
    """Newest sequence number of every thread (an alias of ``heads`` for snapshots)."""
    return heads(store)
