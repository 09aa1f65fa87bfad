"""The hub's signing keys: stored sealed, published as a JWKS, rotated without downtime.

Rotation: ``rotate`` adds a key, which signs from then on; the previous keys stay in the
JWKS until ``retire`` removes them, so a platform holding a cached JWKS can still check
anything signed before, and one that sees an unknown ``kid`` re-fetches the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey
from sqlalchemy import JSON, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from tongcha.kit.clock import Clock
from tongcha.kit.db import Base, BigId, UtcDateTime
from tongcha.kit.settings import Settings
from tongcha.sdk import protocol


class HubKey(Base):
    __tablename__ = "hub_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    # The private JWK, sealed (AES-GCM) with a key derived from the operator's secret.
    sealed_private: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class KeyUnsealError(RuntimeError):
    """The stored hub key cannot be opened: the secret key changed."""


def _sealing_key(settings: Settings) -> bytes:
    return hmac.new(
        settings.secret_key.get_secret_value().encode(), b"tongcha hub signing keys", hashlib.sha256
    ).digest()


def _seal(settings: Settings, private: dict[str, Any]) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key(settings)).encrypt(nonce, json.dumps(private).encode(), b"hub-key")
    return base64.b64encode(nonce + sealed).decode()


def _unseal(settings: Settings, sealed: str) -> dict[str, Any]:
    raw = base64.b64decode(sealed)
    try:
        opened = AESGCM(_sealing_key(settings)).decrypt(raw[:12], raw[12:], b"hub-key")
    except InvalidTag:
        raise KeyUnsealError("a hub signing key cannot be opened with this TONGCHA_SECRET_KEY") from None
    value: dict[str, Any] = json.loads(opened)
    return value


def rotate(session: Session, settings: Settings, now: datetime) -> str:
    """Add a new signing key; it signs from now on. Returns its kid."""
    key = protocol.new_signing_key()
    session.add(
        HubKey(
            kid=key.kid,
            sealed_private=_seal(settings, dict(key.as_dict(private=True))),
            public_jwk=protocol.public_jwk(key),
            created_at=now,
        )
    )
    session.flush()
    return str(key.kid)


def retire(session: Session, now: datetime, *, keep_newest: int = 1) -> list[str]:
    """Unpublish every live key but the newest ``keep_newest``. Returns their kids."""
    live = session.scalars(select(HubKey).where(HubKey.retired_at.is_(None)).order_by(HubKey.id.desc())).all()
    gone = live[max(1, keep_newest) :]
    for key in gone:
        key.retired_at = now
    session.flush()
    return [key.kid for key in gone]


def ensure_key(session: Session, settings: Settings, now: datetime) -> None:
    if session.scalars(select(HubKey.id).where(HubKey.retired_at.is_(None)).limit(1)).first() is None:
        rotate(session, settings, now)


def live_keys(session: Session) -> list[HubKey]:
    return list(session.scalars(select(HubKey).where(HubKey.retired_at.is_(None)).order_by(HubKey.id)))


def all_keys(session: Session) -> list[HubKey]:
    """Every hub key, live or retired, oldest first."""
    return list(session.scalars(select(HubKey).order_by(HubKey.id)))


class Keyring:
    """The hub's live keys as one process sees them, re-read every ``ttl`` seconds so a
    rotation made by another process (the CLI, say) is picked up without a restart."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, clock: Clock, ttl: float = 5.0) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._ttl = ttl
        self._lock = threading.Lock()
        self._loaded_at = -1e9
        self._signing: ECKey | None = None
        self._jwks: dict[str, Any] = {"keys": []}

    def _load(self) -> None:
        with self._sessions() as session:
            keys = live_keys(session)
        if not keys:
            # Only a hub's very first start writes; every later reload is a read.
            with self._sessions() as session, session.begin():
                ensure_key(session, self._settings, self._clock.now())
                keys = live_keys(session)
        newest = keys[-1]
        self._signing = ECKey.import_key(_unseal(self._settings, newest.sealed_private))
        self._jwks = {"keys": [key.public_jwk for key in keys]}
        self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at >= self._ttl:
            with self._lock:
                if time.monotonic() - self._loaded_at >= self._ttl:
                    self._load()

    def signing_key(self) -> ECKey:
        self._fresh()
        assert self._signing is not None
        return self._signing

    def jwks(self) -> dict[str, Any]:
        self._fresh()
        return self._jwks

    def reload(self) -> None:
        with self._lock:
            self._load()
