"""Threads, messages, cursors, trigger jobs and attempts, participant safeguard state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controller.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "thread_heads",
        sa.Column("workspace", sa.String(253), primary_key=True),
        sa.Column("thread", sa.String(63), primary_key=True),
        sa.Column("last_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "messages",
        sa.Column("workspace", sa.String(253), primary_key=True),
        sa.Column("thread", sa.String(63), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("sender", sa.String(63), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "cursors",
        sa.Column("workspace", sa.String(253), primary_key=True),
        sa.Column("thread", sa.String(63), primary_key=True),
        sa.Column("participant", sa.String(63), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("woken", sa.Integer, nullable=False, server_default="0"),
    )
    _jobs()
    _attempts()
    op.create_table(
        "participants",
        sa.Column("workspace", sa.String(253), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("blocked", sa.Text, nullable=True),
        sa.Column("no_progress", sa.Integer, nullable=False, server_default="0"),
        sa.Column("finding", sa.String(64), nullable=True),
        sa.Column("identical", sa.Integer, nullable=False, server_default="0"),
        sa.Column("turn", sa.JSON, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def _jobs() -> None:
    op.create_table(
        "trigger_jobs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("workspace", sa.String(253), nullable=False),
        sa.Column("participant", sa.String(63), nullable=False),
        sa.Column("thread", sa.String(63), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("first_check_at", UTCDateTime, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("resumes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("unread_seq", sa.Integer, nullable=False),
        sa.Column("screen_hash", sa.String(64), nullable=True),
        sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("prev_owner", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_jobs_due", "trigger_jobs", ["workspace", "state", "due_at"])
    op.create_index(
        "ix_jobs_participant", "trigger_jobs", ["workspace", "participant", "state", "due_at"]
    )
    for state in ("queued", "running"):
        where = sa.text(f"state = '{state}'")
        op.create_index(
            f"ux_jobs_{state}",
            "trigger_jobs",
            ["workspace", "participant", "thread"],
            unique=True,
            sqlite_where=where,
            postgresql_where=where,
        )


def _attempts() -> None:
    op.create_table(
        "trigger_attempts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("workspace", sa.String(253), nullable=False),
        sa.Column("job_id", sa.BigInteger, nullable=False),
        sa.Column("participant", sa.String(63), nullable=False),
        sa.Column("thread", sa.String(63), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(48), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_attempts_job", "trigger_attempts", ["job_id"])
    op.create_index(
        "ix_attempts_participant_at", "trigger_attempts", ["workspace", "participant", "at"]
    )
    op.create_index("ix_attempts_thread_at", "trigger_attempts", ["workspace", "thread", "at"])


def downgrade() -> None:
    for name in ("participants", "trigger_attempts", "trigger_jobs", "cursors", "messages"):
        op.drop_table(name)
    op.drop_table("thread_heads")
