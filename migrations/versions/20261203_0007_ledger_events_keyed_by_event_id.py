"""ledger events keyed by carrier and event id, without a surrogate id

An event is the same event when its carrier and event id are (API.md), and the ledger
already kept a unique index on them; the surrogate ``id`` and its own primary key index
only gave the order events were accepted in. That order is now ``revision`` and
``position`` (the event's place among those its revision wrote), and the number index is
a hash index on PostgreSQL. COPYing an import's events took about a quarter less of the
server's time (docs/benchmarks.md §1).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 22:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
    # Events already held keep their order: by id within each revision.
    op.execute(
        "UPDATE ledger_events SET position = placed.position FROM ("
        "SELECT id, row_number() OVER (PARTITION BY revision ORDER BY id) - 1 AS position FROM ledger_events"
        ") AS placed WHERE placed.id = ledger_events.id"
    )
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.alter_column("position", existing_type=sa.BigInteger(), nullable=False)
        batch_op.drop_constraint("uq_ledger_events_carrier_id_event_id", type_="unique")
        batch_op.drop_constraint("pk_ledger_events", type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key("pk_ledger_events", ["carrier_id", "event_id"])
        batch_op.drop_index("ix_ledger_events_number")
        batch_op.create_index("ix_ledger_events_number", ["number"], unique=False, postgresql_using="hash")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("CREATE SEQUENCE ledger_events_id_seq")
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id", _ID, nullable=True))
    op.execute(
        "UPDATE ledger_events SET id = placed.id FROM ("
        "SELECT carrier_id, event_id, row_number() OVER (ORDER BY revision, position) AS id FROM ledger_events"
        ") AS placed WHERE placed.carrier_id = ledger_events.carrier_id AND placed.event_id = ledger_events.event_id"
    )
    if postgres:
        op.execute("SELECT setval('ledger_events_id_seq', (SELECT COALESCE(MAX(id), 0) + 1 FROM ledger_events), false)")
        op.execute("ALTER TABLE ledger_events ALTER COLUMN id SET DEFAULT nextval('ledger_events_id_seq')")
        op.execute("ALTER SEQUENCE ledger_events_id_seq OWNED BY ledger_events.id")
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_events_number")
        batch_op.create_index("ix_ledger_events_number", ["number"], unique=False)
        batch_op.alter_column("id", existing_type=_ID, nullable=False)
        batch_op.drop_constraint("pk_ledger_events", type_="primary")
        batch_op.create_primary_key("pk_ledger_events", ["id"])
        batch_op.create_unique_constraint("uq_ledger_events_carrier_id_event_id", ["carrier_id", "event_id"])
        batch_op.drop_column("position")
