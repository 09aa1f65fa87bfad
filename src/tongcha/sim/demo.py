"""``tongcha demo``: the hub on SQLite, fed by simulated carriers over loopback HTTP."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from sqlalchemy import select

from tongcha.kit.clock import SystemClock
from tongcha.kit.db import make_engine, make_sessionmaker
from tongcha.kit.migrate import upgrade
from tongcha.kit.settings import Settings
from tongcha.ledger.models import Carrier, Tenure
from tongcha.parties import add_carrier, add_platform, issue_credential
from tongcha.platforms.models import Platform
from tongcha.sim.carriers import feed
from tongcha.sim.ledger import SynthConfig
from tongcha.web.app import create_app

CARRIERS = {"CMCC": "China Mobile 中国移动", "CUCC": "China Unicom 中国联通", "CTCC": "China Telecom 中国电信"}


def run_demo(*, host: str, port: int, numbers: int, database: Path, console: Console) -> None:
    url = f"sqlite:///{database.resolve()}"
    settings = Settings(env="dev", database_url=url)
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = SystemClock().now()
    secrets: dict[str, str] = {}
    with sessions() as session, session.begin():
        for code, name in CARRIERS.items():
            exists = session.scalars(select(Carrier).where(Carrier.code == code)).first()
            secrets[code] = (
                issue_credential(session, "carrier", code, now) if exists else add_carrier(session, code, name, 90, now)
            )
        has_platform = session.scalars(select(Platform).where(Platform.code == "DEMO")).first()
        platform_secret = (
            issue_credential(session, "platform", "DEMO", now)
            if has_platform
            else add_platform(session, "DEMO", "Demo platform", now)
        )
        seeded = session.scalars(select(Tenure).limit(1)).first() is not None

    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine=engine), host=host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{host}:{port}"
    _wait_until_up(base)
    if not seeded:
        console.print(f"simulated carriers are sending the history of {numbers:,} numbers over HTTP…")
        started = time.perf_counter()
        cfg = SynthConfig(numbers=numbers, today=datetime.now(UTC).date())
        report = feed(base, secrets, cfg)
        console.print(
            f"ledger seeded: {report.accepted:,} events accepted in {report.rounds} rounds "
            f"({time.perf_counter() - started:.1f}s); {report.rejected:,} left refused"
        )
    recycled, stable, earlier = _examples(sessions)
    console.print(f"\n[bold]Tongcha is running at {base}[/bold]  (API docs: {base}/docs)")
    console.print("A platform credential for trying the checks:")
    console.print(f"  {platform_secret}")
    if recycled:
        console.print(f"A re-issued number: {recycled[0]} (held by someone else before {recycled[1]})")
        console.print(
            f"  curl -H 'Authorization: Bearer {platform_secret}' '{base}/platform/v1/reassignments/{recycled[0]}?since={earlier}'"
        )
    if stable:
        console.print(f"A number with one holder since {stable[1]}: {stable[0]}")
    console.print("Press Ctrl+C to stop.")
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(5)


def _wait_until_up(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the hub did not start within 30 s")


def _examples(sessions) -> tuple[tuple[str, str] | None, tuple[str, str] | None, str]:  # type: ignore[no-untyped-def]
    """A re-issued number, a number with one holder, and a day inside the re-issued
    number's first tenure (asking about it answers yes)."""
    with sessions() as session:
        recycled = session.execute(
            select(Tenure.number, Tenure.started_on).where(Tenure.seq == 2, Tenure.ended_on.is_(None)).limit(1)
        ).first()
        stable = session.execute(
            select(Tenure.number, Tenure.started_on).where(Tenure.seq == 1, Tenure.ended_on.is_(None)).limit(1)
        ).first()
        earlier = (
            session.scalar(select(Tenure.started_on).where(Tenure.number == recycled[0], Tenure.seq == 1))
            if recycled
            else None
        )
    return (
        (f"+86{recycled[0]}", recycled[1].isoformat()) if recycled else None,
        (f"+86{stable[0]}", stable[1].isoformat()) if stable else None,
        earlier.isoformat() if earlier else "2010-01-01",
    )
