"""A citizen verifies once and sees, unbinds, disputes and looks back, end to end: the hub
(the real app) calls simulated platforms (real servers on loopback, our SDK)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import bearer, serving
from tests.factories import ALICE, BOB, ev, id_number
from tests.notify.provider import Provider, provider_app
from tongcha.identity.models import CitizenSession
from tongcha.kit import jobs
from tongcha.kit.clock import FixedClock
from tongcha.kit.keys import Keyring
from tongcha.kit.phone import parse_mobile
from tongcha.kit.settings import Settings
from tongcha.notify.sms import HttpGateway
from tongcha.platforms import service as platforms
from tongcha.platforms.dispatch import Dispatcher, FanoutWorker
from tongcha.platforms.models import PlatformStatus, PlatformTask
from tongcha.requests import service
from tongcha.requests import tasks as request_tasks
from tongcha.requests.models import Request, RequestKind
from tongcha.requests.service import Ask, Citizen
from tongcha.sim.accounts import SimAccount, tenures_from_events
from tongcha.sim.platforms import PlatformFleet, SimPlatform, enterprise

SHANGHAI = ZoneInfo("Asia/Shanghai")
N = "+8613800000001"  # Alice 2015-03-01 .. 2020-06-01, then Bob from 2020-10-15
M = "+8613800000002"  # Alice since 2018-04-04
P = "+8613800000003"  # for a test's own holder
EVENTS = [
    ev("activated", N, "2015-03-01", ALICE),
    ev("cancelled", N, "2020-06-01"),
    ev("activated", N, "2020-10-15", BOB),
    ev("activated", M, "2018-04-04", ALICE),
]


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=SHANGHAI)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(env="dev", database_url=db_url, index_refresh_seconds=0.0, fanout_wait_ms=1000)


@pytest.fixture
def hub(client: TestClient, parties: dict[str, str]) -> Any:
    r = client.post("/carrier/v1/events", json=EVENTS, headers=bearer(parties["CMCC"]))
    assert r.status_code == 200 and r.json()["accepted"] == len(EVENTS), r.text
    return client.app.state.hub  # type: ignore[attr-defined]


@contextlib.contextmanager
def simulated_jd(hub: Any, hub_url: str, sessions: sessionmaker[Session], clock: FixedClock) -> Iterator[SimPlatform]:
    """JD, simulated and registered, holding three accounts on N: one Alice left behind,
    two of Bob's (one bound on the very day his tenure began)."""
    with PlatformFleet(hub_url=hub_url, hub_keys=_hub_keys(hub), tenures=tenures_from_events([])) as f:
        sim = f.add(enterprise("JD"))
        for ref, owner, bound in (
            ("a1", "王*", at("2016-01-01")),
            ("b1", "李*", at("2021-05-05")),
            ("b2", "李*", at("2020-10-15", 9)),
        ):
            sim.accounts.add(SimAccount(ref, "jd", owner, owner, N, bound.astimezone(UTC), at("2026-01-01")))
        with sessions() as session, session.begin():
            change = platforms.PlatformUpdate(base_url=sim.base_url, timeout_ms=2000)
            registered = platforms.update(session, "JD", change)
            platforms.add_app(session, registered, platforms.AppSpec("jd", "京东", "JD"))
            platforms.add_key(session, "JD", sim.public_jwk, clock.now())
        hub.platforms.forget()
        yield sim


@pytest.fixture
def jd(hub: Any, sessions: sessionmaker[Session], clock: FixedClock) -> Iterator[SimPlatform]:
    # Callbacks are not used here: the hub behind TestClient has no URL.
    with simulated_jd(hub, "http://127.0.0.1:9", sessions, clock) as sim:
        yield sim


def _hub_keys(hub: Any) -> Any:
    from tongcha.sdk import protocol

    return protocol.key_set(hub.keyring.jwks())


def verify(client: TestClient, hub: Any, person: dict[str, str], phone: str) -> dict[str, str]:
    r = client.post("/v1/verifications", json={"phone": phone, **person})
    assert r.status_code == 202, r.text
    code = last_code(hub, phone)
    r = client.post(f"/v1/verifications/{r.json()['verification_id']}/code", json={"code": code})
    assert r.status_code == 200, r.text
    return bearer(r.json()["access_token"])


def last_code(hub: Any, phone: str) -> str:
    deadline = time.monotonic() + 5
    while not hub.sms.inbox(phone):
        assert time.monotonic() < deadline, "no SMS arrived"
        time.sleep(0.02)
    text: str = hub.sms.inbox(phone)[-1].text
    found = re.search(r"(?<!\d)\d{6}(?!\d)", text)
    assert found is not None, text
    return found.group(0)


