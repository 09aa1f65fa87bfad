"""Registering carriers and platforms and managing their credentials."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tongcha.kit import credentials
from tongcha.kit.credentials import Credential, PartyKind
from tongcha.kit.db import add_row, find_by_code
from tongcha.kit.errors import Conflict, InvalidArgument, NotFound
from tongcha.ledger.models import Carrier
from tongcha.platforms import service as platforms_service
from tongcha.platforms.models import Platform
from tongcha.platforms.service import check_party_code


def add_carrier(session: Session, code: str, name: str, quarantine_days: int, now: datetime) -> str:
    check_party_code(code, "carrier")
    if quarantine_days < 0 or quarantine_days > 3650:
        raise InvalidArgument("quarantine_days must be between 0 and 3650")
    # The same code, or one registered before codes were capitals only that reads the same.
    same = session.scalars(select(Carrier.code).where(func.upper(Carrier.code) == code)).first()
    if same is not None:
        raise Conflict(f"a carrier with code {same!r} exists already")
    carrier = add_row(session, Carrier(code=code, name=name, quarantine_days=quarantine_days, created_at=now))
    return credentials.issue(session, PartyKind.carrier, carrier.id, now)


def add_platform(session: Session, code: str, name: str, now: datetime) -> str:
    """A platform that asks checks; the registry's ``add`` holds the rest of its details."""
    return platforms_service.add(session, platforms_service.PlatformSpec(code, name), now)[1]


def _party(session: Session, kind: str, code: str) -> Carrier | Platform:
    party: Carrier | Platform | None
    if kind == "carrier":
        party = find_by_code(session, Carrier, code)
    else:
        party = find_by_code(session, Platform, code)
    if party is None:
        raise NotFound(f"no {kind} with code {code!r}")
    return party


def issue_credential(session: Session, kind: str, code: str, now: datetime) -> str:
    party = _party(session, kind, code)
    return credentials.issue(session, PartyKind(kind), party.id, now)


def revoke_credentials(session: Session, kind: str, code: str, prefix: str | None, now: datetime) -> int:
    party = _party(session, kind, code)
    creds = session.scalars(
        select(Credential).where(
            Credential.party_kind == kind, Credential.party_id == party.id, Credential.revoked_at.is_(None)
        )
    ).all()
    count = 0
    for cred in creds:
        if prefix is None or cred.prefix.startswith(prefix) or prefix.startswith(cred.prefix):
            cred.revoked_at = now
            count += 1
    session.flush()
    return count


def list_parties(session: Session, kind: str) -> list[tuple[str, str, list[str]]]:
    out = []
    everyone: list[Carrier] | list[Platform] = (
        list(session.scalars(select(Carrier).order_by(Carrier.code)))
        if kind == "carrier"
        else list(session.scalars(select(Platform).order_by(Platform.code)))
    )
    for party in everyone:
        live = session.scalars(
            select(Credential.prefix).where(
                Credential.party_kind == kind, Credential.party_id == party.id, Credential.revoked_at.is_(None)
            )
        ).all()
        out.append((party.code, party.name, list(live)))
    return out
