"""Agents: the inventory of processes and panes started for bindings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controller.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("workspace", sa.String(253), primary_key=True),
        sa.Column("binding", sa.String(63), primary_key=True),
        sa.Column("lane", sa.String(63), nullable=False),
        sa.Column("participant", sa.String(63), nullable=False),
        sa.Column("runtime", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("pid_created", sa.Float, nullable=True),
        sa.Column("session_id", sa.String(32), nullable=True),
        sa.Column("window_id", sa.String(32), nullable=True),
        sa.Column("pane_id", sa.String(32), nullable=True),
        sa.Column("log_path", sa.Text, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("restarts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("consecutive", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deaths", sa.JSON, nullable=False),
        sa.Column("last_exit", sa.Integer, nullable=True),
        sa.Column("next_start_at", UTCDateTime, nullable=True),
        sa.Column("blocked", sa.Text, nullable=True),
        sa.Column("heartbeat_at", UTCDateTime, nullable=True),
        sa.Column("stop_grace", sa.Float, nullable=False, server_default="10"),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agents")
