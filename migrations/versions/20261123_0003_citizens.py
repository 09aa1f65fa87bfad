"""citizens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:27:51.786502
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongcha.kit.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "citizen_sessions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("holder_digest", sa.String(length=64), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_citizen_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_citizen_sessions_token_hash")),
    )
    op.create_table(
        "verifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("holder_digest", sa.String(length=64), nullable=True),
        sa.Column("code_digest", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("tries_left", sa.Integer(), nullable=False),
        sa.Column("client_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("resend_after", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("verified_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verifications")),
        sa.UniqueConstraint("public_id", name=op.f("uq_verifications_public_id")),
    )
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.create_index("ix_verifications_client", ["client_digest", "created_at"], unique=False)
        batch_op.create_index("ix_verifications_number", ["number", "created_at"], unique=False)

    with op.batch_alter_table("platform_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_by", tongcha.kit.db.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("overdue_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=True))

    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("due_by", tongcha.kit.db.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("notify_number", sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f("ix_requests_holder_digest"), ["holder_digest"], unique=False)

    # ### end Alembic commands ###


def downgrade() -> None:

    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requests_holder_digest"))
        batch_op.drop_column("notify_number")
        batch_op.drop_column("due_by")
        batch_op.drop_column("holder_digest")

    with op.batch_alter_table("platform_tasks", schema=None) as batch_op:
        batch_op.drop_column("overdue_at")
        batch_op.drop_column("due_by")

    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index("ix_verifications_number")
        batch_op.drop_index("ix_verifications_client")

    op.drop_table("verifications")
    op.drop_table("citizen_sessions")
    # ### end Alembic commands ###
