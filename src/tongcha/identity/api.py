"""Routes: a citizen verifies (details, then an SMS code) and sees their numbers."""

from __future__ import annotations

import logging

from fastapi import APIRouter, BackgroundTasks, Request, Response

from tongcha.identity import service
from tongcha.identity.schemas import CodeIn, NumberOut, TokenOut, VerificationIn, VerificationOut
from tongcha.kit.errors import ApiError, InvalidArgument, NotFound, TooManyRequests, Unauthenticated, responses
from tongcha.kit.phone import e164, parse_mobile
from tongcha.ledger import repository as ledger_repo
from tongcha.notify import templates
from tongcha.notify.sms import SmsGateway
from tongcha.web.deps import CitizenCaller, HubDep, PublicIdPath, SessionDep

router = APIRouter(tags=["citizen"])
log = logging.getLogger("tongcha.identity")


def mask(number: int) -> str:
    text = e164(number)
    return text[:6] + "****" + text[-4:]


@router.post(
    "/v1/verifications",
    status_code=202,
    summary="Start a verification: the code goes by SMS only if the details match",
    responses=responses(InvalidArgument, TooManyRequests),
)
def start_verification(
    body: VerificationIn, request: Request, background: BackgroundTasks, session: SessionDep, hub: HubDep
) -> VerificationOut:
    number = parse_mobile(body.phone)
    client = request.client.host if request.client else "unknown"
    now = hub.clock.now()
    started = service.start(
        session,
        hub.digester,
        number=number,
        name=body.name,
        id_number=body.id_number,
        id_last6=body.id_last6,
        client=client,
        now=now,
        zone=hub.zone,
    )
    session.commit()
    if started.code is not None:
        # After the answer, so that how long it takes says nothing about a match.
        text = templates.verification_code(started.code, minutes=int(service.CODE_TTL.total_seconds() // 60))
        background.add_task(_send, hub.sms, e164(number), text)
    v = started.verification
    expires_in = max(0, int((v.expires_at - now).total_seconds()))
    return VerificationOut(
        verification_id=v.public_id, expires_at=v.expires_at, resend_after=v.resend_after, expires_in=expires_in
    )


def _send(gateway: SmsGateway, to: str, text: str) -> None:
    try:
        gateway.send(to, text)
    except Exception as exc:  # the citizen asks again after resend_after
        log.warning("verification SMS not sent: %s", exc.__class__.__name__)


@router.post(
    "/v1/verifications/{verification_id}/code",
    summary="Trade the SMS code for a short-lived access token",
    responses=responses(InvalidArgument, NotFound, TooManyRequests),
)
def redeem_code(verification_id: PublicIdPath, body: CodeIn, session: SessionDep, hub: HubDep) -> TokenOut:
    result = service.redeem(session, hub.digester, verification_id, body.code, hub.clock.now())
    session.commit()  # a wrong try counts even though the answer is an error
    if isinstance(result, ApiError):
        raise result
    token, ttl = result
    return TokenOut(access_token=token, expires_in=ttl)


@router.delete(
    "/v1/me/session", status_code=204, summary="Revoke this access token", responses=responses(Unauthenticated)
)
def revoke_session(citizen: CitizenCaller, session: SessionDep, hub: HubDep) -> Response:
    service.revoke(session, citizen.session_id, hub.clock.now())
    return Response(status_code=204)


@router.get(
    "/v1/me/numbers",
    summary="Every number under my ID: held now, and held before",
    responses=responses(Unauthenticated),
)
def my_numbers(citizen: CitizenCaller, session: SessionDep, hub: HubDep) -> list[NumberOut]:
    carriers = {c.id: c.code for c in ledger_repo.carriers(session)}
    return [
        NumberOut(
            number=mask(held.number),
            carrier=carriers.get(held.carrier_id, "?"),
            started_on=held.started_on,
            ended_on=held.ended_on,
            current=held.ended_on is None,
            ref=held.ref,
        )
        for held in service.numbers_of(session, hub.digester, citizen.holder_digest)
    ]
