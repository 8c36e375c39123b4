"""Agents: a digest per field of the spec each agent was started from, so that a restart for
a changed binding names the fields (``command``, ``env (API_KEY)``), never the values.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing records get {}: their restarts say "binding changed" until they are restarted.
    op.add_column(
        "agents", sa.Column("spec_fields", sa.JSON, nullable=False, server_default="{}")
    )


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("spec_fields")
