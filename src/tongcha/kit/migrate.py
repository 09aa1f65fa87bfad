"""Running Alembic from the program (``tongcha db upgrade``) and from tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from tongcha.kit.db import normalise_url

ROOT = Path(__file__).resolve().parents[3]


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise when the models and the migrations disagree."""
    command.check(alembic_config(url))


def behind(url: str) -> str | None:
    """Why the database at ``url`` is not ready for the program (not created, or at an
    older schema than this program's), or None when it is at the latest schema."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    if current == head:
        return None
    if current is None:
        return "the database has no schema yet"
    return f"the database's schema is at {current}, this program's at {head}"
