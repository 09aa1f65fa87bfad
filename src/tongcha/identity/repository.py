"""Every identity query: verifications and citizen sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tongcha.identity.models import CitizenSession, Verification
from tongcha.kit.db import is_postgres

# ----- verifications ----------------------------------------------------------------


def verifications_of_number(
    session: Session, number: int, client_digest: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many verifications of this number this client opened since then, and the
    latest ``resend_after`` among them."""
    count, resend_after = session.execute(
        select(func.count(), func.max(Verification.resend_after)).where(
            Verification.number == number,
            Verification.created_at >= since,
            Verification.client_digest == client_digest,
        )
    ).one()
    return count, resend_after


def codes_sent_to_number(session: Session, number: int, since: datetime) -> tuple[int, datetime | None]:
    """How many codes went to this number since then, and when the latest went."""
    count, latest = session.execute(
        select(func.count(), func.max(Verification.created_at)).where(
            Verification.number == number,
            Verification.created_at >= since,
            Verification.code_digest.is_not(None),
        )
    ).one()
    return count, latest


def verifications_from_client(session: Session, client_digest: str, since: datetime) -> int:
    """How many verifications this client opened since then."""
    found = session.scalar(
        select(func.count()).where(Verification.client_digest == client_digest, Verification.created_at >= since)
    )
    return found or 0


def verification_to_redeem(session: Session, public_id: str) -> Verification | None:
    """The verification, locked for the rest of the transaction on PostgreSQL."""
    stmt = select(Verification).where(Verification.public_id == public_id)
    if is_postgres(session):
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


# ----- citizen sessions -------------------------------------------------------------


def citizen_session_by_token_hash(session: Session, token_hash: str) -> CitizenSession | None:
    return session.scalars(select(CitizenSession).where(CitizenSession.token_hash == token_hash)).first()


def citizen_session(session: Session, session_id: int) -> CitizenSession | None:
    return session.get(CitizenSession, session_id)
