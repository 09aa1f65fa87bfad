"""the check log keeps each check's x-correlator

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 17:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reassignment_checks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("correlator", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reassignment_checks", schema=None) as batch_op:
        batch_op.drop_column("correlator")
