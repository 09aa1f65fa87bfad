"""Bearer credentials for carriers, platforms and the operator: shown once, stored hashed, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from tongcha.kit.db import Base, BigId, UtcDateTime


class PartyKind(StrEnum):
    carrier = "carrier"
    platform = "platform"
    # The authority running the hub; its credentials have party_id 0.
    operator = "operator"


class Credential(Base):
    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    party_kind: Mapped[str] = mapped_column(String(16))
    # Points at carriers or platforms according to party_kind, so no single foreign key.
    party_id: Mapped[int] = mapped_column(BigInteger)
    # sha256 of the secret: the secret has 256 bits of entropy, so a plain hash is enough
    # and lets every request be checked with one indexed lookup.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    __table_args__ = (Index("ix_credentials_party", "party_kind", "party_id"),)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(session: Session, kind: PartyKind, party_id: int, now: datetime) -> str:
    """Create a credential and return its secret; only the hash is kept."""
    secret = f"tc_{kind.value[0]}_{secrets.token_urlsafe(32)}"
    session.add(
        Credential(
            party_kind=kind.value,
            party_id=party_id,
            secret_hash=hash_secret(secret),
            prefix=secret[:10],
            created_at=now,
        )
    )
    session.flush()
    return secret
