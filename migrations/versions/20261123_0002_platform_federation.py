"""platform federation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:40:40.037061
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongcha.kit.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hub_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("sealed_private", sa.Text(), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("created_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("retired_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hub_keys")),
        sa.UniqueConstraint("kid", name=op.f("uq_hub_keys_kid")),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
        sa.UniqueConstraint("public_id", name=op.f("uq_requests_public_id")),
    )
    op.create_table(
        "seen_tokens",
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("expires_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name=op.f("pk_seen_tokens")),
    )
    with op.batch_alter_table("seen_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_seen_tokens_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "platform_apps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("platform_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["platform_id"], ["platforms.id"], name=op.f("fk_platform_apps_platform_id_platforms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_apps")),
        sa.UniqueConstraint("platform_id", "code", name=op.f("uq_platform_apps_platform_id_code")),
    )
    op.create_table(
        "platform_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("platform_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("jwk", sa.JSON(), nullable=False),
        sa.Column("created_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("retired_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["platform_id"], ["platforms.id"], name=op.f("fk_platform_keys_platform_id_platforms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_keys")),
        sa.UniqueConstraint("platform_id", "kid", name=op.f("uq_platform_keys_platform_id_kid")),
    )
    op.create_table(
        "platform_tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("platform_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("give_up_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("answered_via", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", tongcha.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["platform_id"], ["platforms.id"], name=op.f("fk_platform_tasks_platform_id_platforms")
        ),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name=op.f("fk_platform_tasks_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_tasks")),
        sa.UniqueConstraint("task_id", name=op.f("uq_platform_tasks_task_id")),
    )
    with op.batch_alter_table("platform_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_platform_tasks_due", ["state", "run_after"], unique=False)
        batch_op.create_index("ix_platform_tasks_request", ["request_id"], unique=False)

    with op.batch_alter_table("platforms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_zh", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("account_model", sa.String(length=16), nullable=False, server_default=sa.text("'independent'"))
        )
        batch_op.add_column(sa.Column("base_url", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default=sa.text("'active'"))
        )
        batch_op.add_column(sa.Column("timeout_ms", sa.Integer(), nullable=False, server_default=sa.text("'3000'")))
        batch_op.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=False, server_default=sa.text("'32'")))
        batch_op.add_column(sa.Column("sla_overrides", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))

    # ### end Alembic commands ###


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table("platforms", schema=None) as batch_op:
        batch_op.drop_column("sla_overrides")
        batch_op.drop_column("max_concurrency")
        batch_op.drop_column("timeout_ms")
        batch_op.drop_column("status")
        batch_op.drop_column("base_url")
        batch_op.drop_column("account_model")
        batch_op.drop_column("name_zh")

    with op.batch_alter_table("platform_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_platform_tasks_request")
        batch_op.drop_index("ix_platform_tasks_due")

    op.drop_table("platform_tasks")
    op.drop_table("platform_keys")
    op.drop_table("platform_apps")
    with op.batch_alter_table("seen_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seen_tokens_expires_at"))

    op.drop_table("seen_tokens")
    op.drop_table("requests")
    op.drop_table("hub_keys")
    # ### end Alembic commands ###
