"""Alembic environment: the same revisions for SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import context

from tongcha.kit.db import make_engine
from tongcha.kit.models import Base
from tongcha.kit.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _configure(connectable)
        return
    engine = make_engine(url)
    with engine.connect() as connection:
        _configure(connection)
    engine.dispose()


def _configure(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
