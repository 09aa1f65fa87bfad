"""Verifications and the short-lived citizen sessions they lead to.

Neither table holds a name or an ID number: a verification keeps the holder digest only
when the details matched the ledger, and a code only as a keyed digest.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tongcha.kit.db import Base, BigId, UtcDateTime


class Verification(Base):
    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    number: Mapped[int] = mapped_column(BigInteger)
    # "full" (name + ID number) or "tail" (last six digits of the ID number).
    method: Mapped[str] = mapped_column(String(8))
    # Set only when the details matched the number's current holder.
    holder_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    code_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    # pending | verified | locked
    state: Mapped[str] = mapped_column(String(12))
    tries_left: Mapped[int] = mapped_column(Integer)
    client_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resend_after: Mapped[datetime] = mapped_column(UtcDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    __table_args__ = (
        Index("ix_verifications_number", "number", "created_at"),
        Index("ix_verifications_client", "client_digest", "created_at"),
    )


class CitizenSession(Base):
    """What a bearer token stands for: one holder, for a short while, until revoked."""

    __tablename__ = "citizen_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    holder_digest: Mapped[str] = mapped_column(String(64))
    # The phone the holder verified with: where their results go by SMS.
    number: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
