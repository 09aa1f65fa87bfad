"""bulk tables without foreign keys

The ledger's events, tenures and number summaries and the check log keep carrier and
platform ids without foreign keys: a per-row trigger on COPY cost a third of the
ingest's database time (see the note in tongcha.ledger.models).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 14:23:33.694151
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_ledger_events_to_carrier_id_carriers"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_ledger_events_carrier_id_carriers"), type_="foreignkey")

    with op.batch_alter_table("ledger_numbers", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_ledger_numbers_carrier_id_carriers"), type_="foreignkey")

    with op.batch_alter_table("reassignment_checks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_reassignment_checks_platform_id_platforms"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_reassignment_checks_batch_id_reassignment_batches"), type_="foreignkey")

    with op.batch_alter_table("tenures", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tenures_carrier_id_carriers"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("tenures", schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f("fk_tenures_carrier_id_carriers"), "carriers", ["carrier_id"], ["id"])

    with op.batch_alter_table("reassignment_checks", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_reassignment_checks_batch_id_reassignment_batches"),
            "reassignment_batches",
            ["batch_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_reassignment_checks_platform_id_platforms"), "platforms", ["platform_id"], ["id"]
        )

    with op.batch_alter_table("ledger_numbers", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_ledger_numbers_carrier_id_carriers"), "carriers", ["carrier_id"], ["id"]
        )

    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_ledger_events_carrier_id_carriers"), "carriers", ["carrier_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_ledger_events_to_carrier_id_carriers"), "carriers", ["to_carrier_id"], ["id"]
        )
