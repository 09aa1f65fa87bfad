"""Simulated carriers feed a live hub over loopback HTTP, and the ledger agrees with them."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tongcha.ledger.models import LedgerNumber, Tenure
from tongcha.sim.carriers import feed
from tongcha.sim.ledger import SynthConfig, generate


def test_three_carriers_seed_the_ledger_with_every_number(
    live_hub: str, parties: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    cfg = SynthConfig(numbers=300, seed=11, today=date(2026, 11, 1))
    expected_numbers = {int(str(e["number"])[3:]) for e in generate(cfg)}
    activations = sum(1 for e in generate(cfg) if e["type"] in ("activated", "transferred"))
    report = feed(live_hub, {c: parties[c] for c in ("CMCC", "CUCC", "CTCC")}, cfg, batch=200)
    assert report.rejected == 0
    with sessions() as session:
        numbers = set(session.scalars(select(LedgerNumber.number)))
        tenures = session.scalar(select(func.count()).select_from(Tenure))
    assert numbers == expected_numbers
    assert tenures == activations
