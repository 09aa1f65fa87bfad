"""Verifying a citizen once: details checked against the ledger, then an SMS code.

No oracle: whatever the details, the caller gets the same answer and the same shape of
verification; a code is sent only when the details match the number's current holder,
so a wrong name or ID number looks, from outside, exactly like a code that never came.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from tongcha.identity import repository as repo
from tongcha.identity.models import CitizenSession, Verification
from tongcha.kit.db import add_row
from tongcha.kit.digests import Digester
from tongcha.kit.errors import ApiError, InvalidArgument, NotFound, TooManyRequests
from tongcha.kit.idcard import validate_id_number
from tongcha.kit.workdays import local_midnight
from tongcha.ledger import repository as ledger_repo

CODE_TTL = timedelta(minutes=5)
CODE_TRIES = 5
RESEND_AFTER = timedelta(seconds=60)
# Asking: per number from one client, and per client over all numbers. What one client
# does never refuses another, so nobody can lock a holder out by asking about their
# number, and no refusal can tell whether someone else's details matched.
PER_NUMBER_PER_DAY = 10
PER_CLIENT_PER_DAY = 30
# Codes reaching one phone, from all clients: beyond these the hub answers as usual and
# sends nothing, so that a refusal cannot tell whether the details matched.
CODES_PER_NUMBER_PER_DAY = 10
TOKEN_TTL = timedelta(minutes=15)


# ASCII only: str.isdigit() takes other scripts' digits, which no digest would match.
_LAST6 = re.compile(r"[0-9]{5}[0-9Xx]")
_CODE = re.compile(r"[0-9]{6}")


class WrongCode(InvalidArgument):
    """A wrong code; ``tries_left`` says how many remain."""


class Locked(TooManyRequests):
    """Too many wrong codes: this verification is spent."""


@dataclass(frozen=True, slots=True)
class Started:
    verification: Verification
    # The code to send, when the details matched; never stored in the clear.
    code: str | None


def start(
    session: Session,
    digester: Digester,
    *,
    number: int,
    name: str | None,
    id_number: str | None,
    id_last6: str | None,
    client: str,
    now: datetime,
    zone: ZoneInfo,
) -> Started:
    """Open a verification. Bad input is a 400; a flood from one client is a 429; a
    mismatch is silent, and so is a match when the phone has had its codes for now."""
    if id_last6 is not None:
        if name is not None or id_number is not None:
            raise InvalidArgument("send either name and id_number, or id_last6")
        # Full-width digits (as a Chinese input method types them) are the same digits.
        id_last6 = unicodedata.normalize("NFKC", id_last6)
        if _LAST6.fullmatch(id_last6) is None:
            raise InvalidArgument("id_last6 is the last six characters of the ID number")
        method = "tail"
    else:
        if not name or not name.strip() or id_number is None:
            raise InvalidArgument("send name and id_number, or id_last6")
        if len(name) > 100:
            raise InvalidArgument("name is at most 100 characters")
        id_number = validate_id_number(id_number, now.date())
        method = "full"
    client_digest = digester.client(client)
    day_start = local_midnight(now.astimezone(zone).date(), zone)
    recent, resend_after = repo.verifications_of_number(session, number, client_digest, day_start)
    if resend_after is not None and resend_after > now:
        wait = int((resend_after - now).total_seconds()) + 1
        raise TooManyRequests(f"a code was asked for this number just now; ask again in {wait} s")
    if recent >= PER_NUMBER_PER_DAY:
        raise TooManyRequests("too many verifications for this number today; try again tomorrow")
    if repo.verifications_from_client(session, client_digest, day_start) >= PER_CLIENT_PER_DAY:
        raise TooManyRequests("too many verifications from this address today; try again tomorrow")

    tenure = ledger_repo.current_tenure(session, number)
    holder: str | None = None
    if tenure is not None:
        if method == "full":
            assert id_number is not None and name is not None
            matched = tenure.kyc_digest == digester.kyc(id_number, name)
        else:
            assert id_last6 is not None
            matched = tenure.tail_digest == digester.tail(number, id_last6.upper())
        holder = tenure.holder_digest if matched else None
    public_id = f"v_{secrets.token_urlsafe(18)}"
    code = (
        f"{secrets.randbelow(1_000_000):06d}"
        if holder is not None and _may_send(session, number, day_start, now)
        else None
    )
    verification = add_row(
        session,
        Verification(
            public_id=public_id,
            number=number,
            method=method,
            holder_digest=holder,
            code_digest=digester.code(public_id, code) if code is not None else None,
            state="pending",
            tries_left=CODE_TRIES,
            client_digest=client_digest,
            created_at=now,
            expires_at=now + CODE_TTL,
            resend_after=now + RESEND_AFTER,
        ),
    )
    return Started(verification, code)


def _may_send(session: Session, number: int, day_start: datetime, now: datetime) -> bool:
    """Whether another code may go to this phone now: a few a day, one a minute."""
    sent, latest = repo.codes_sent_to_number(session, number, day_start)
    return sent < CODES_PER_NUMBER_PER_DAY and (latest is None or now - latest >= RESEND_AFTER)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def redeem(
    session: Session, digester: Digester, public_id: str, code: str, now: datetime
) -> tuple[str, int] | ApiError:
    """Check a code; returns (access token, seconds it lives).

    A wrong code is returned, not raised, with the count of tries already lowered: the
    caller commits that before refusing, so a retry cannot undo it.
    """
    verification = repo.verification_to_redeem(session, public_id)
    if verification is None:
        raise NotFound("no such verification")
    if verification.state == "locked":
        raise Locked("too many wrong codes; start a new verification", details=[{"reason": "LOCKED"}])
    if verification.state == "verified":
        raise InvalidArgument("this code was used already; start a new verification", details=[{"reason": "USED"}])
    if now >= verification.expires_at:
        raise InvalidArgument("the code has expired; start a new verification", details=[{"reason": "EXPIRED"}])
    # Full-width digits (as a Chinese input method types them) are the same digits.
    code = unicodedata.normalize("NFKC", code).strip()
    if _CODE.fullmatch(code) is None:
        raise InvalidArgument("the code is six digits", details=[{"reason": "FORMAT"}])
    good = verification.code_digest is not None and secrets.compare_digest(
        verification.code_digest, digester.code(public_id, code)
    )
    if not good:
        verification.tries_left -= 1
        if verification.tries_left <= 0:
            verification.state = "locked"
            session.flush()
            return Locked("too many wrong codes; start a new verification", details=[{"reason": "LOCKED"}])
        session.flush()
        return WrongCode(
            f"wrong code; {verification.tries_left} tries left",
            details=[{"reason": "WRONG_CODE", "tries_left": verification.tries_left}],
        )
    assert verification.holder_digest is not None
    verification.state = "verified"
    verification.verified_at = now
    token = f"tc_c_{secrets.token_urlsafe(32)}"
    add_row(
        session,
        CitizenSession(
            token_hash=_token_hash(token),
            holder_digest=verification.holder_digest,
            number=verification.number,
            created_at=now,
            expires_at=now + TOKEN_TTL,
        ),
    )
    return token, int(TOKEN_TTL.total_seconds())


def resolve(session: Session, token: str, now: datetime) -> CitizenSession | None:
    """The live session a token stands for, or None (unknown, expired or revoked)."""
    found = repo.citizen_session_by_token_hash(session, _token_hash(token))
    if found is None or found.revoked_at is not None or now >= found.expires_at:
        return None
    return found


def revoke(session: Session, session_id: int, now: datetime) -> None:
    found = repo.citizen_session(session, session_id)
    if found is not None and found.revoked_at is None:
        found.revoked_at = now
        session.flush()


@dataclass(frozen=True, slots=True)
class HeldNumber:
    number: int
    carrier_id: int
    started_on: date
    ended_on: date | None
    end_reason: str | None
    # What a request may name instead of the number, which the API shows only masked.
    ref: str
    # Which of the number's tenures it is (a holder may have held a number twice).
    seq: int


def numbers_of(session: Session, digester: Digester, holder_digest: str) -> list[HeldNumber]:
    """Every tenure under this holder: numbers held now, and numbers held before."""
    return [
        HeldNumber(
            t.number,
            t.carrier_id,
            t.started_on,
            t.ended_on,
            t.end_reason,
            digester.tenure_ref(holder_digest, t.number, t.seq),
            t.seq,
        )
        for t in ledger_repo.tenures_of(session, holder_digest)
    ]


def tenure_of_ref(session: Session, digester: Digester, holder_digest: str, ref: str) -> HeldNumber:
    """The tenure behind a ``ref`` from this holder's list; another holder's ref is unknown."""
    for held in numbers_of(session, digester, holder_digest):
        if held.ref == ref:
            return held
    raise NotFound("number_ref names none of your numbers; list them again with GET /v1/me/numbers")
