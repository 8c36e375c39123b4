"""Workflow runs: runs, their tasks, attempts with budget reservations, usage records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controller.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
WS = sa.String(253)
NAME = sa.String(63)


def upgrade() -> None:
    _runs()
    _tasks()
    _attempts()
    _usage()


def _runs() -> None:
    op.create_table(
        "runs",
        sa.Column("workspace", WS, primary_key=True),
        sa.Column("name", NAME, primary_key=True),
        sa.Column("workflow", NAME, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False, server_default=""),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("template_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("max_cost_usd", sa.Float, nullable=True),
        sa.Column("max_tokens", sa.BigInteger, nullable=True),
        sa.Column("spent_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("spent_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reserved_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("abort_reason", sa.Text, nullable=True),
        sa.Column("refused", sa.Text, nullable=True),
        sa.Column("cleaned", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def _tasks() -> None:
    op.create_table(
        "run_tasks",
        sa.Column("workspace", WS, primary_key=True),
        sa.Column("run", NAME, primary_key=True),
        sa.Column("task", NAME, primary_key=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("due_at", UTCDateTime, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("lane", NAME, nullable=False),
        sa.Column("branch", sa.Text, nullable=False),
        sa.Column("base_commit", sa.String(64), nullable=True),
        sa.Column("head_commit", sa.String(64), nullable=True),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("final_message", sa.Text, nullable=True),
        sa.Column("command", sa.JSON, nullable=True),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("usage", sa.JSON, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("reserved_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("estimate_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("estimate_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("log_offset", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("progress", sa.JSON, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_run_tasks_lane", "run_tasks", ["workspace", "lane"], unique=True)


def _attempts() -> None:
    op.create_table(
        "task_attempts",
        sa.Column("workspace", WS, primary_key=True),
        sa.Column("run", NAME, primary_key=True),
        sa.Column("task", NAME, primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("estimate_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("estimate_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reservation", sa.String(16), nullable=False),
        sa.Column("usage", sa.JSON, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
    )


def _usage() -> None:
    op.create_table(
        "usage_records",
        sa.Column("id", ID, primary_key=True),
        sa.Column("workspace", WS, nullable=False),
        sa.Column("run", NAME, nullable=False),
        sa.Column("task", NAME, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("catalog_cost_usd", sa.Float, nullable=False),
        sa.Column("reported_cost_usd", sa.Float, nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_usage_run", "usage_records", ["workspace", "run", "task"])


def downgrade() -> None:
    for table in ("usage_records", "task_attempts", "run_tasks", "runs"):
        op.drop_table(table)
