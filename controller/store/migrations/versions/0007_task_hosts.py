"""Workflow tasks placed on hosts: the host that runs each task of a run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tasks get NULL: dispatched by a single host, or (with `hosts`) by the first
    # declared host, which drove every run before tasks were placed (decision 114).
    op.add_column("run_tasks", sa.Column("host", sa.String(253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_tasks") as batch:
        batch.drop_column("host")
