"""Fan-out end to end: the hub (a real server) calls simulated platforms (real servers on
loopback, built on our SDK) and keeps every task until it is answered or given up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit.clock import FixedClock
from tongcha.kit.errors import NotFound
from tongcha.kit.keys import Keyring
from tongcha.kit.settings import Settings
from tongcha.platforms import fanout, service
from tongcha.platforms.dispatch import Dispatcher, FanoutWorker
from tongcha.platforms.models import PlatformStatus, PlatformTask
from tongcha.requests.models import RequestKind
from tongcha.sdk.protocol import Operation
from tongcha.sim.ledger import SynthConfig
from tongcha.sim.platforms import Knobs, PlatformFleet, SimPlatform, enterprise

# How long a probe waits for quick platforms: generous, so that a platform that answers at
# once still does on two cores busy with the rest of the suite.
WAIT_MS = 1000


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(env="dev", database_url=db_url, index_refresh_seconds=0.0, fanout_wait_ms=WAIT_MS)


@pytest.fixture
def fleet(live_hub: str) -> Iterator[PlatformFleet]:
    with PlatformFleet(hub_url=live_hub, ledger=SynthConfig(numbers=400, seed=11)) as f:
        yield f


class Hub:
    """The operator's view of the running hub, and a worker beside it."""

    def __init__(
        self, url: str, operator: dict[str, str], sessions: sessionmaker[Session], settings: Settings, clock: FixedClock
    ) -> None:
        self.url = url
        self.operator = operator
        self.sessions = sessions
        self.settings = settings
        self.clock = clock

    def register(self, platform: SimPlatform, *, timeout_ms: int = 2000) -> None:
        """Point the registry at the simulated platform (JD and MEITUAN exist already)."""
        with self.sessions() as session, session.begin():
            try:
                service.get(session, platform.code)
            except NotFound:
                service.add(session, service.PlatformSpec(platform.code, platform.code), self.clock.now())
            change = service.PlatformUpdate(base_url=platform.base_url, timeout_ms=timeout_ms)
            service.update(session, platform.code, change)
            service.add_key(session, platform.code, platform.public_jwk, self.clock.now())

    def probe(self, number: str, **extra: Any) -> dict[str, Any]:
        r = httpx.post(
            f"{self.url}/operator/v1/probes",
            json={"number": number, "bound_from": "2000-01-01", **extra},
            headers=self.operator,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def request(self, request_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/operator/v1/requests/{request_id}", headers=self.operator, timeout=10)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def task(self, request: dict[str, Any], platform: str) -> dict[str, Any]:
        return next(t for t in request["tasks"] if t["platform"] == platform)

    def work(self, rounds: int = 1, *, advance: timedelta = timedelta(minutes=2)) -> int:
        """Move time on past any back-off, then let a worker run what is due."""

        async def go() -> int:
            dispatcher = Dispatcher(Keyring(self.sessions, self.settings, self.clock), self.clock)
            worker = FanoutWorker(self.sessions, dispatcher, self.clock)
            made = 0
            try:
                for _ in range(rounds):
                    self.clock.advance(advance)
                    made += await worker.run_once()
            finally:
                await dispatcher.aclose()
            return made

        return asyncio.run(go())


@pytest.fixture
def hub(
    live_hub: str,
    operator: dict[str, str],
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> Hub:
    return Hub(live_hub, operator, sessions, settings, clock)


def a_number_with_accounts(platform: SimPlatform) -> str:
    numbers = sorted(platform.accounts.numbers())
    assert numbers, "the simulated ledger gave this platform no bound accounts"
    return numbers[0]


def test_quick_platforms_answer_within_the_request(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"))
    baidu = fleet.add(enterprise("BAIDU"))
    hub.register(jd)
    hub.register(baidu)
    number = a_number_with_accounts(jd)
    result = hub.probe(number)
    assert result["state"] == "completed"
    assert result["pending"] == []
    by_code = {t["platform"]: t for t in result["tasks"]}
    assert by_code["JD"]["answer"] == {"counts": [{"app": "jd", "count": len(jd.accounts.bound_to(number))}]}
    assert by_code["JD"]["answered_via"] == "sync"
    # Baidu's accounts are unified: one count for the enterprise, not one per app
    assert [c["app"] for c in by_code["BAIDU"]["answer"]["counts"]] == ["BAIDU"]


def test_a_slow_platform_is_left_pending_and_answered_by_a_worker(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"))
    slow = fleet.add(enterprise("MEITUAN"), Knobs(latency_ms=WAIT_MS * 2.5))
    hub.register(jd)
    hub.register(slow)
    started = time.monotonic()
    result = hub.probe(a_number_with_accounts(jd))
    # the quick one did not wait for the slow one beyond the request's budget
    assert time.monotonic() - started < WAIT_MS / 1000 + 1.0
    assert result["state"] == "open"
    assert result["pending"] == ["MEITUAN"]
    assert hub.task(result, "JD")["state"] == "done"
    assert hub.task(result, "MEITUAN")["error_code"] == "timeout"
    hub.work()
    later = hub.request(result["request_id"])
    assert later["state"] == "completed"
    assert hub.task(later, "MEITUAN")["state"] == "done"
    assert hub.task(later, "MEITUAN")["attempts"] == 2


def test_a_platform_down_for_minutes_is_retried_until_it_answers(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"))
    hub.register(jd)
    jd.stop()
    result = hub.probe(a_number_with_accounts(jd))
    assert hub.task(result, "JD")["error_code"] == "unreachable"
    # down through several rounds of retries...
    hub.work(rounds=4)
    down = hub.request(result["request_id"])
    assert hub.task(down, "JD")["state"] == "pending"
    assert hub.task(down, "JD")["attempts"] == 5
    # ...then back: the next round gets the answer
    jd.start()
    hub.work()
    up = hub.request(result["request_id"])
    assert hub.task(up, "JD")["state"] == "done"
    assert up["state"] == "completed"


def test_an_asynchronous_platform_answers_by_signed_callback(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"), Knobs(async_rate=1.0, callback_delay_ms=100))
    hub.register(jd)
    number = a_number_with_accounts(jd)
    result = hub.probe(number)
    assert hub.task(result, "JD")["state"] == "awaiting_callback"
    deadline = time.monotonic() + 10
    while hub.task(hub.request(result["request_id"]), "JD")["state"] != "done":
        assert time.monotonic() < deadline, "the callback never arrived"
        time.sleep(0.05)
    done = hub.task(hub.request(result["request_id"]), "JD")
    assert done["answered_via"] == "callback"
    assert done["answer"] == {"counts": [{"app": "jd", "count": len(jd.accounts.bound_to(number))}]}


def test_a_failing_platform_is_retried_and_a_recovered_one_answers(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"), Knobs(error_rate=1.0))
    hub.register(jd)
    result = hub.probe(a_number_with_accounts(jd))
    task = hub.task(result, "JD")
    assert (task["state"], task["error_code"]) == ("pending", "http_503")
    assert "UNAVAILABLE" in task["error"]
    jd.knobs.error_rate = 0.0
    hub.work()
    assert hub.task(hub.request(result["request_id"]), "JD")["state"] == "done"


def test_malformed_answers_are_a_task_error_and_give_up_after_a_few_tries(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"), Knobs(malformed_rate=1.0))
    hub.register(jd)
    result = hub.probe(a_number_with_accounts(jd))
    assert hub.task(result, "JD")["error_code"] == "malformed_answer"
    hub.work(rounds=fanout.PERMANENT_ATTEMPTS)
    final = hub.request(result["request_id"])
    task = hub.task(final, "JD")
    assert task["state"] == "failed"
    assert task["attempts"] == fanout.PERMANENT_ATTEMPTS
    assert final["state"] == "completed"


def test_a_platform_that_does_not_trust_the_hubs_key_is_a_clear_task_error(
    hub: Hub, live_hub: str, fleet: PlatformFleet
) -> None:
    from tongcha.sdk import protocol

    stranger = protocol.key_set({"keys": [protocol.public_jwk(protocol.new_signing_key("not-the-hub"))]})
    with PlatformFleet(hub_url=live_hub, hub_keys=stranger, ledger=SynthConfig(numbers=50)) as other:
        jd = other.add(enterprise("JD"))
        hub.register(jd)
        result = hub.probe("+8613800138000")
    task = hub.task(result, "JD")
    assert task["error_code"] == "http_401"
    assert "UNAUTHENTICATED" in task["error"]


def test_a_suspended_platform_gets_no_new_tasks(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"))
    meituan = fleet.add(enterprise("MEITUAN"))
    hub.register(jd)
    hub.register(meituan)
    with hub.sessions() as session, session.begin():
        service.update(session, "MEITUAN", service.PlatformUpdate(status=PlatformStatus.suspended))
    result = hub.probe("+8613800138000")
    assert [t["platform"] for t in result["tasks"]] == ["JD"]


def test_a_resent_task_is_not_acted_on_twice(
    hub: Hub, fleet: PlatformFleet, sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    """The hub loses track of an unbind in flight (its process died); the lease runs
    out, a worker sends the same task again, and the platform does not act twice."""
    jd = fleet.add(enterprise("JD"))
    hub.register(jd)
    number = a_number_with_accounts(jd)
    bound_before = max(a.bound_at for a in jd.accounts.bound_to(number)) + timedelta(seconds=1)

    async def first_attempt_then_crash() -> str:
        with sessions() as session, session.begin():
            _, calls = fanout.open_request(
                session,
                kind=RequestKind.unbind,
                params={},
                operation=Operation.bindings_unbind,
                targets=fanout.each(
                    [service.get(session, "JD")], {"number": number, "bound_before": bound_before.isoformat()}
                ),
                now=clock.now(),
                give_up_after=timedelta(days=2),
                claim_for=timedelta(seconds=30),
            )
        dispatcher = Dispatcher(Keyring(sessions, hub.settings, clock), clock)
        outcome = await dispatcher.call(calls[0])
        await dispatcher.aclose()
        assert outcome.kind == "answered"
        return calls[0].task_id  # ...and the outcome is never recorded

    task_id = asyncio.run(first_attempt_then_crash())
    unbound_once = [c for c in jd.accounts.changes if c.task_id == task_id]
    assert len(unbound_once) == 1
    assert unbound_once[0].account_refs
    hub.work()
    with sessions() as session:
        row = session.scalars(select(PlatformTask).where(PlatformTask.task_id == task_id)).one()
        assert (row.state, row.attempts) == ("done", 2)
        assert row.answer is not None
        assert sorted(row.answer["unbound"]) == sorted(unbound_once[0].account_refs)
    assert [c for c in jd.accounts.changes if c.task_id == task_id] == unbound_once
    # the accounts were detached from the number, not deleted
    for ref in unbound_once[0].account_refs:
        assert jd.accounts.accounts[ref].number is None


def test_the_circuit_opens_after_repeated_failures_and_spares_the_platform(
    hub: Hub, fleet: PlatformFleet, sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    jd = fleet.add(enterprise("JD"), Knobs(error_rate=1.0))
    hub.register(jd)

    async def go() -> list[str]:
        dispatcher = Dispatcher(Keyring(sessions, hub.settings, clock), clock, breaker_threshold=3)
        kinds = []
        with sessions() as session, session.begin():
            _, calls = fanout.open_request(
                session,
                kind=RequestKind.probe,
                params={},
                operation=Operation.bindings_count,
                targets=fanout.each(
                    [service.get(session, "JD")] * 5,
                    {"number": "+8613800138000", "bound_from": "2000-01-01T00:00:00+08:00"},
                ),
                now=clock.now(),
                give_up_after=timedelta(days=2),
                claim_for=timedelta(seconds=30),
            )
        for call in calls:
            outcome = await dispatcher.call(call)
            kinds.append(outcome.error_code or outcome.kind)
        await dispatcher.aclose()
        return kinds

    assert asyncio.run(go()) == ["http_503", "http_503", "http_503", "circuit_open", "circuit_open"]


def test_a_list_probe_must_name_one_platform(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"))
    hub.register(jd)
    number = a_number_with_accounts(jd)
    r = httpx.post(
        f"{hub.url}/operator/v1/probes", json={"number": number, "operation": "list"}, headers=hub.operator, timeout=30
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    listed = hub.probe(number, operation="list", platforms=["JD"])
    accounts = listed["tasks"][0]["answer"]["accounts"]
    assert sorted(a["account_ref"] for a in accounts) == sorted(a.account_ref for a in jd.accounts.bound_to(number))


def test_several_workers_share_the_due_tasks_without_calling_one_twice(
    hub: Hub, fleet: PlatformFleet, sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    jd = fleet.add(enterprise("JD"), Knobs(latency_ms=(5, 30)))
    meituan = fleet.add(enterprise("MEITUAN"), Knobs(latency_ms=(5, 30)))
    hub.register(jd)
    hub.register(meituan)
    with sessions() as session, session.begin():
        for i in range(30):
            fanout.open_request(
                session,
                kind=RequestKind.probe,
                params={},
                operation=Operation.bindings_count,
                targets=fanout.each(
                    [service.get(session, "JD"), service.get(session, "MEITUAN")],
                    {"number": f"+861380000{i:04d}", "bound_from": "2000-01-01T00:00:00+08:00"},
                ),
                now=clock.now(),
                give_up_after=timedelta(days=2),
            )

    called: list[str] = []

    class Counting(Dispatcher):
        async def call(self, call: fanout.TaskCall, *, timeout_s: float | None = None) -> fanout.Outcome:
            called.append(call.task_id)
            return await super().call(call, timeout_s=timeout_s)

    def one_worker() -> None:
        async def go() -> None:
            dispatcher = Counting(Keyring(sessions, hub.settings, clock), clock)
            worker = FanoutWorker(sessions, dispatcher, clock, max_in_flight=7)
            try:
                await worker.run_until_idle()
            finally:
                await dispatcher.aclose()

        asyncio.run(go())

    threads = [threading.Thread(target=one_worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with sessions() as session:
        rows = session.execute(select(PlatformTask.state, PlatformTask.attempts)).all()
    assert len(rows) == 60
    assert set(rows) == {("done", 1)}
    # no task was called by two workers
    assert len(called) == len(set(called)) == 60


def test_a_flapping_platform_is_answered_between_its_outages(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"), Knobs(flap=(0.15, 0.15)))
    hub.register(jd)
    number = a_number_with_accounts(jd)
    results = [hub.probe(number) for _ in range(8)]  # some land in an outage
    errors = {hub.task(r, "JD")["error_code"] for r in results}
    assert errors <= {None, "unreachable", "timeout", "circuit_open"}
    deadline = time.monotonic() + 20
    while any(hub.task(hub.request(r["request_id"]), "JD")["state"] != "done" for r in results):
        assert time.monotonic() < deadline, "a flapping platform was never answered"
        hub.work()
        time.sleep(0.1)
    answers = {str(hub.task(hub.request(r["request_id"]), "JD")["answer"]) for r in results}
    assert answers == {str({"counts": [{"app": "jd", "count": len(jd.accounts.bound_to(number))}]})}


def probe_answer(hub: Hub, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{hub.url}/operator/v1/probes",
        json={"number": "+8613800138000", **body},
        headers=hub.operator,
        timeout=30,
    )


def requests_opened(hub: Hub) -> int:
    from sqlalchemy import func

    from tongcha.requests.models import Request

    with hub.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Request)) or 0)


@pytest.mark.parametrize(
    "bound_from",
    # Before 1980 the zone's offset is local mean time (+08:05:43), which a platform
    # cannot read as RFC 3339; a day after today holds no binding.
    ["1800-01-01", "1979-12-31", "2026-11-24"],
)
def test_a_probe_from_a_day_no_binding_can_be_from_is_a_400_and_opens_nothing(hub: Hub, bound_from: str) -> None:
    r = probe_answer(hub, bound_from=bound_from)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "OUT_OF_RANGE"
    assert "bound_from" in r.json()["error"]["message"]
    assert requests_opened(hub) == 0


def test_a_probe_naming_a_platform_that_does_not_exist_is_a_404_and_opens_nothing(hub: Hub) -> None:
    r = probe_answer(hub, platforms=["NOPE"])
    assert r.status_code == 404, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["message"]) == ("NOT_FOUND", "no platform 'NOPE'")
    assert requests_opened(hub) == 0


def test_a_probe_naming_a_platform_the_hub_cannot_call_says_why_and_opens_nothing(
    hub: Hub, fleet: PlatformFleet
) -> None:
    # MEITUAN is registered with no base URL; a suspended platform is not called either.
    r = probe_answer(hub, platforms=["MEITUAN"])
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "CONFLICT"
    assert "no base URL" in r.json()["error"]["message"]

    jd = fleet.add(enterprise("JD"))
    hub.register(jd)
    with hub.sessions() as session, session.begin():
        service.update(session, "JD", service.PlatformUpdate(status=PlatformStatus.suspended))
    r = probe_answer(hub, platforms=["JD"])
    assert r.status_code == 409, r.text
    assert "suspended" in r.json()["error"]["message"]
    assert requests_opened(hub) == 0


def test_a_request_whose_last_task_gives_up_is_completed(hub: Hub, fleet: PlatformFleet) -> None:
    jd = fleet.add(enterprise("JD"), Knobs(error_rate=1.0))
    hub.register(jd)
    probe = hub.probe("+8613800138000", platforms=["JD"])
    assert probe["state"] == "open"
    hub.work(advance=timedelta(hours=49))  # past the 48 hours a task is tried for
    request = hub.request(probe["request_id"])
    task = hub.task(request, "JD")
    assert (task["state"], task["error_code"]) == ("failed", "http_503")
    assert task["error"].startswith("gave up after 1 attempts")
    assert request["state"] == "completed"
    assert request["completed_at"] is not None


def test_a_task_due_later_than_the_give_up_time_is_tried_until_after_it_is_due(
    hub: Hub, fleet: PlatformFleet, sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    # An unbind is due in five working days; a platform down over a weekend must not
    # lose it after 48 hours.
    jd = fleet.add(enterprise("JD"), Knobs(error_rate=1.0))
    hub.register(jd)
    due = clock.now() + timedelta(days=7)
    with sessions() as session, session.begin():
        opened, _ = fanout.open_request(
            session,
            kind=RequestKind.unbind,
            params={},
            operation=Operation.bindings_unbind,
            targets=[
                fanout.Target(
                    service.get(session, "JD"),
                    {"number": "+8613800138000", "bound_before": "2020-01-01T00:00:00+08:00"},
                    due_by=due,
                )
            ],
            now=clock.now(),
            give_up_after=timedelta(hours=48),
        )
        request_id = opened.public_id
    hub.work(advance=timedelta(days=3))  # past 48 hours, before the due time
    task = hub.task(hub.request(request_id), "JD")
    assert (task["state"], task["error_code"]) == ("pending", "http_503")
    hub.work(advance=timedelta(days=6))  # past the due time and 48 hours more
    request = hub.request(request_id)
    assert (hub.task(request, "JD")["state"], request["state"]) == ("failed", "completed")
