"""Every registry query: platforms, their apps and keys, and the hub's own keys.

The task queries of the fan-out live in ``fanout.py`` for now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongcha.kit.keys import HubKey
from tongcha.platforms.models import Platform, PlatformApp, PlatformKey, PlatformStatus, SeenToken

# ----- platforms --------------------------------------------------------------------


def platform_by_code(session: Session, code: str) -> Platform | None:
    return session.scalars(select(Platform).where(Platform.code == code)).first()


def platform_by_id(session: Session, platform_id: int) -> Platform | None:
    return session.get(Platform, platform_id)


def code_taken(session: Session, code: str) -> bool:
    """Whether a platform with this code is registered."""
    return session.scalars(select(Platform.id).where(Platform.code == code)).first() is not None


def platforms(session: Session) -> list[Platform]:
    """Every registered platform, by code."""
    return list(session.scalars(select(Platform).order_by(Platform.code)))


def callable_platforms(session: Session) -> list[Platform]:
    """Platforms the hub can fan out to: active, with a base URL."""
    return list(
        session.scalars(
            select(Platform)
            .where(Platform.status == PlatformStatus.active.value, Platform.base_url.is_not(None))
            .order_by(Platform.code)
        )
    )


# ----- apps -------------------------------------------------------------------------


def apps_of(session: Session, platform_id: int) -> list[PlatformApp]:
    return list(
        session.scalars(select(PlatformApp).where(PlatformApp.platform_id == platform_id).order_by(PlatformApp.id))
    )


def all_apps(session: Session) -> list[PlatformApp]:
    """Every platform's apps, in the order they were added."""
    return list(session.scalars(select(PlatformApp).order_by(PlatformApp.id)))


def app_exists(session: Session, platform_id: int, code: str) -> bool:
    stmt = select(PlatformApp.id).where(PlatformApp.platform_id == platform_id, PlatformApp.code == code)
    return session.scalars(stmt).first() is not None


# ----- the platforms' callback keys -------------------------------------------------


def key_exists(session: Session, platform_id: int, kid: str) -> bool:
    """Whether the platform has a key with this kid, live or retired."""
    stmt = select(PlatformKey.id).where(PlatformKey.platform_id == platform_id, PlatformKey.kid == kid)
    return session.scalars(stmt).first() is not None


def live_key(session: Session, platform_id: int, kid: str) -> PlatformKey | None:
    return session.scalars(
        select(PlatformKey).where(
            PlatformKey.platform_id == platform_id, PlatformKey.kid == kid, PlatformKey.retired_at.is_(None)
        )
    ).first()


def live_jwks(session: Session, platform_id: int) -> list[dict[str, Any]]:
    """The public JWKs of the platform's live keys."""
    return list(
        session.scalars(
            select(PlatformKey.jwk).where(PlatformKey.platform_id == platform_id, PlatformKey.retired_at.is_(None))
        )
    )


def live_kids(session: Session, platform_id: int) -> list[str]:
    return list(
        session.scalars(
            select(PlatformKey.kid).where(PlatformKey.platform_id == platform_id, PlatformKey.retired_at.is_(None))
        )
    )


def remember_token(session: Session, *, issuer: str, jti: str, expires_at: datetime) -> None:
    """Record a callback signature as seen; IntegrityError when it was seen before (a replay).

    The caller runs this in a savepoint, so a replay leaves its transaction usable.
    """
    session.add(SeenToken(issuer=issuer, jti=jti, expires_at=expires_at))
    session.flush()


# ----- the hub's signing keys -------------------------------------------------------


def hub_keys(session: Session) -> list[HubKey]:
    """Every hub key, live or retired, oldest first."""
    return list(session.scalars(select(HubKey).order_by(HubKey.id)))
