"""Initial schema: lanes (the inventory), lane memory, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controller.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lanes",
        sa.Column("workspace", sa.String(253), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("branch", sa.Text, nullable=False),
        sa.Column("on_dirty", sa.String(16), nullable=False, server_default="preserve"),
        sa.Column("created_branch", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("adopted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("conditions", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "lane_memory",
        sa.Column("workspace", sa.String(253), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_applied", sa.JSON, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("workspace", sa.String(253), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        sa.Column("lane", sa.String(63), nullable=True),
        sa.Column("participant", sa.String(63), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_workspace_id", "events", ["workspace", "id"])
    op.create_index("ix_events_workspace_lane_id", "events", ["workspace", "lane", "id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("lane_memory")
    op.drop_table("lanes")
