"""Named dependencies: the session, the clock, and who is calling."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from tongcha.identity import service as identity_service
from tongcha.kit.credentials import Credential, PartyKind, hash_secret
from tongcha.kit.errors import Unauthenticated
from tongcha.ledger.index import LedgerIndex
from tongcha.ledger.models import Carrier
from tongcha.platforms.models import Platform
from tongcha.requests.service import Citizen
from tongcha.web.state import HubState


async def hub_dep(request: Request) -> HubState:
    return hub(request)


def hub(request: Request) -> HubState:
    state: HubState = request.app.state.hub
    return state


HubDep = Annotated[HubState, Depends(hub_dep)]


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request: committed if the route returns, rolled back if it raises."""
    sessions = hub(request).sessions
    with sessions() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_session)]


async def get_index(request: Request) -> LedgerIndex:
    return await hub(request).fresh_index()


IndexDep = Annotated[LedgerIndex, Depends(get_index)]


@dataclass(frozen=True, slots=True)
class Caller:
    kind: PartyKind
    party_id: int
    code: str


class CredentialCache:
    """Bearer secrets seen recently; a revocation takes effect within ``ttl`` seconds."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._seen: dict[str, tuple[float, Caller | None]] = {}

    def resolve(self, state: HubState, secret: str) -> Caller | None:
        digest = hash_secret(secret)
        now = time.monotonic()
        hit = self._seen.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        with state.sessions() as session:
            caller = _caller_for(session, digest)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[digest] = (now, caller)
        return caller


def _caller_for(session: Session, digest: str) -> Caller | None:
    cred = session.scalars(
        select(Credential).where(Credential.secret_hash == digest, Credential.revoked_at.is_(None))
    ).one_or_none()
    if cred is None:
        return None
    kind = PartyKind(cred.party_kind)
    if kind is PartyKind.operator:
        return Caller(kind, 0, "operator")
    party: Carrier | Platform | None = (
        session.get(Carrier, cred.party_id) if kind is PartyKind.carrier else session.get(Platform, cred.party_id)
    )
    if party is None:
        return None
    return Caller(kind, party.id, party.code)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("send a credential as Authorization: Bearer <secret>")
    return secret.strip()


def _caller(request: Request, kind: PartyKind) -> Caller:
    state = hub(request)
    caller = state.credentials.resolve(state, _bearer(request))
    if caller is None:
        raise Unauthenticated("the credential is unknown or revoked")
    if caller.kind is not kind:
        article = "an" if kind.value[0] in "aeiou" else "a"
        raise Unauthenticated(f"this endpoint needs {article} {kind.value} credential")
    return caller


async def carrier_caller(request: Request) -> Caller:
    return _caller(request, PartyKind.carrier)


async def platform_caller(request: Request) -> Caller:
    return _caller(request, PartyKind.platform)


async def operator_caller(request: Request) -> Caller:
    return _caller(request, PartyKind.operator)


def citizen_caller(request: Request) -> Citizen:
    """The holder a citizen's bearer token stands for; expired, revoked or made-up
    tokens are refused alike. Synchronous, so FastAPI runs its query off the event loop."""
    state = hub(request)
    token = _bearer(request)
    with state.sessions() as session:
        found = identity_service.resolve(session, token, state.clock.now())
    if found is None:
        raise Unauthenticated("the access token is unknown, expired or revoked; verify again")
    return Citizen(found.holder_digest, found.number, found.id)


# Path segments that name something stored. The ids the hub hands out (requests, tasks,
# verifications) are URL-safe tokens and platform codes are letters, digits, - and _, so
# anything else names nothing; a NUL in one would fail the lookup on PostgreSQL (a 500).
PublicIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
KidPath = Annotated[str, Path(pattern=r"^[^\x00]{1,128}$")]

CitizenCaller = Annotated[Citizen, Depends(citizen_caller)]
CarrierCaller = Annotated[Caller, Depends(carrier_caller)]
OperatorCaller = Annotated[Caller, Depends(operator_caller)]
PlatformCaller = Annotated[Caller, Depends(platform_caller)]
