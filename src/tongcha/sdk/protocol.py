"""The hub ↔ platform protocol: operation bodies, answers, and request signatures.

Both ends import this module: the hub to sign its calls and check callbacks, the
platform SDK to check the hub's calls and sign its callbacks. Bodies stay plain JSON
(API.md "Hub → platform"); the signature travels beside them in one header,
``Tongcha-Signature``, as a compact JWS (a JWT) whose claims bind it to one receiver,
one path, one body and one short time window:

- ``iss`` who signs (``tongcha-hub`` or the platform's code), ``aud`` who may accept it;
- ``htm``/``htu`` the method and the operation path (``/tongcha/v1/bindings/count``);
- ``bsh`` the base64url SHA-256 of the exact body bytes;
- ``iat``/``exp`` a short life (60 s by default) and ``jti`` a unique id, which the
  receiver remembers until ``exp`` so that a captured request cannot be replayed.

The hub publishes its public keys at ``/.well-known/jwks.json``; a platform registers its
public keys with the hub. Keys are found by ``kid``, so either side can rotate by
publishing a new key before signing with it and retiring the old one later.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypeGuard

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from pydantic import BaseModel, ConfigDict, Field

SIGNATURE_HEADER = "Tongcha-Signature"
HUB_ISSUER = "tongcha-hub"
TOKEN_TYPE = "tongcha-request+jwt"  # noqa: S105 - a JOSE "typ", not a secret
# ES256 is what the hub signs with; platforms may register any of these.
ALGORITHMS = ["ES256", "ES384", "RS256", "PS256"]
DEFAULT_TTL_SECONDS = 60
# Clocks disagree a little; a token is accepted this many seconds either side.
LEEWAY_SECONDS = 30


class Operation(StrEnum):
    bindings_count = "count"
    bindings_list = "list"
    bindings_unbind = "unbind"
    account_action = "action"
    labels_list = "labels_list"
    labels_clear = "labels_clear"

    @property
    def path(self) -> str:
        return PATHS[self]


PATHS: dict[Operation, str] = {
    Operation.bindings_count: "/tongcha/v1/bindings/count",
    Operation.bindings_list: "/tongcha/v1/bindings/list",
    Operation.bindings_unbind: "/tongcha/v1/bindings/unbind",
    Operation.account_action: "/tongcha/v1/accounts/action",
    Operation.labels_list: "/tongcha/v1/labels/list",
    Operation.labels_clear: "/tongcha/v1/labels/clear",
}
OPERATION_BY_PATH = {path: op for op, path in PATHS.items()}


def callback_path(task_id: str) -> str:
    return f"/platform/v1/tasks/{task_id}/result"


class _Body(BaseModel):
    # Either end may add fields later (API.md: add freely, never rename or drop).
    model_config = ConfigDict(extra="ignore")


# --- what the hub sends -----------------------------------------------------------


class BindingQuery(_Body):
    """count and list: bindings made in [bound_from, bound_until)."""

    task_id: str = Field(min_length=1, max_length=64)
    number: str
    bound_from: datetime
    bound_until: datetime | None = None


class UnbindQuery(_Body):
    """Detach the number from bindings made strictly before ``bound_before``."""

    task_id: str = Field(min_length=1, max_length=64)
    number: str
    bound_before: datetime


class ActionQuery(_Body):
    task_id: str = Field(min_length=1, max_length=64)
    number: str
    account_ref: str = Field(min_length=1, max_length=200)
    action: Literal["unbind", "freeze", "cancel"]


class LabelQuery(_Body):
    task_id: str = Field(min_length=1, max_length=64)
    number: str
    labeled_before: datetime | None = None


# --- what a platform answers ------------------------------------------------------


class AppCount(_Body):
    app: str
    count: int = Field(ge=0)


class CountAnswer(_Body):
    counts: list[AppCount]


class Account(_Body):
    app: str
    account_ref: str
    display_name_masked: str
    bound_at: datetime
    last_active_at: datetime | None = None


class ListAnswer(_Body):
    accounts: list[Account]


class UnbindAnswer(_Body):
    unbound: list[str]
    kept: int = Field(ge=0)


class ActionAnswer(_Body):
    outcome: Literal["done", "refused"]
    reason: str | None = None


class Label(_Body):
    label: str
    labeled_at: datetime


class LabelsAnswer(_Body):
    labels: list[Label]


class ClearAnswer(_Body):
    cleared: int = Field(ge=0)


class Accepted(_Body):
    """``202``: the platform will report later with a signed callback."""

    accepted: Literal[True] = True


Query = BindingQuery | UnbindQuery | ActionQuery | LabelQuery
Answer = CountAnswer | ListAnswer | UnbindAnswer | ActionAnswer | LabelsAnswer | ClearAnswer

QUERY_TYPES: dict[Operation, type[Query]] = {
    Operation.bindings_count: BindingQuery,
    Operation.bindings_list: BindingQuery,
    Operation.bindings_unbind: UnbindQuery,
    Operation.account_action: ActionQuery,
    Operation.labels_list: LabelQuery,
    Operation.labels_clear: LabelQuery,
}
ANSWER_TYPES: dict[Operation, type[Answer]] = {
    Operation.bindings_count: CountAnswer,
    Operation.bindings_list: ListAnswer,
    Operation.bindings_unbind: UnbindAnswer,
    Operation.account_action: ActionAnswer,
    Operation.labels_list: LabelsAnswer,
    Operation.labels_clear: ClearAnswer,
}


class CallbackError(_Body):
    code: str = Field(min_length=1, max_length=64)
    message: str = Field(max_length=2000)


class CallbackBody(_Body):
    """``POST /platform/v1/tasks/{task_id}/result``: the answer the call would have had,
    or an error saying why the platform could not do it."""

    answer: dict[str, Any] | None = None
    error: CallbackError | None = None


# --- signatures -------------------------------------------------------------------


class SignatureError(Exception):
    """A signature that must not be trusted; ``str(exc)`` says why, safe to show."""


def new_signing_key(kid: str | None = None) -> ECKey:
    """A fresh P-256 key for ES256, with a random ``kid`` unless one is given."""
    return ECKey.generate_key("P-256", parameters={"kid": kid or secrets.token_hex(8)}, private=True)


def import_key(jwk: dict[str, Any]) -> ECKey:
    return ECKey.import_key(jwk)


def public_jwk(key: ECKey) -> dict[str, Any]:
    jwk = dict(key.as_dict(private=False))
    jwk.setdefault("use", "sig")
    jwk.setdefault("alg", "ES256")
    return jwk


def key_set(jwks: dict[str, Any]) -> KeySet:
    """A key set from a JWKS document (``{"keys": [...]}``); bad keys are refused."""
    try:
        return KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SignatureError(f"unusable key set: {exc}") from exc


def body_hash(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()


def sign(
    key: ECKey,
    *,
    issuer: str,
    audience: str,
    path: str,
    body: bytes,
    now: float | None = None,
    ttl: int = DEFAULT_TTL_SECONDS,
    jti: str | None = None,
) -> str:
    """The ``Tongcha-Signature`` header value for one POST of ``body`` to ``path``."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl,
        "jti": jti or secrets.token_urlsafe(16),
        "htm": "POST",
        "htu": path,
        "bsh": body_hash(body),
    }
    if _is_p256(key) and key.kid is not None:
        return _es256_sign(key, claims)
    header = {"alg": "ES256", "kid": key.kid, "typ": TOKEN_TYPE}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


