"""The platform registry: enterprises, their apps, where the hub calls them, their keys."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit import credentials
from tongcha.kit.credentials import PartyKind
from tongcha.kit.db import add_row
from tongcha.kit.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from tongcha.platforms import fanout
from tongcha.platforms import repository as repo
from tongcha.platforms.catalogue import ENTERPRISES, AccountModel
from tongcha.platforms.models import Platform, PlatformApp, PlatformKey, PlatformStatus
from tongcha.platforms.repository import apps_of as apps_of
from tongcha.platforms.repository import callable_platforms as callable_platforms
from tongcha.platforms.repository import live_kids as live_kids
from tongcha.requests.models import RequestKind
from tongcha.sdk import protocol

# The request kinds a platform answers within an SLA (a probe has none).
SLA_KINDS = frozenset(kind.value for kind in RequestKind if kind is not RequestKind.probe)
MAX_SLA_DAYS = 30


def check_code(code: str) -> None:
    if not code or len(code) > 32 or not code.replace("-", "").replace("_", "").isalnum() or not code.isascii():
        raise InvalidArgument("a code is 1 to 32 letters, digits, - or _")


# A carrier's or a platform's code is written in capitals (CMCC, MEITUAN): codes are
# matched exactly, so "acme2" beside "ACME2" would be a second party that reads the same.
_PARTY_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")


def check_party_code(code: str, kind: str) -> None:
    """Refuse a code a new carrier or platform (``kind``) may not have."""
    if _PARTY_CODE.fullmatch(code) is None:
        raise InvalidArgument(
            f"a {kind} code is 1 to 32 capital letters A-Z, digits, - or _, starting with a letter or digit, "
            "like CMCC or MEITUAN",
            [{"field": "code", "issue": "not a code"}],
        )


def check_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidArgument("base_url must be an http(s) URL without query or fragment")
    return url.rstrip("/")


def get(session: Session, code: str) -> Platform:
    platform = repo.platform_by_code(session, code)
    if platform is None:
        raise NotFound(f"no platform with code {code!r}")
    return platform


@dataclass
class AppSpec:
    code: str
    name_zh: str
    name_en: str


@dataclass
class PlatformSpec:
    code: str
    name: str
    name_zh: str | None = None
    account_model: AccountModel = AccountModel.independent
    base_url: str | None = None
    apps: list[AppSpec] = field(default_factory=list)


def _register(session: Session, spec: PlatformSpec, now: datetime) -> Platform:
    """The registry row and its apps, with the default timeout and concurrency."""
    check_party_code(spec.code, "platform")
    same = repo.code_reading_as(session, spec.code)
    if same is not None:
        raise Conflict(f"a platform with code {same!r} exists already")
    platform = add_row(
        session,
        Platform(
            code=spec.code,
            name=spec.name,
            name_zh=spec.name_zh,
            account_model=spec.account_model.value,
            base_url=check_base_url(spec.base_url) if spec.base_url else None,
            status=PlatformStatus.active.value,
            timeout_ms=3000,
            max_concurrency=32,
            sla_overrides={},
            created_at=now,
        ),
    )
    for app in spec.apps:
        add_app(session, platform, app)
    return platform


def add(session: Session, spec: PlatformSpec, now: datetime) -> tuple[Platform, str]:
    """Register an enterprise and issue its first bearer credential (returned once)."""
    platform = _register(session, spec, now)
    return platform, credentials.issue(session, PartyKind.platform, platform.id, now)


def add_app(session: Session, platform: Platform, app: AppSpec) -> PlatformApp:
    check_code(app.code)
    if repo.app_exists(session, platform.id, app.code):
        raise Conflict(f"{platform.code} has an app {app.code!r} already")
    return add_row(
        session, PlatformApp(platform_id=platform.id, code=app.code, name_zh=app.name_zh, name_en=app.name_en)
    )


def seed(session: Session, now: datetime) -> list[str]:
    """Add the catalogue's enterprises that are not registered yet. Returns their codes.

    Seeded enterprises get no credential and no base URL: the operator gives them those
    when the enterprise connects (``platform credential``, ``platform update``).
    """
    added = []
    for entry in ENTERPRISES:
        if repo.code_taken(session, entry.code):
            continue
        apps = [AppSpec(app.code, app.name_zh, app.name_en) for app in entry.apps]
        _register(session, PlatformSpec(entry.code, entry.name_en, entry.name_zh, entry.account_model, None, apps), now)
        added.append(entry.code)
    return added


@dataclass
class PlatformUpdate:
    """What to change; ``None`` keeps a field as it is, and a field named in ``cleared``
    (sent as null) is emptied where it may be empty and refused where it may not."""

    base_url: str | None = None
    status: PlatformStatus | None = None
    timeout_ms: int | None = None
    max_concurrency: int | None = None
    sla_overrides: dict[str, int] | None = None
    cleared: frozenset[str] = frozenset()


# Fields a platform always has a value for: null cannot empty them.
_NEVER_EMPTY = ("status", "timeout_ms", "max_concurrency")


def update(session: Session, code: str, change: PlatformUpdate) -> Platform:
    """Apply ``change`` to the platform ``code``; flushes, never commits."""
    for name in _NEVER_EMPTY:
        if name in change.cleared:
            raise InvalidArgument(
                f"{name} cannot be null: send a value, or leave it out to keep it",
                [{"field": name, "issue": "may not be null"}],
            )
    platform = get(session, code)
    if "base_url" in change.cleared:
        platform.base_url = None  # the hub no longer calls it until it is given one
    if "sla_overrides" in change.cleared:
        platform.sla_overrides = {}
    if change.base_url is not None:
        platform.base_url = check_base_url(change.base_url)
    if change.status is not None:
        platform.status = change.status.value
    if change.timeout_ms is not None:
        if not 50 <= change.timeout_ms <= 60_000:
            raise InvalidArgument("timeout_ms must be between 50 and 60000")
        platform.timeout_ms = change.timeout_ms
    if change.max_concurrency is not None:
        if not 1 <= change.max_concurrency <= 1000:
            raise InvalidArgument("max_concurrency must be between 1 and 1000")
        platform.max_concurrency = change.max_concurrency
    if change.sla_overrides is not None:
        for kind, days in change.sla_overrides.items():
            if kind not in SLA_KINDS:
                raise InvalidArgument("an SLA is set per request kind: " + ", ".join(sorted(SLA_KINDS)))
            # bool is an int to Python: True would be stored as one working day.
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_SLA_DAYS:
                raise InvalidArgument(
                    f"the SLA for {kind!r} must be a whole number of working days, 1 to {MAX_SLA_DAYS}",
                    [{"field": f"sla_overrides.{kind}", "issue": "not a whole number of working days in range"}],
                )
        platform.sla_overrides = dict(change.sla_overrides)
    session.flush()
    return platform


def add_key(session: Session, code: str, jwk: dict[str, Any], now: datetime) -> str:
    """Register a platform's public key for its callbacks. Returns the key's kid."""
    platform = get(session, code)
    if not isinstance(jwk, dict) or "keys" in jwk:
        raise InvalidArgument("send one public JWK (an object with kty, not a key set)")
    if any(part in jwk for part in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise InvalidArgument("that JWK holds private material; register the public key only")
    try:
        key = KeySet.import_key_set({"keys": [jwk]}).keys[0]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidArgument(f"not a usable public JWK: {exc.__class__.__name__}") from None
    kid = jwk.get("kid") or key.thumbprint()
    if not isinstance(kid, str) or not 1 <= len(kid) <= 128 or "\x00" in kid:
        raise InvalidArgument("the key's kid must be 1 to 128 characters, none of them NUL")
    if repo.key_exists(session, platform.id, kid):
        raise Conflict(f"{code} has a key {kid!r} already")
    public = dict(key.as_dict(private=False))
    public["kid"] = kid
    add_row(session, PlatformKey(platform_id=platform.id, kid=kid, jwk=public, created_at=now))
    return kid


def retire_key(session: Session, code: str, kid: str, now: datetime) -> None:
    platform = get(session, code)
    key = repo.live_key(session, platform.id, kid)
    if key is None:
        raise NotFound(f"{code} has no live key {kid!r}")
    key.retired_at = now
    session.flush()


def key_set(session: Session, platform_id: int) -> KeySet:
    """The platform's live public keys, for checking its callbacks."""
    return protocol.key_set({"keys": repo.live_jwks(session, platform_id)})


