"""Many hosts: host leases, and the host that owns each lane and agent record.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controller.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing records get NULL: written by a single host, they belong to whichever host owns
    # their lane (without `hosts`, to the one host there is).
    op.add_column("lanes", sa.Column("host", sa.String(253), nullable=True))
    op.add_column("agents", sa.Column("host", sa.String(253), nullable=True))
    op.create_table(
        "hosts",
        sa.Column("workspace", sa.String(253), primary_key=True),
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("machine", sa.String(253), nullable=False),
        sa.Column("repo", sa.Text, nullable=False, server_default=""),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("renewed_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("released_at", UTCDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("hosts")
    for table in ("agents", "lanes"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("host")
