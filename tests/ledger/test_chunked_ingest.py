"""One ingest over many chunks agrees with the same chunks ingested one call at a time.

Within one ingest every chunk is replayed against what the earlier chunks wrote in the
same transaction, and a number's tenures may be rewritten several times before the
commit. Ingesting each chunk in a call and transaction of its own reads everything back
from committed rows instead. Both must leave the same ledger and give the carrier the
same answers, whatever order the events arrive in.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit.clock import FixedClock
from tongcha.kit.settings import Settings
from tongcha.ledger import repository as repo
from tongcha.ledger import service
from tongcha.ledger.models import LedgerEvent, LedgerNumber, LedgerRejection, LedgerRevision, Tenure
from tongcha.sim.ledger import SynthConfig, generate

CHUNK = 7


def shuffled_events() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A first part sent earlier, then the rest out of order with repeats of the first."""
    events = list(generate(SynthConfig(numbers=120, seed=23)))
    for event in events:
        event.pop("carrier")  # all sent by one carrier: the ports to others are kept
    rng = random.Random(5)
    rng.shuffle(events)
    first, rest = events[: len(events) // 5], events[len(events) // 5 :]
    rest += rng.sample(first, 15)
    rng.shuffle(rest)
    return first, rest


def ingest(session: Session, events: list[dict[str, Any]], settings: Settings, clock: FixedClock) -> tuple[int, int]:
    carrier = repo.carrier_by_code(session, "CMCC")
    assert carrier is not None
    result = service.ingest(session, carrier, events, clock=clock, settings=settings, source="test")
    return result.accepted, result.duplicates


def ledger(session: Session) -> dict[str, Any]:
    return {
        "events": sorted(session.scalars(select(LedgerEvent.event_id))),
        "tenures": sorted(
            session.execute(
                select(
                    Tenure.number,
                    Tenure.seq,
                    Tenure.holder_digest,
                    Tenure.kyc_digest,
                    Tenure.tail_digest,
                    Tenure.carrier_id,
                    Tenure.started_on,
                    Tenure.ended_on,
                    Tenure.end_reason,
                )
            ).all()
        ),
        "numbers": sorted(
            session.execute(
                select(
                    LedgerNumber.number,
                    LedgerNumber.carrier_id,
                    LedgerNumber.first_known_on,
                    LedgerNumber.open_since,
                    LedgerNumber.last_change_on,
                    LedgerNumber.suspended,
                    LedgerNumber.quarantine_until,
                )
            ).all()
        ),
        "rejections": Counter(
            session.execute(select(LedgerRejection.event_id, LedgerRejection.rule, LedgerRejection.reason)).all()
        ),
    }


def forget_the_ledger(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, session.begin():
        for table in (LedgerEvent, LedgerRejection, Tenure, LedgerNumber, LedgerRevision):
            session.execute(delete(table))


def test_one_ingest_of_many_chunks_leaves_the_ledger_that_chunk_by_chunk_ingests_leave(
    parties: dict[str, str], sessions: sessionmaker[Session], settings: Settings, clock: FixedClock
) -> None:
    small = settings.model_copy(update={"ingest_chunk_size": CHUNK})
    first, rest = shuffled_events()

    with sessions() as session, session.begin():
        ingest(session, first, small, clock)
    totals = [0, 0]
    for start in range(0, len(rest), CHUNK):
        with sessions() as session, session.begin():
            accepted, duplicates = ingest(session, rest[start : start + CHUNK], small, clock)
        totals[0] += accepted
        totals[1] += duplicates
    with sessions() as session:
        chunk_by_chunk = ledger(session)

    forget_the_ledger(sessions)
    with sessions() as session, session.begin():
        ingest(session, first, small, clock)
    with sessions() as session, session.begin():
        at_once = ingest(session, rest, small, clock)
    with sessions() as session:
        in_one_ingest = ledger(session)

    assert at_once == tuple(totals)
    assert in_one_ingest == chunk_by_chunk
    # The case is not a trivial one: transfers, re-issues, repeats and refusals.
    assert 0 < totals[1] <= 15  # repeats of refused events are tried again
    assert len(chunk_by_chunk["tenures"]) > len(chunk_by_chunk["numbers"]) > 100
    rules = Counter(rule for _, rule, _ in chunk_by_chunk["rejections"].elements())
    assert len(rules) >= 3, rules