def settle(client: TestClient, token: dict[str, str], request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        body: dict[str, Any] = client.get(f"/v1/requests/{request_id}", headers=token).json()
        if body["state"] == "completed" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def work(sessions: sessionmaker[Session], settings: Settings, clock: FixedClock) -> None:
    async def go() -> None:
        dispatcher = Dispatcher(Keyring(sessions, settings, clock), clock)
        try:
            await FanoutWorker(sessions, dispatcher, clock).run_once()
        finally:
            await dispatcher.aclose()

    asyncio.run(go())
    jobs.run_due(sessions, clock)


# ----- verification ------------------------------------------------------------------


def test_matching_details_get_a_code_and_the_code_a_token(client: TestClient, hub: Any) -> None:
    token = verify(client, hub, BOB, N)
    numbers = client.get("/v1/me/numbers", headers=token).json()
    refs = [n.pop("ref") for n in numbers]
    assert numbers == [
        {"number": "+86138****0001", "carrier": "CMCC", "started_on": "2020-10-15", "ended_on": None, "current": True}
    ]
    assert refs[0] and N[3:] not in refs[0]


def test_last_six_digits_verify_too(client: TestClient, hub: Any) -> None:
    r = client.post("/v1/verifications", json={"phone": M, "id_last6": ALICE["id_number"][-6:]})
    assert r.status_code == 202
    code = last_code(hub, M)
    r = client.post(f"/v1/verifications/{r.json()['verification_id']}/code", json={"code": code})
    assert r.status_code == 200
    numbers = client.get("/v1/me/numbers", headers=bearer(r.json()["access_token"])).json()
    # Alice sees the number she holds and the one she gave up, with its tenure
    assert sorted((n["number"], n["current"]) for n in numbers) == [("+86138****0001", False), ("+86138****0002", True)]


def test_wrong_details_answer_the_same_and_no_code_is_sent(client: TestClient, hub: Any) -> None:
    """No oracle: Alice's details on Bob's number look exactly like a match from outside."""
    good = client.post("/v1/verifications", json={"phone": N, **BOB})
    last_code(hub, N)
    sent = len(hub.sms.inbox(N))
    hub.clock.advance(timedelta(minutes=2))
    bad = client.post("/v1/verifications", json={"phone": N, **ALICE})
    assert bad.status_code == good.status_code == 202
    assert set(bad.json()) == set(good.json())
    time.sleep(0.3)
    assert len(hub.sms.inbox(N)) == sent
    # and no code opens it
    r = client.post(f"/v1/verifications/{bad.json()['verification_id']}/code", json={"code": "000000"})
    assert r.status_code == 400
    assert r.json()["error"]["details"] == [{"reason": "WRONG_CODE", "tries_left": 4}]


def test_a_used_code_cannot_be_replayed(client: TestClient, hub: Any) -> None:
    r = client.post("/v1/verifications", json={"phone": N, **BOB})
    vid, code = r.json()["verification_id"], last_code(hub, N)
    assert client.post(f"/v1/verifications/{vid}/code", json={"code": code}).status_code == 200
    again = client.post(f"/v1/verifications/{vid}/code", json={"code": code})
    assert again.status_code == 400
    assert "used already" in again.json()["error"]["message"]
    assert again.json()["error"]["details"] == [{"reason": "USED"}]


def test_wrong_codes_count_down_and_then_lock(client: TestClient, hub: Any) -> None:
    r = client.post("/v1/verifications", json={"phone": N, **BOB})
    vid = r.json()["verification_id"]
    good = last_code(hub, N)
    wrong = "111111" if good != "111111" else "222222"
    left = []
    for _ in range(4):
        r = client.post(f"/v1/verifications/{vid}/code", json={"code": wrong})
        assert r.status_code == 400
        left.append(r.json()["error"]["details"][0]["tries_left"])
    assert left == [4, 3, 2, 1]
    r = client.post(f"/v1/verifications/{vid}/code", json={"code": wrong})
    assert r.status_code == 429
    # locked: even the right code no longer works
    r = client.post(f"/v1/verifications/{vid}/code", json={"code": good})
    assert r.status_code == 429


def test_an_expired_code_is_refused(client: TestClient, hub: Any, clock: FixedClock) -> None:
    r = client.post("/v1/verifications", json={"phone": N, **BOB})
    code = last_code(hub, N)
    clock.advance(timedelta(minutes=6))
    r = client.post(f"/v1/verifications/{r.json()['verification_id']}/code", json={"code": code})
    assert r.status_code == 400
    assert "expired" in r.json()["error"]["message"]
    assert r.json()["error"]["details"] == [{"reason": "EXPIRED"}]


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def test_a_code_typed_in_full_width_digits_is_the_code(client: TestClient, hub: Any) -> None:
    # A Chinese input method in full-width mode types ０-９: this was a wrong try.
    r = client.post("/v1/verifications", json={"phone": N, **BOB})
    code = last_code(hub, N).translate(FULL_WIDTH)
    r = client.post(f"/v1/verifications/{r.json()['verification_id']}/code", json={"code": code})
    assert r.status_code == 200, r.text


def test_digits_of_another_script_are_a_format_error_not_a_wrong_try(client: TestClient, hub: Any) -> None:
    r = client.post("/v1/verifications", json={"phone": N, **BOB})
    vid = r.json()["verification_id"]
    good = last_code(hub, N)
    arabic_indic = "".join(chr(0x660 + int(d)) for d in good)
    r = client.post(f"/v1/verifications/{vid}/code", json={"code": arabic_indic})
    assert r.status_code == 400
    assert r.json()["error"]["details"] == [{"reason": "FORMAT"}]
    # it spent no try: the next wrong code still has four left
    r = client.post(f"/v1/verifications/{vid}/code", json={"code": "111111" if good != "111111" else "222222"})
    assert r.json()["error"]["details"] == [{"reason": "WRONG_CODE", "tries_left": 4}]


def test_last_six_digits_in_full_width_verify_too(client: TestClient, hub: Any) -> None:
    # They were silently taken for a mismatch: no code, though the digits were right.
    last6 = ALICE["id_number"][-6:].translate(FULL_WIDTH)
    r = client.post("/v1/verifications", json={"phone": M, "id_last6": last6})
    assert r.status_code == 202, r.text
    code = last_code(hub, M)
    r = client.post(f"/v1/verifications/{r.json()['verification_id']}/code", json={"code": code})
    assert r.status_code == 200, r.text


def test_a_verification_says_how_many_seconds_its_code_lives(client: TestClient, hub: Any) -> None:
    # The page counts them on the browser's clock to outlive a reload, whatever the
    # browser's clock says about the hub's expires_at.
    r = client.post("/v1/verifications", json={"phone": N, **BOB})
    assert r.status_code == 202, r.text
    assert r.json()["expires_in"] == 300


def test_floods_of_verifications_are_429(client: TestClient, hub: Any, clock: FixedClock) -> None:
    assert client.post("/v1/verifications", json={"phone": N, **BOB}).status_code == 202
    again = client.post("/v1/verifications", json={"phone": N, **BOB})
    assert again.status_code == 429  # before resend_after
    statuses = []
    for _ in range(12):
        clock.advance(timedelta(seconds=61))
        statuses.append(client.post("/v1/verifications", json={"phone": N, **BOB}).status_code)
    assert statuses.count(202) == 9  # ten a day per number, the first included
    assert statuses[-1] == 429


def test_a_holder_verifies_with_the_dot_of_their_name_typed_as_their_keyboard_gives_it(
    client: TestClient, hub: Any, parties: dict[str, str]
) -> None:
    uyghur = {"id_number": id_number("650102", "19800101", 17), "name": "阿卜杜·热合曼"}
    r = client.post(
        "/carrier/v1/events", json=[ev("activated", P, "2019-01-01", uyghur)], headers=bearer(parties["CMCC"])
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    typed = {**uyghur, "name": "阿卜杜•热合曼"}  # U+2022, as many phone keyboards give it
    assert verify(client, hub, typed, P)


def _from(client: TestClient, address: str) -> TestClient:
    """Another caller of the same hub, from another address."""
    return TestClient(client.app, client=(address, 40000))


def test_a_stranger_asking_about_a_number_cannot_lock_its_holder_out(
    client: TestClient, hub: Any, clock: FixedClock
) -> None:
    stranger = _from(client, "203.0.113.7")
    statuses = []
    for _ in range(11):
        statuses.append(stranger.post("/v1/verifications", json={"phone": N, **ALICE}).status_code)
        clock.advance(timedelta(seconds=61))
    assert statuses == [202] * 10 + [429]  # the stranger's own ten for the day
    assert verify(client, hub, BOB, N)  # the holder, from their own phone, gets a code


def test_floods_of_matching_details_tell_nothing_and_send_ten_codes_a_day(
    client: TestClient, hub: Any, clock: FixedClock
) -> None:
    # Twelve addresses send Bob's own details, then one sends someone else's: every
    # answer is the same, so nobody learns from them whose number N is.
    before = len(hub.sms.inbox(N))
    statuses = []
    for i in range(12):
        caller = _from(client, f"198.51.100.{i + 1}")
        statuses.append(caller.post("/v1/verifications", json={"phone": N, **BOB}).status_code)
        clock.advance(timedelta(seconds=61))
    wrong = _from(client, "198.51.100.99").post("/v1/verifications", json={"phone": N, **ALICE})
    assert statuses == [202] * 12 and wrong.status_code == 202
    assert len(hub.sms.inbox(N)) - before == 10  # the phone got ten codes, not twelve


def test_a_second_code_within_the_minute_is_not_sent_to_the_phone(
    client: TestClient, hub: Any, clock: FixedClock
) -> None:
    before = len(hub.sms.inbox(N))
    first = _from(client, "198.51.100.1").post("/v1/verifications", json={"phone": N, **BOB})
    second = _from(client, "198.51.100.2").post("/v1/verifications", json={"phone": N, **BOB})
    assert first.status_code == second.status_code == 202
    assert len(hub.sms.inbox(N)) - before == 1
    clock.advance(timedelta(seconds=61))
    assert verify(client, hub, BOB, N)  # a minute on, the holder's own ask sends one
    assert len(hub.sms.inbox(N)) - before == 2


def test_bad_verification_input_is_a_400_and_never_echoes_the_id(client: TestClient, hub: Any) -> None:
    bad_id = BOB["id_number"][:-1] + ("0" if BOB["id_number"][-1] != "0" else "1")
    for body in (
        {"phone": N, "name": BOB["name"], "id_number": bad_id},
        {"phone": N, "name": BOB["name"]},
        {"phone": N, "id_last6": "12"},
        {"phone": "12345", **BOB},
    ):
        r = client.post("/v1/verifications", json=body)
        assert r.status_code == 400, (body, r.text)
        assert bad_id not in r.text and BOB["name"] not in r.text


CONTROL_ISSUE = "Value error, must not contain control characters (such as NUL, a tab or a line break)"


@pytest.mark.parametrize("name", ["李\x00娜", "李娜\n", "李\t娜", "李\x1b娜"], ids=["nul", "newline", "tab", "escape"])
def test_a_control_character_in_the_name_is_a_400_not_a_silent_mismatch(
    client: TestClient, hub: Any, name: str
) -> None:
    # These were answered 202, as a mismatch (or, with the name trimmed, a match) would be.
    sent = len(hub.sms.inbox(N))
    r = client.post("/v1/verifications", json={"phone": N, "name": name, "id_number": BOB["id_number"]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert r.json()["error"]["details"] == [{"field": "body.name", "issue": CONTROL_ISSUE}]
    assert "李" not in r.text and BOB["id_number"] not in r.text
    time.sleep(0.1)
    assert len(hub.sms.inbox(N)) == sent


def test_a_phone_with_letters_is_a_400_and_no_code_is_sent(client: TestClient, hub: Any) -> None:
    # phonenumbers read past the letters: this sent Bob's code to N.
    sent = len(hub.sms.inbox(N))
    r = client.post("/v1/verifications", json={"phone": "tel:" + N, **BOB})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert r.json()["error"]["message"].startswith("number is not a phone number")
    time.sleep(0.1)
    assert len(hub.sms.inbox(N)) == sent


def test_tampered_expired_and_revoked_tokens_are_refused(client: TestClient, hub: Any, clock: FixedClock) -> None:
    token = verify(client, hub, BOB, N)
    assert client.get("/v1/me/numbers", headers=token).status_code == 200
    tampered = {"Authorization": token["Authorization"][:-2] + "xx"}
    assert client.get("/v1/me/numbers", headers=tampered).status_code == 401
    assert client.delete("/v1/me/session", headers=token).status_code == 204
    assert client.get("/v1/me/numbers", headers=token).status_code == 401
    clock.advance(timedelta(minutes=2))
    other = verify(client, hub, BOB, N)
    clock.advance(timedelta(minutes=16))
    assert client.get("/v1/me/numbers", headers=other).status_code == 401


# ----- requests ------------------------------------------------------------------------


def test_inquiry_counts_only_my_tenure_and_the_result_comes_by_sms(
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    token = verify(client, hub, BOB, N)
    r = client.post("/v1/inquiries", json={}, headers=token)
    assert r.status_code == 202, r.text
    done = settle(client, token, r.json()["request_id"])
    assert done["state"] == "completed"
    [task] = done["platforms"]
    # b1 and b2 (bound on his first day) are Bob's; Alice's a1 is not counted
    assert task["answer"] == {"counts": [{"app": "jd", "count": 2}]}
    work(sessions, settings, clock)  # the worker sends the result SMS
    assert hub.sms.inbox(N)[-1].text == "截至11月23日，您名下尾号为0001的电话卡所注册的互联网账号如下：京东账号2个。"


@pytest.fixture
def sms_provider() -> Iterator[Provider]:
    received: list[dict[str, Any]] = []
    with serving(provider_app(received)) as url:
        yield Provider(url, received)


def test_an_inquiry_over_two_numbers_texts_each_result_once_though_the_provider_fails_once(
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    parties: dict[str, str],
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
    sms_provider: Provider,
) -> None:
    second = "+8613800000003"  # Bob's since 2021, with one JD account of his own
    r = client.post(
        "/carrier/v1/events", json=[ev("activated", second, "2021-01-01", BOB)], headers=bearer(parties["CMCC"])
    )
    assert r.status_code == 200, r.text
    jd.accounts.add(SimAccount("c1", "jd", "李*", "李*", second, at("2021-02-02").astimezone(UTC), at("2026-01-01")))
    token = verify(client, hub, BOB, N)
    r = client.post("/v1/inquiries", json={}, headers=token)
    assert settle(client, token, r.json()["request_id"])["state"] == "completed"
    # The worker texts through a provider that refuses the second message it is sent, once.
    with HttpGateway(sms_provider.endpoint("second-fails-once"), "key-123", "TONGCHA", timeout=2.0) as gateway:
        request_tasks.configure(gateway, SHANGHAI)
        try:
            work(sessions, settings, clock)
            for _ in range(3):  # the worker runs on, past the refused message's back-off
                clock.advance(timedelta(minutes=10))
                jobs.run_due(sessions, clock)
        finally:
            request_tasks.configure(hub.sms, hub.zone)
    assert [call["status"] for call in sms_provider.received] == [200, 503, 200]
    assert sms_provider.delivered() == [
        (N, "截至11月23日，您名下尾号为0001的电话卡所注册的互联网账号如下：京东账号2个。"),
        (N, "截至11月23日，您名下尾号为0003的电话卡所注册的互联网账号如下：京东账号1个。"),
    ]
    with sessions() as session:
        assert set(session.scalars(select(jobs.Job.state))) == {"done"}


def test_unbind_removes_only_what_the_previous_holder_left(
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    token = verify(client, hub, BOB, N)
    r = client.post("/v1/unbind-requests", json={"number": N}, headers=token)
    assert r.status_code == 202
    done = settle(client, token, r.json()["request_id"])
    # The citizen is told how many of the previous holder's accounts went, not which.
    assert done["platforms"][0]["answer"] == {"unbound": 1, "kept": 2}
    assert done["params"]["bound_before"] == "2020-10-15T00:00:00+08:00"
    # Alice's account still exists, without the number; Bob's are untouched
    assert jd.accounts.accounts["a1"].number is None
    assert jd.accounts.accounts["a1"].status == "active"
    assert jd.accounts.accounts["b1"].number == N
    assert jd.accounts.accounts["b2"].number == N
    work(sessions, settings, clock)
    assert r.json()["request_id"] in hub.sms.inbox(N)[-1].text


def test_unbind_keeps_what_i_bound_in_my_own_earlier_tenure_of_the_number(
    client: TestClient, hub: Any, jd: SimPlatform, parties: dict[str, str]
) -> None:
    # P was Alice's, cancelled, then activated for Alice again: nobody else ever held it.
    # The unbind of "what the previous holder left" detached her own 2016 account.
    p = "+8613800000003"
    events = [
        ev("activated", p, "2015-03-01", ALICE),
        ev("cancelled", p, "2019-01-01"),
        ev("activated", p, "2019-06-01", ALICE),
    ]
    r = client.post("/carrier/v1/events", json=events, headers=bearer(parties["CMCC"]))
    assert r.json()["accepted"] == 3, r.text
    jd.accounts.add(SimAccount("own", "jd", "张*", "张*", p, at("2016-01-01").astimezone(UTC), at("2026-01-01")))
    alice = verify(client, hub, ALICE, p)
    r = client.post("/v1/unbind-requests", json={"number": p}, headers=alice)
    assert r.status_code == 202, r.text
    done = settle(client, alice, r.json()["request_id"])
    assert done["params"]["bound_before"] == "2015-03-01T00:00:00+08:00"
    assert done["platforms"][0]["answer"] == {"unbound": 0, "kept": 1}
    assert jd.accounts.accounts["own"].number == p


def came_back() -> list[dict[str, Any]]:
    """P's events: Alice's from 2015, Bob's from 2018-01-10, Alice's again from 2021-02-01."""
    return [
        ev("activated", P, "2015-03-01", ALICE),
        ev("transferred", P, "2018-01-10", BOB),
        ev("transferred", P, "2021-02-01", ALICE),
    ]


def test_unbind_after_others_held_my_number_between_my_tenures_leaves_all_of_mine(
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    parties: dict[str, str],
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    # Alice held P, gave it to Bob, and has it back. Her unbind of the previous holders'
    # bindings used to send one bound_before (her return) and so detached her own
    # accounts from her first tenure as well.
    r = client.post("/carrier/v1/events", json=came_back(), headers=bearer(parties["CMCC"]))
    assert r.json()["accepted"] == 3, r.text
    for ref, owner, bound in (
        ("before-alice", "赵*", at("2014-06-01")),  # someone's before Alice ever held P
        ("alice-first", "张*", at("2016-01-01")),
        ("alice-last-morning", "张*", at("2018-01-10", 8)),  # the day she gave P away
        ("bob", "李*", at("2019-05-05")),
        ("alice-now", "张*", at("2022-03-03")),
    ):
        jd.accounts.add(SimAccount(ref, "jd", owner, owner, P, bound.astimezone(UTC), at("2026-01-01")))
    alice = verify(client, hub, ALICE, P)
    r = client.post("/v1/unbind-requests", json={"number": P}, headers=alice)
    assert r.status_code == 202, r.text
    request_id = r.json()["request_id"]
    deadline = time.monotonic() + 10
    while (done := client.get(f"/v1/requests/{request_id}", headers=alice).json())["state"] != "completed":
        assert time.monotonic() < deadline, done
        work(sessions, settings, clock)  # the workers unbind what the listing named
        time.sleep(0.05)
    assert done["params"]["bound_before"] == "2015-03-01T00:00:00+08:00"
    assert done["params"]["unbind_between"] == [
        {"bound_from": "2018-01-11T00:00:00+08:00", "bound_until": "2021-02-01T00:00:00+08:00"}
    ]
    still = {ref for ref, account in jd.accounts.accounts.items() if account.number == P}
    assert still == {"alice-first", "alice-last-morning", "alice-now"}
    # Unbound, not deleted.
    assert jd.accounts.accounts["bob"].status == "active"
    assert jd.accounts.accounts["before-alice"].status == "active"
    # One line for JD, a count: the listing of Bob's accounts never reaches Alice.
    assert [(t["platform"], t["state"], t["answer"]) for t in done["platforms"]] == [("JD", "done", {"unbound": 2})]
    assert "bob" not in str(done) and "李" not in str(done)
    assert done["pending"] == []


def test_detail_lists_my_accounts_masked_and_dispute_freezes_one(
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    token = verify(client, hub, BOB, N)
    r = client.post("/v1/details", json={"number": N, "platform": "JD"}, headers=token)
    detail = settle(client, token, r.json()["request_id"])
    accounts = detail["platforms"][0]["answer"]["accounts"]
    assert sorted(a["account_ref"] for a in accounts) == ["b1", "b2"]
    assert all(a["display_name_masked"].endswith("*") for a in accounts)
    r = client.post(
        "/v1/disputes", json={"number": N, "platform": "JD", "account_ref": "b1", "action": "freeze"}, headers=token
    )
    dispute = settle(client, token, r.json()["request_id"])
    assert dispute["platforms"][0]["answer"] == {"outcome": "done", "reason": None}
    assert jd.accounts.accounts["b1"].status == "frozen"
    work(sessions, settings, clock)  # one result SMS per request
    texts = [m.text for m in hub.sms.inbox(N)]
    assert any(detail["request_id"] in t for t in texts)
    assert dispute["request_id"] in texts[-1]


def test_a_dispute_can_name_only_an_account_my_details_listed_since_i_hold_the_number(
    client: TestClient, hub: Any, jd: SimPlatform
) -> None:
    token = verify(client, hub, BOB, N)
    dispute = {"number": N, "platform": "JD", "account_ref": "b1", "action": "cancel"}
    # Not listed yet: no details asked.
    r = client.post("/v1/disputes", json=dispute, headers=token)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "PERMISSION_DENIED"
    r = client.post("/v1/details", json={"number": N, "platform": "JD"}, headers=token)
    listed = {
        a["account_ref"] for a in settle(client, token, r.json()["request_id"])["platforms"][0]["answer"]["accounts"]
    }
    # The previous holder's accounts on the number are never listed to Bob, so never disputable.
    left_by_alice = [ref for ref, account in jd.accounts.accounts.items() if account.number == N and ref not in listed]
    assert left_by_alice, "the fixture leaves the previous holder an account on the number"
    for ref in left_by_alice:
        r = client.post("/v1/disputes", json={**dispute, "account_ref": ref}, headers=token)
        assert r.status_code == 403, r.text
        assert jd.accounts.accounts[ref].status != "cancelled"
    r = client.post("/v1/disputes", json=dispute, headers=token)
    assert r.status_code == 202, r.text


def test_history_looks_only_inside_my_old_tenure(
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    token = verify(client, hub, ALICE, M)
    r = client.post("/v1/history-inquiries", json={"number": N}, headers=token)
    assert r.status_code == 202, r.text
    done = settle(client, token, r.json()["request_id"])
    assert done["params"]["bound_until"] == "2020-06-01T00:00:00+08:00"
    assert done["platforms"][0]["answer"] == {"counts": [{"app": "jd", "count": 1}]}
    work(sessions, settings, clock)  # the result goes to the phone Alice verified with
    assert done["request_id"] in hub.sms.inbox(M)[-1].text


@pytest.mark.parametrize("account_ref", ["b\x001", "b\n1", "b1\r", "b\x1b1"], ids=["nul", "newline", "cr", "escape"])
def test_a_control_character_in_a_disputes_account_ref_is_a_400_and_nothing_is_asked(
    client: TestClient, hub: Any, jd: SimPlatform, account_ref: str
) -> None:
    # These were stored in the request (a NUL too: its params are JSON) and sent to JD.
    bob = verify(client, hub, BOB, N)
    body = {"number": N, "platform": "JD", "account_ref": account_ref, "action": "freeze"}
    r = client.post("/v1/disputes", json=body, headers=bob)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert r.json()["error"]["details"] == [{"field": "body.account_ref", "issue": CONTROL_ISSUE}]
    assert client.get("/v1/requests", headers=bob).json() == []
    assert jd.accounts.accounts["b1"].status != "frozen"


def test_a_request_about_a_number_with_letters_is_a_400(client: TestClient, hub: Any, jd: SimPlatform) -> None:
    # phonenumbers read past the letters: this opened a request about N.
    bob = verify(client, hub, BOB, N)
    r = client.post("/v1/unbind-requests", json={"number": "abc" + N[1:]}, headers=bob)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert r.json()["error"]["message"].startswith("number is not a phone number")
    assert client.get("/v1/requests", headers=bob).json() == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/details", {"number": N, "platform": "J" * 100_000}, "body.platform"),
        ("/v1/details", {"number": N, "platform": ""}, "body.platform"),
        ("/v1/disputes", {"number": N, "platform": "J" * 33, "account_ref": "b1", "action": "freeze"}, "body.platform"),
        ("/v1/unbind-requests", {"number": N, "platforms": ["JD", "J" * 100_000]}, "body.platforms.1"),
        ("/v1/unbind-requests", {"number": N, "platforms": []}, "body.platforms"),
    ],
    ids=["long", "empty", "dispute", "one of several", "none"],
)
def test_a_platform_code_no_platform_can_have_is_a_400_that_does_not_echo_it(
    client: TestClient, hub: Any, jd: SimPlatform, path: str, body: dict[str, Any], field: str
) -> None:
    # A code of any length was looked up and echoed whole in a 404 ("no platform 'JJJ…'
    # takes requests"), 100 kB of it; no platforms at all said "no platform takes requests yet".
    bob = verify(client, hub, BOB, N)
    r = client.post(path, json=body, headers=bob)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]
    assert len(r.content) < 500
    assert client.get("/v1/requests", headers=bob).json() == []


def test_a_citizen_acts_only_on_numbers_they_hold(client: TestClient, hub: Any, jd: SimPlatform) -> None:
    bob = verify(client, hub, BOB, N)
    for path, body in (
        ("/v1/unbind-requests", {"number": M}),
        ("/v1/details", {"number": M, "platform": "JD"}),
        ("/v1/history-inquiries", {"number": M}),
        ("/v1/history-inquiries", {"number": N}),  # he holds N now; he never held it before
    ):
        r = client.post(path, json=body, headers=bob)
        assert r.status_code == 403, (path, body, r.text)
        assert r.json()["error"]["code"] == "PERMISSION_DENIED"


def test_a_request_may_name_a_number_by_its_ref_from_my_numbers(client: TestClient, hub: Any, jd: SimPlatform) -> None:
    alice = verify(client, hub, ALICE, M)
    mine = client.get("/v1/me/numbers", headers=alice).json()
    assert {n["number"] for n in mine} == {"+86138****0001", "+86138****0002"}
    refs = {n["number"]: n["ref"] for n in mine}
    assert all(N[3:] not in ref and M[3:] not in ref for ref in refs.values())
    # her former number N, named by its ref: the history of her own tenure
    r = client.post("/v1/history-inquiries", json={"number_ref": refs["+86138****0001"]}, headers=alice)
    assert r.status_code == 202, r.text
    done = settle(client, alice, r.json()["request_id"])
    assert done["params"]["number"] == N and done["params"]["bound_until"] == "2020-06-01T00:00:00+08:00"
    # the same rules as with the number spelled out: N is not hers now
    r = client.post("/v1/unbind-requests", json={"number_ref": refs["+86138****0001"]}, headers=alice)
    assert r.status_code == 403, r.text
    r = client.post("/v1/details", json={"number_ref": refs["+86138****0002"], "platform": "JD"}, headers=alice)
    assert r.status_code == 202, r.text
    assert settle(client, alice, r.json()["request_id"])["params"]["number"] == M

    # Bob holds N now, but Alice's ref for her old tenure of N means nothing to him
    bob = verify(client, hub, BOB, N)
    (his,) = client.get("/v1/me/numbers", headers=bob).json()
    assert his["ref"] != refs["+86138****0001"]
    r = client.post("/v1/unbind-requests", json={"number_ref": refs["+86138****0001"]}, headers=bob)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "NOT_FOUND"


def test_history_by_ref_looks_at_the_tenure_the_ref_names(
    client: TestClient, hub: Any, jd: SimPlatform, parties: dict[str, str]
) -> None:
    # Alice held P twice before (Bob in between): the ref of her first tenure asked about
    # her second, the latest one she gave up, whichever row of My numbers she chose.
    p = "+8613800000004"
    events = [
        ev("activated", p, "2010-01-01", ALICE),
        ev("cancelled", p, "2012-01-01"),
        ev("activated", p, "2012-06-01", BOB),
        ev("cancelled", p, "2014-01-01"),
        ev("activated", p, "2014-06-01", ALICE),
        ev("cancelled", p, "2019-01-01"),
    ]
    r = client.post("/carrier/v1/events", json=events, headers=bearer(parties["CMCC"]))
    assert r.json()["accepted"] == len(events), r.text
    alice = verify(client, hub, ALICE, M)
    rows = {n["started_on"]: n["ref"] for n in client.get("/v1/me/numbers", headers=alice).json()}
    windows = []
    for started in ("2010-01-01", "2014-06-01"):
        r = client.post("/v1/history-inquiries", json={"number_ref": rows[started]}, headers=alice)
        assert r.status_code == 202, r.text
        params = client.get(f"/v1/requests/{r.json()['request_id']}", headers=alice).json()["params"]
        windows.append((params["bound_from"][:10], params["bound_until"][:10]))
    assert windows == [("2010-01-01", "2012-01-01"), ("2014-06-01", "2019-01-01")]
    # the number spelled out still means the latest tenure she gave up
    r = client.post("/v1/history-inquiries", json={"number": p}, headers=alice)
    params = client.get(f"/v1/requests/{r.json()['request_id']}", headers=alice).json()["params"]
    assert params["bound_from"][:10] == "2014-06-01"


@pytest.mark.parametrize(
    "body",
    [{}, {"number": N, "number_ref": "x"}, {"number_ref": "x" * 101}],
    ids=["neither", "both", "too long"],
)
def test_a_request_names_its_number_exactly_once(
    client: TestClient, hub: Any, jd: SimPlatform, body: dict[str, str]
) -> None:
    bob = verify(client, hub, BOB, N)
    r = client.post("/v1/unbind-requests", json=body, headers=bob)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_one_holders_token_never_reads_anothers_requests(client: TestClient, hub: Any, jd: SimPlatform) -> None:
    bob = verify(client, hub, BOB, N)
    alice = verify(client, hub, ALICE, M)
    r = client.post("/v1/inquiries", json={}, headers=bob)
    request_id = r.json()["request_id"]
    assert client.get(f"/v1/requests/{request_id}", headers=alice).status_code == 404
    assert [x["request_id"] for x in client.get("/v1/requests", headers=alice).json()] == []
    assert [x["request_id"] for x in client.get("/v1/requests", headers=bob).json()] == [request_id]


def test_a_nul_in_a_request_id_is_a_400(client: TestClient, hub: Any) -> None:
    # PostgreSQL refuses a NUL in the lookup: this answered 500 there.
    r = client.get("/v1/requests/r_a%00b", headers=verify(client, hub, BOB, N))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"


# Every kind of request: who asks, through which phone, and when it falls due if made
# on 2025-09-30, the day before the National Day week (Oct 1-8 are holidays and
# Saturday Oct 11 is a working day).
KINDS = [
    pytest.param(BOB, N, "/v1/inquiries", {}, date(2025, 10, 10), id="inquiry"),
    pytest.param(BOB, N, "/v1/details", {"number": N, "platform": "JD"}, date(2025, 10, 10), id="detail"),
    pytest.param(BOB, N, "/v1/unbind-requests", {"number": N}, date(2025, 10, 14), id="unbind"),
    pytest.param(
        BOB,
        N,
        "/v1/disputes",
        {"number": N, "platform": "JD", "account_ref": "b1", "action": "freeze"},
        date(2025, 10, 14),
        id="dispute",
    ),
    pytest.param(ALICE, M, "/v1/history-inquiries", {"number": N}, date(2025, 10, 10), id="history"),
]


def ready_for(client: TestClient, token: dict[str, str], path: str) -> None:
    """A dispute names an account from the citizen's own details: ask for them first."""
    if path == "/v1/disputes":
        r = client.post("/v1/details", json={"number": N, "platform": "JD"}, headers=token)
        assert settle(client, token, r.json()["request_id"])["state"] == "completed"


@pytest.mark.parametrize(("person", "phone", "path", "body", "due_on"), KINDS)
def test_due_dates_are_working_days_across_a_holiday(
    person: dict[str, str],
    phone: str,
    path: str,
    body: dict[str, Any],
    due_on: date,
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    clock: FixedClock,
) -> None:
    token = verify(client, hub, person, phone)
    ready_for(client, token, path)
    clock.set(at("2025-09-30", 10).astimezone(UTC))
    r = client.post(path, json=body, headers=token)
    assert r.status_code == 202, r.text
    due = datetime.fromisoformat(r.json()["due_by"]).astimezone(SHANGHAI)
    assert due.date() == due_on
    assert due.hour == 23


@pytest.mark.parametrize(("person", "phone", "path", "body", "due_on"), KINDS)
def test_a_platform_that_misses_its_due_time_is_marked_overdue(
    person: dict[str, str],
    phone: str,
    path: str,
    body: dict[str, Any],
    due_on: date,
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    token = verify(client, hub, person, phone)
    ready_for(client, token, path)
    jd.knobs.error_rate = 1.0
    r = client.post(path, json=body, headers=token)
    request_id = r.json()["request_id"]
    due = datetime.fromisoformat(r.json()["due_by"])
    time.sleep(1.0)  # the first call fails (503) and is left to the workers
    work(sessions, settings, clock)  # not due yet: retried, not overdue
    assert client.get(f"/v1/requests/{request_id}", headers=token).json()["overdue"] == []
    clock.advance(due - clock.now() + timedelta(hours=1))
    work(sessions, settings, clock)
    fresh = verify(client, hub, person, phone)
    body = client.get(f"/v1/requests/{request_id}", headers=fresh).json()
    assert body["state"] == "open"  # still tried: a task gives up only 48 hours after it is due
    assert body["overdue"] == ["JD"]
    assert body["platforms"][0]["overdue"] is True
    clock.advance(timedelta(hours=48))
    work(sessions, settings, clock)
    fresh = verify(client, hub, person, phone)
    body = client.get(f"/v1/requests/{request_id}", headers=fresh).json()
    assert body["state"] == "completed"
    assert body["overdue"] == ["JD"]


def test_a_unified_enterprise_is_one_count_that_names_its_apps(
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    with PlatformFleet(hub_url="http://127.0.0.1:9", hub_keys=_hub_keys(hub), tenures=tenures_from_events([])) as f:
        baidu = f.add(enterprise("BAIDU"))
        baidu.accounts.add(
            SimAccount("d1", "BAIDU", "李*", "李*", N, at("2022-02-02").astimezone(UTC), at("2026-01-01"))
        )
        with sessions() as session, session.begin():
            platforms.seed(session, clock.now())
            platforms.update(session, "BAIDU", platforms.PlatformUpdate(base_url=baidu.base_url))
            platforms.add_key(session, "BAIDU", baidu.public_jwk, clock.now())
        hub.platforms.forget()
        token = verify(client, hub, BOB, N)
        r = client.post("/v1/inquiries", json={}, headers=token)
        done = settle(client, token, r.json()["request_id"])
        by_platform = {t["platform"]: t["answer"] for t in done["platforms"]}
        assert by_platform["BAIDU"] == {"counts": [{"app": "BAIDU", "count": 1}]}
        work(sessions, settings, clock)
    assert hub.sms.inbox(N)[-1].text == (
        "截至11月23日，您名下尾号为0001的电话卡所注册的互联网账号如下：百度（百度网盘、百度贴吧）账号1个、京东账号2个。"
    )


def test_result_sms_names_a_unified_enterprises_apps_only_when_it_has_several(
    sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    from tongcha.requests.tasks import _app_names

    with sessions() as session, session.begin():
        platforms.seed(session, clock.now())
        names = _app_names(session)
        baidu, xiaomi = platforms.get(session, "BAIDU"), platforms.get(session, "XIAOMI")
        assert names[(baidu.id, "BAIDU")] == "百度（百度网盘、百度贴吧）"
        assert names[(xiaomi.id, "XIAOMI")] == "小米"
        assert names[(platforms.get(session, "ALIBABA").id, "xianyu")] == "闲鱼"


# ----- the same request twice ----------------------------------------------------------


def count_requests(sessions: sessionmaker[Session], kind: str) -> tuple[int, int]:
    """How many requests of this kind there are, and how many platform tasks they have."""
    with sessions() as session:
        requests = session.scalars(select(Request).where(Request.kind == kind)).all()
        tasks = session.scalars(select(PlatformTask).where(PlatformTask.request_id.in_([r.id for r in requests])))
        return len(requests), len(tasks.all())


def test_the_same_dispute_again_while_the_first_is_open_answers_with_the_first(
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    # 25 identical disputes in a row were 25 requests, each with its platform task and SMS.
    token = verify(client, hub, BOB, N)
    r = client.post("/v1/details", json={"number": N, "platform": "JD"}, headers=token)
    settle(client, token, r.json()["request_id"])
    jd.knobs.error_rate = 1.0  # JD is down: the dispute stays open
    dispute = {"number": N, "platform": "JD", "account_ref": "b1", "action": "freeze"}
    answers = [client.post("/v1/disputes", json=dispute, headers=token) for _ in range(25)]
    assert {a.status_code for a in answers} == {202}
    assert len({(a.json()["request_id"], a.json()["due_by"]) for a in answers}) == 1
    assert set(answers[0].json()) == {"request_id", "due_by"}
    assert count_requests(sessions, "dispute") == (1, 1)
    # another action on the account is another request
    r = client.post("/v1/disputes", json={**dispute, "action": "cancel"}, headers=token)
    assert r.status_code == 202 and r.json()["request_id"] != answers[0].json()["request_id"]
    assert count_requests(sessions, "dispute") == (2, 2)
    # once the first is done, the same dispute may be asked again
    jd.knobs.error_rate = 0.0
    clock.advance(timedelta(minutes=5))
    work(sessions, settings, clock)
    first = client.get(f"/v1/requests/{answers[0].json()['request_id']}", headers=token).json()
    assert first["state"] == "completed"
    r = client.post("/v1/disputes", json=dispute, headers=token)
    assert r.status_code == 202 and r.json()["request_id"] != answers[0].json()["request_id"]


def test_the_same_unbind_again_while_the_first_is_open_answers_with_the_first(
    client: TestClient, hub: Any, jd: SimPlatform, sessions: sessionmaker[Session]
) -> None:
    token = verify(client, hub, BOB, N)
    jd.knobs.error_rate = 1.0
    bodies = [{"number": N}, {"number": N}, {"number": N, "platforms": ["JD"]}]
    ids = {client.post("/v1/unbind-requests", json=body, headers=token).json()["request_id"] for body in bodies}
    assert len(ids) == 1
    assert count_requests(sessions, "unbind") == (1, 1)
    # another holder's identical request is theirs, not Bob's
    alice = verify(client, hub, ALICE, M)
    r = client.post("/v1/unbind-requests", json={"number": M}, headers=alice)
    assert r.status_code == 202 and r.json()["request_id"] not in ids


def test_two_identical_requests_at_once_open_one(
    client: TestClient, hub: Any, jd: SimPlatform, sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    verify(client, hub, BOB, N)
    with sessions() as session:
        signed_in = session.scalars(select(CitizenSession)).one()
    citizen = Citizen(signed_in.holder_digest, signed_in.number, signed_in.id)
    callees = list(hub.platforms.callees())

    def open_unbind(session: Session) -> tuple[str, int]:
        request, calls = service.open_citizen_request(
            session,
            citizen=citizen,
            ask=Ask(RequestKind.unbind, number=parse_mobile(N)),
            callees=callees,
            calendar=hub.calendar,
            zone=hub.zone,
            now=clock.now(),
            claim_for=None,
            give_up_after=timedelta(hours=48),
        )
        return request.public_id, len(calls)

    second: list[tuple[str, int]] = []

    def post_again() -> None:
        with sessions() as session, session.begin():
            second.append(open_unbind(session))

    with sessions() as session, session.begin():
        first = open_unbind(session)
        racer = threading.Thread(target=post_again)
        racer.start()
        racer.join(0.5)
        assert racer.is_alive()  # it waits for the first to commit...
    racer.join(10)
    assert second == [(first[0], 0)]  # ...then finds it, and calls no platform
    assert count_requests(sessions, "unbind") == (1, 1)


def task_states(client: TestClient, token: dict[str, str], request_id: str) -> dict[str, str]:
    body = client.get(f"/v1/requests/{request_id}", headers=token).json()
    return {task["platform"]: task["state"] for task in body["platforms"]}


@pytest.mark.parametrize("suspended", [False, True], ids=["down", "suspended"])
def test_an_inquiry_result_sms_says_how_many_platforms_could_not_answer(
    suspended: bool,
    client: TestClient,
    hub: Any,
    jd: SimPlatform,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    # The SMS listed JD's count and said nothing of Meituan, which never answered: its
    # silence read as "no accounts there".
    with sessions() as session, session.begin():
        platforms.update(session, "MEITUAN", platforms.PlatformUpdate(base_url="http://127.0.0.1:9", timeout_ms=500))
    hub.platforms.forget()
    token = verify(client, hub, BOB, N)
    r = client.post("/v1/inquiries", json={}, headers=token)
    request_id = r.json()["request_id"]
    if suspended:
        with sessions() as session, session.begin():
            platforms.update(session, "MEITUAN", platforms.PlatformUpdate(status=PlatformStatus.suspended))
    deadline = time.monotonic() + 10
    while task_states(client, token, request_id)["JD"] != "done":
        assert time.monotonic() < deadline, "JD did not answer"
        time.sleep(0.05)
    clock.advance(timedelta(days=10))  # past Meituan's due time and the 48 hours after it
    work(sessions, settings, clock)
    assert hub.sms.inbox(N)[-1].text == (
        "截至12月3日，您名下尾号为0001的电话卡所注册的互联网账号如下：京东账号2个。另有1家平台未能答复。"
    )