@dataclass
class CallbackResult:
    task_id: str
    state: str
    recorded: bool


def accept_callback(
    session: Session, task_id: str, token: str | None, body: bytes, *, wall: float, now: datetime
) -> CallbackResult:
    """A platform's signed ``POST /platform/v1/tasks/{task_id}/result``.

    The signature must be the task's platform's, fresh and never seen before. A
    duplicate or late callback for a finished task is acknowledged and changes nothing.
    """
    task = repo.task_by_public_id(session, task_id)
    if task is None:
        raise NotFound(f"no task {task_id!r}")
    platform = repo.platform_by_id(session, task.platform_id)
    assert platform is not None
    try:
        verified = protocol.verify(
            token,
            key_set(session, platform.id),
            audience=protocol.HUB_ISSUER,
            issuer=platform.code,
            path=protocol.callback_path(task_id),
            body=body,
            now=wall,
        )
    except protocol.SignatureError as exc:
        raise Unauthenticated(str(exc)) from None
    try:
        with session.begin_nested():
            repo.remember_token(
                session,
                issuer=platform.code,
                jti=verified.jti,
                expires_at=datetime.fromtimestamp(verified.expires_at, UTC),
            )
    except IntegrityError:
        raise Unauthenticated("this signature was used before (replay)") from None
    try:
        callback = protocol.CallbackBody.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidArgument(f"not a task result: {exc.errors()[0]['msg']}") from None
    if (callback.answer is None) == (callback.error is None):
        raise InvalidArgument("a task result has either an answer or an error")
    answer = None
    if callback.answer is not None:
        try:
            model = protocol.ANSWER_TYPES[protocol.Operation(task.operation)].model_validate(callback.answer)
        except ValidationError as exc:
            problem = exc.errors()[0]
            raise InvalidArgument(
                f"the answer does not fit {task.operation}: {problem['loc']} {problem['msg']}"
            ) from None
        answer = model.model_dump(mode="json")
    error = (callback.error.code, callback.error.message) if callback.error is not None else None
    recorded = fanout.record_callback(session, task, answer=answer, error=error, now=now)
    return CallbackResult(task_id=task.task_id, state=task.state, recorded=recorded)


def callees(session: Session) -> list[fanout.CalleeRow]:
    return [
        fanout.CalleeRow(p.id, p.code, p.name, p.base_url, p.timeout_ms, p.max_concurrency, dict(p.sla_overrides))
        for p in callable_platforms(session)
    ]


class PlatformDirectory:
    """The callable platforms as one process sees them, re-read every ``ttl`` seconds:
    every fan-out needs the list and the registry rarely changes, so a suspension or a
    new base URL reaches a running API process within ``ttl`` seconds."""

    def __init__(self, sessions: sessionmaker[Session], ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._lock = threading.Lock()
        self._loaded_at = -1e9
        self._rows: list[fanout.CalleeRow] = []

    def callees(self) -> list[fanout.CalleeRow]:
        if time.monotonic() - self._loaded_at >= self._ttl:
            with self._lock:
                if time.monotonic() - self._loaded_at >= self._ttl:
                    with self._sessions() as session:
                        self._rows = callees(session)
                    self._loaded_at = time.monotonic()
        return self._rows

    def forget(self) -> None:
        self._loaded_at = -1e9
