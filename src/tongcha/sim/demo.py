"""``tongcha demo``: the hub on SQLite, fed by simulated carriers over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

import httpx
import uvicorn
from joserfc.jwk import ECKey
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit import credentials, jobs
from tongcha.kit.clock import SystemClock
from tongcha.kit.db import make_engine, make_sessionmaker
from tongcha.kit.digests import Digester
from tongcha.kit.keys import Keyring
from tongcha.kit.migrate import upgrade
from tongcha.kit.phone import e164
from tongcha.kit.settings import Settings
from tongcha.ledger import repository as ledger_repo
from tongcha.parties import add_carrier, add_platform, issue_credential
from tongcha.platforms import repository as platforms_repo
from tongcha.platforms import service as platforms_service
from tongcha.platforms.catalogue import ENTERPRISES
from tongcha.platforms.dispatch import Dispatcher, FanoutWorker
from tongcha.sdk import protocol
from tongcha.sim.accounts import Tenure as SimTenure
from tongcha.sim.carriers import feed
from tongcha.sim.ledger import SynthConfig
from tongcha.sim.platforms import Knobs, PlatformFleet
from tongcha.web.app import create_app

CARRIERS = {"CMCC": "China Mobile 中国移动", "CUCC": "China Unicom 中国联通", "CTCC": "China Telecom 中国电信"}


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now.

    As uvicorn binds, with ``SO_REUSEADDR``: connections of a server just stopped linger
    on its port for a minute (TIME_WAIT) and do not keep the next one from listening
    there; another server listening does."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def run_demo(*, host: str, port: int, numbers: int, database: Path, console: Console) -> None:
    if not port_free(host, port):
        # Otherwise the wait below would find the other server and report success.
        console.print(f"[red]{host}:{port} is in use (another demo?); stop it or pass --port[/red]")
        raise SystemExit(1)
    url = f"sqlite:///{database.resolve()}"
    settings = Settings(env="dev", database_url=url)
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = SystemClock().now()
    secrets: dict[str, str] = {}
    with sessions() as session, session.begin():
        for code, name in CARRIERS.items():
            exists = ledger_repo.carrier_by_code(session, code)
            secrets[code] = (
                issue_credential(session, "carrier", code, now) if exists else add_carrier(session, code, name, 90, now)
            )
        has_platform = platforms_repo.platform_by_code(session, "DEMO")
        platform_secret = (
            issue_credential(session, "platform", "DEMO", now)
            if has_platform
            else add_platform(session, "DEMO", "Demo platform", now)
        )
        seeded = ledger_repo.has_tenures(session)

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
    cfg = SynthConfig(numbers=numbers, today=datetime.now(UTC).date())
    fleet = PlatformFleet(hub_url=base, ledger=cfg)
    for entry in ENTERPRISES:
        fleet.add(entry, DEMO_KNOBS.get(entry.code, Knobs(latency_ms=(5, 40))), signing_key=_demo_key(entry.code))
    with sessions() as session, session.begin():
        operator = _connect(session, fleet, now)
    worker = threading.Thread(target=_run_worker, args=(settings, sessions), daemon=True)
    worker.start()
    console.print(f"{len(fleet.platforms)} simulated platforms are answering on loopback (with a fan-out worker)")

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
    if recycled:
        probe = json.dumps({"number": recycled[0], "bound_from": earlier})
        console.print("\nAsk every platform which accounts sit on it (the operator's probe):")
        console.print(
            f"  curl -X POST -H 'Authorization: Bearer {operator}' -H 'content-type: application/json' "
            f"{base}/operator/v1/probes -d '{probe}'"
        )
    people = _citizens(fleet, sessions, settings)
    if people:
        console.print(
            f"\n[bold]Walk through it as a citizen:[/bold] open {base}/me (the phone on the right shows the SMS)"
        )
        console.print("  Two synthetic people made up by the simulator, nobody real:")
        console.print(
            f"  1. {people.previous.holder_name}, ID number {people.previous.holder_id}, held {people.number} "
            f"until {people.ended_on}. Verify with {people.previous_now}, the number they hold now, then ask "
            f"for the history of {people.number} (its row under My numbers): what is still bound from their time."
        )
        console.print(
            f"  2. {people.holder.holder_name}, ID number {people.holder.holder_id}, holds {people.number} "
            f"since {people.started_on}. Verify with it, then: my numbers, the inquiry, a detail and a "
            "dispute, and unbind what the previous holder left."
        )
    console.print("Press Ctrl+C to stop.")
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(5)
    finally:
        fleet.stop()


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
        recycled = ledger_repo.an_open_tenure(session, 2)
        stable = ledger_repo.an_open_tenure(session, 1)
        earlier = ledger_repo.tenure_at(session, recycled.number, 1) if recycled else None
    return (
        (e164(recycled.number), recycled.started_on.isoformat()) if recycled else None,
        (e164(stable.number), stable.started_on.isoformat()) if stable else None,
        earlier.started_on.isoformat() if earlier else "2010-01-01",
    )


class _Citizens(NamedTuple):
    number: str
    holder: SimTenure
    started_on: date
    previous: SimTenure
    ended_on: date
    previous_now: str


def _citizens(fleet: PlatformFleet, sessions: sessionmaker[Session], settings: Settings) -> _Citizens | None:
    """Two people for the citizen pages: the holder of a re-issued number, and its
    previous holder, who verifies with a number they hold now. A number with a binding
    the previous holder left behind is preferred, so the unbind has something to do;
    each pick is checked against the ledger, which may come from an earlier run."""
    holds_now = {h[-1].holder_id: n for n, h in fleet.tenures.items() if h and h[-1].ended_at is None}
    digester = Digester.from_settings(settings)
    found: _Citizens | None = None
    with sessions() as session:
        for number, history in fleet.tenures.items():
            if len(history) < 2 or history[-1].ended_at is not None:
                continue
            holder, previous = history[-1], history[-2]
            previous_now = holds_now.get(previous.holder_id)
            if previous.holder_id == holder.holder_id or previous_now is None:
                continue
            rows = {n: ledger_repo.latest_tenures(session, int(n[3:]), 2) for n in (number, previous_now)}
            here, there = rows[number], rows[previous_now]
            if not (
                len(here) == 2
                and here[0].ended_on is None
                and here[0].kyc_digest == digester.kyc(holder.holder_id, holder.holder_name)
                and here[1].ended_on is not None
                and here[1].kyc_digest == digester.kyc(previous.holder_id, previous.holder_name)
                and there
                and there[0].ended_on is None
                and there[0].kyc_digest == digester.kyc(previous.holder_id, previous.holder_name)
            ):
                continue
            assert here[1].ended_on is not None
            pick = _Citizens(number, holder, here[0].started_on, previous, here[1].ended_on, previous_now)
            found = found or pick
            left_behind = any(
                account.bound_at < holder.started_at
                for sim in fleet.platforms.values()
                for account in sim.accounts.bound_to(number)
            )
            if left_behind:
                return pick
    return found


# A little of real life: some platforms are slow, some answer later, one fails now and then.
DEMO_KNOBS = {
    "MEITUAN": Knobs(latency_ms=(30, 120)),
    "DOUYIN": Knobs(async_rate=1.0, callback_delay_ms=(1_000, 3_000)),
    "WEIBO": Knobs(latency_ms=(5, 40), error_rate=0.2),
}


def _demo_key(code: str) -> ECKey:
    # A fresh kid per run: the registry keeps retired keys, and kids are unique.
    return protocol.new_signing_key(f"{code.lower()}-{int(time.time())}")


def _connect(session: Session, fleet: PlatformFleet, now: datetime) -> str:
    """Point the registry at this run's simulated platforms; returns an operator credential."""
    platforms_service.seed(session, now)
    for sim in fleet.platforms.values():
        platform = platforms_service.get(session, sim.code)
        for kid in platforms_service.live_kids(session, platform.id):
            platforms_service.retire_key(session, sim.code, kid, now)
        platforms_service.update(session, sim.code, platforms_service.PlatformUpdate(base_url=sim.base_url))
        platforms_service.add_key(session, sim.code, sim.public_jwk, now)
    return credentials.issue(session, credentials.PartyKind.operator, 0, now)


def _run_worker(settings: Settings, sessions: sessionmaker[Session]) -> None:
    """What `tongcha worker` does: platform calls on a loop, other jobs (SMS) beside it."""
    clock = SystemClock()
    threading.Thread(target=jobs.work_forever, args=(sessions, clock), daemon=True).start()
    dispatcher = Dispatcher(Keyring(sessions, settings, clock), clock)
    asyncio.run(FanoutWorker(sessions, dispatcher, clock).work_forever())
