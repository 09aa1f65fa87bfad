"""Ledger tables. Events are the truth; tenures and number summaries are rebuilt from them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tongcha.kit.db import Base, BigId, UtcDateTime


class Carrier(Base):
    __tablename__ = "carriers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    quarantine_days: Mapped[int] = mapped_column(Integer, default=90)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LedgerRevision(Base):
    """One committed change to the ledger; readers follow the ledger by revision."""

    __tablename__ = "ledger_revisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    carrier_id: Mapped[int] = mapped_column(ForeignKey("carriers.id"))
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)


# The bulk tables below (events, tenures, number summaries, the check log) carry
# carrier and platform ids without foreign keys. Ingest writes only ids it read from
# the carriers table in the same transaction, the check log only the caller's own id,
# and carriers and platforms are never deleted. A foreign key costs PostgreSQL a
# trigger and an index probe per row, which on COPY was a third of the ingest's
# database time (docs/benchmarks.md §1).


class LedgerEvent(Base):
    """An accepted lifecycle event, as the carrier sent it but with identity digested.

    Keyed by what makes an event the same event (API.md: idempotent on the carrier and
    its event id), with no surrogate id: on PostgreSQL a third index per event was a
    fifth of what COPYing the events cost (docs/benchmarks.md §1). ``revision`` and
    ``position`` give the order the ledger accepted its events in.
    """

    __tablename__ = "ledger_events"

    carrier_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    number: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    day: Mapped[date] = mapped_column(Date)
    holder_digest: Mapped[str | None] = mapped_column(String(64))
    kyc_digest: Mapped[str | None] = mapped_column(String(64))
    tail_digest: Mapped[str | None] = mapped_column(String(64))
    to_carrier_id: Mapped[int | None] = mapped_column(BigId)
    revision: Mapped[int] = mapped_column(BigInteger)
    # The event's place among those its revision wrote, from 0.
    position: Mapped[int] = mapped_column(BigInteger)

    # A number's events are only ever looked up by the number, for equality: on
    # PostgreSQL a hash index takes the random numbers for less than a B-tree does.
    __table_args__ = (Index("ix_ledger_events_number", "number", postgresql_using="hash"),)


class LedgerRejection(Base):
    """An event the ledger refused, kept so the operator and the carrier can see why."""

    __tablename__ = "ledger_rejections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    carrier_id: Mapped[int] = mapped_column(ForeignKey("carriers.id"))
    event_id: Mapped[str | None] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(300))
    revision: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_ledger_rejections_carrier_id", "carrier_id", "event_id"),)


class Tenure(Base):
    """One holder of one number, from activation (or transfer in) to cancellation (or transfer out)."""

    __tablename__ = "tenures"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder_digest: Mapped[str] = mapped_column(String(64))
    kyc_digest: Mapped[str] = mapped_column(String(64))
    tail_digest: Mapped[str] = mapped_column(String(64))
    carrier_id: Mapped[int] = mapped_column(BigId)
    started_on: Mapped[date] = mapped_column(Date)
    ended_on: Mapped[date | None] = mapped_column(Date)
    end_reason: Mapped[str | None] = mapped_column(String(16))
    revision: Mapped[int] = mapped_column(BigInteger)

    # Only ever matched for equality; on PostgreSQL a hash index takes the random digests
    # for about a third of a B-tree's cost on COPY (docs/benchmarks.md §1).
    __table_args__ = (Index("ix_tenures_holder_digest", "holder_digest", postgresql_using="hash"),)


class LedgerNumber(Base):
    """What the reassignment check needs of one number, kept in step with its tenures."""

    __tablename__ = "ledger_numbers"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    carrier_id: Mapped[int] = mapped_column(BigId)
    first_known_on: Mapped[date] = mapped_column(Date)
    open_since: Mapped[date | None] = mapped_column(Date)
    last_change_on: Mapped[date] = mapped_column(Date)
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    quarantine_until: Mapped[date | None] = mapped_column(Date)
    revision: Mapped[int] = mapped_column(BigInteger, index=True)


class ReassignmentBatch(Base):
    __tablename__ = "reassignment_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # None when the operator ran the batch from the command line.
    platform_id: Mapped[int | None] = mapped_column(ForeignKey("platforms.id"))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    invalid_rows: Mapped[int] = mapped_column(BigInteger, default=0)


class ReassignmentCheck(Base):
    """The append-only audit trail of every check: who asked, about what, and the answer."""

    __tablename__ = "reassignment_checks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # None when the operator ran the check from the command line.
    platform_id: Mapped[int | None] = mapped_column(BigId)
    number_digest: Mapped[str] = mapped_column(String(64))
    since: Mapped[date] = mapped_column(Date)
    result: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(8))
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    batch_id: Mapped[int | None] = mapped_column(BigId)
    # The request's x-correlator, so a platform's question about a check can be found.
    correlator: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_reassignment_checks_platform_id", "platform_id", "checked_at"),)
