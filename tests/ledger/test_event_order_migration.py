"""Migration 0007 keys events by carrier and event id; the events held keep their order.

Two events of a number stamped at the same instant are folded in the order the ledger
accepted them. Before 0007 that order was the surrogate id; after it, the revision and
each event's position in it. Held events ordered any other way (by event id, say) would
no longer fold, and the number would take no new events.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text

from tests.conftest import fresh_pg_database
from tongcha.kit.clock import FixedClock
from tongcha.kit.db import make_engine, make_sessionmaker
from tongcha.kit.migrate import alembic_config, upgrade
from tongcha.kit.settings import Settings
from tongcha.ledger import repository as repo
from tongcha.ledger import service
from tongcha.ledger.models import LedgerNumber, Tenure

NUMBER = 13800138000
HELD = [
    # (id, event id, type, occurred at): the suspension and resumption share an instant,
    # and their event ids sort the other way round from the order they were accepted in.
    (1, "b-activated", "activated", datetime(2020, 1, 1, tzinfo=UTC)),
    (2, "z-suspended", "suspended", datetime(2021, 1, 1, tzinfo=UTC)),
    (3, "a-resumed", "resumed", datetime(2021, 1, 1, tzinfo=UTC)),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url_at_0006(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        upgrade(url, "0006")
        yield url
        return
    with fresh_pg_database("tongcha_migration", migrated=False) as url:
        upgrade(url, "0006")
        yield url


def hold_events_as_0006_did(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO carriers (id, code, name, quarantine_days, created_at) "
                    "VALUES (1, 'CMCC', 'China Mobile', 90, :now)"
                ),
                {"now": datetime(2019, 1, 1, tzinfo=UTC)},
            )
            for row_id, event_id, kind, at in HELD:
                conn.execute(
                    text(
                        "INSERT INTO ledger_events (id, carrier_id, event_id, type, number, occurred_at, day, "
                        "holder_digest, kyc_digest, tail_digest, revision) "
                        "VALUES (:id, 1, :event_id, :type, :number, :at, :day, :holder, :kyc, :tail, 1)"
                    ),
                    {
                        "id": row_id,
                        "event_id": event_id,
                        "type": kind,
                        "number": NUMBER,
                        "at": at,
                        "day": at.date(),
                        "holder": "k1:holder" if kind == "activated" else None,
                        "kyc": "k1:kyc" if kind == "activated" else None,
                        "tail": "k1:tail" if kind == "activated" else None,
                    },
                )
    finally:
        engine.dispose()


def test_events_held_before_0007_keep_their_order_and_the_number_takes_new_events(url_at_0006: str) -> None:
    hold_events_as_0006_did(url_at_0006)
    upgrade(url_at_0006)

    settings = Settings(env="dev", database_url=url_at_0006, index_refresh_seconds=0.0)
    engine = make_engine(url_at_0006)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            carrier = repo.carrier_by_code(session, "CMCC")
            assert carrier is not None
            cancelled = {
                "event_id": "c-cancelled",
                "type": "cancelled",
                "number": f"+86{NUMBER}",
                "occurred_at": "2022-01-01T00:00:00Z",
            }
            result = service.ingest(
                session, carrier, [cancelled], clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC)),
                settings=settings, source="test",
            )  # fmt: skip
            assert (result.accepted, result.rejected) == (1, [])
        with make_sessionmaker(engine)() as session:
            summary = session.get(LedgerNumber, NUMBER)
            assert summary is not None
            assert (summary.suspended, summary.open_since, summary.last_change_on) == (False, None, date(2022, 1, 1))
            tenure = session.scalars(select(Tenure).where(Tenure.number == NUMBER)).one()
            assert (tenure.started_on, tenure.ended_on, tenure.end_reason) == (
                date(2020, 1, 1),
                date(2022, 1, 1),
                "cancelled",
            )
    finally:
        engine.dispose()


def test_going_back_to_0006_numbers_the_events_in_the_order_they_were_accepted(url_at_0006: str) -> None:
    hold_events_as_0006_did(url_at_0006)
    upgrade(url_at_0006)
    command.downgrade(alembic_config(url_at_0006), "0006")

    engine = make_engine(url_at_0006)
    try:
        with engine.connect() as conn:
            held = conn.execute(text("SELECT id, event_id FROM ledger_events ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in held] == [(row_id, event_id) for row_id, event_id, _, _ in HELD]