# --- ES256 compact JWS on `cryptography` directly -----------------------------------
#
# Every hub call is signed once and verified once, and joserfc's generic machinery cost
# more than the elliptic-curve work itself. For the one shape both ends use (ES256 on
# P-256, a protected header of exactly alg, kid and typ) RFC 7515's compact form is
# written and checked here with `cryptography`; any other algorithm, key or header
# goes through joserfc. Tests check each path against the other.

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_FAST_HEADER = frozenset({"alg", "kid", "typ"})


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(part: bytes) -> bytes:
    """Strict base64url without padding (RFC 7515 §2): anything else is refused."""
    if len(part) % 4 == 1 or _B64URL.fullmatch(part) is None:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def _is_p256(key: object) -> TypeGuard[ECKey]:
    return isinstance(key, ECKey) and key.curve_name == "P-256"


_headers: dict[str, bytes] = {}


def _es256_sign(key: ECKey, claims: dict[str, Any]) -> str:
    kid = str(key.kid)
    header = _headers.get(kid)
    if header is None:
        header = _headers[kid] = _b64(orjson.dumps({"alg": "ES256", "kid": kid, "typ": TOKEN_TYPE}))
    signing_input = header + b"." + _b64(orjson.dumps(claims))
    private = key.private_key
    if private is None:
        raise SignatureError("a public key cannot sign")
    r, s = decode_dss_signature(private.sign(signing_input, _ECDSA_SHA256))
    return (signing_input + b"." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode()


def _es256_claims(token: str, header: dict[str, Any], key: object) -> dict[str, Any] | None:
    """The claims of a verified ES256 token, or None when it is not that shape."""
    if header.get("alg") != "ES256" or set(header) - _FAST_HEADER or not _is_p256(key):
        return None
    parts = token.encode().split(b".")
    if len(parts) != 3 or _B64URL.fullmatch(parts[0]) is None:
        raise SignatureError("bad signature: not a compact JWS")
    try:
        raw = _unb64(parts[2])
        if len(raw) != 64:
            raise ValueError("an ES256 signature is 64 bytes")
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        key.public_key.verify(der, parts[0] + b"." + parts[1], _ECDSA_SHA256)
        claims = orjson.loads(_unb64(parts[1]))
    except (ValueError, InvalidSignature, orjson.JSONDecodeError):
        raise SignatureError("bad signature: BadSignatureError") from None
    if not isinstance(claims, dict):
        raise SignatureError("bad signature: the claims are not an object")
    return claims


@dataclass(frozen=True, slots=True)
class Verified:
    issuer: str
    jti: str
    expires_at: int
    kid: str


def _peek_header(token: str) -> dict[str, Any] | None:
    """A token's protected header, read without trusting it."""
    try:
        head = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def peek_kid(token: str) -> str | None:
    """The ``kid`` a token names, read without trusting it (to pick or fetch keys)."""
    value = (_peek_header(token) or {}).get("kid")
    return value if isinstance(value, str) else None


def verify(
    token: str | None,
    keys: KeySet,
    *,
    audience: str,
    path: str,
    body: bytes,
    issuer: str | None = None,
    now: float | None = None,
) -> Verified:
    """Check a ``Tongcha-Signature`` value against ``keys`` and the request it came with.

    Replay protection is the caller's: remember ``Verified.jti`` until ``expires_at``
    and refuse a token whose ``jti`` was seen.
    """
    if not token:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    header = _peek_header(token) or {}
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise SignatureError("the signature names no key (kid)")
    try:
        key = keys.get_by_kid(kid)
    except (ValueError, KeyError, JoseError):
        raise SignatureError(f"unknown signing key {kid!r}") from None
    fast = _es256_claims(token, header, key)
    if fast is not None:
        claims = fast
    else:
        try:
            decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
        except (JoseError, ValueError, TypeError) as exc:
            raise SignatureError(f"bad signature: {exc.__class__.__name__}") from None
        header, claims = decoded.header, decoded.claims
    if header.get("typ") != TOKEN_TYPE:
        raise SignatureError(f"token type must be {TOKEN_TYPE}")
    moment = time.time() if now is None else now
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise SignatureError("the signature has no iat/exp")
    if exp + LEEWAY_SECONDS < moment:
        raise SignatureError("the signature has expired")
    if iat - LEEWAY_SECONDS > moment:
        raise SignatureError("the signature was issued in the future")
    if exp - iat > 10 * DEFAULT_TTL_SECONDS:
        raise SignatureError("the signature lives too long")
    if claims.get("aud") != audience:
        raise SignatureError("the signature is meant for someone else")
    if issuer is not None and claims.get("iss") != issuer:
        raise SignatureError("the signature is from someone else")
    if claims.get("htm") != "POST" or claims.get("htu") != path:
        raise SignatureError("the signature is for another path")
    if claims.get("bsh") != body_hash(body):
        raise SignatureError("the body does not match the signature")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 128:
        raise SignatureError("the signature has no usable jti")
    return Verified(issuer=str(claims.get("iss")), jti=jti, expires_at=exp, kid=kid)
