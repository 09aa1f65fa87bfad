"""A citizen walks the pages in a real browser (Debian's Chromium, driven by Playwright):
the hub is a real server on loopback, JD a simulated platform with known accounts, and
the codes and results arrive on the on-screen phone."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import bearer, serving
from tests.factories import ALICE, BOB, ev
from tests.requests.test_citizen_requests import EVENTS, M, N, P, came_back, simulated_jd, work
from tests.web.test_browser import CHROMIUM
from tongcha.kit import jobs
from tongcha.kit.clock import FixedClock
from tongcha.kit.settings import Settings
from tongcha.sim.accounts import SimAccount
from tongcha.sim.platforms import SimPlatform
from tongcha.web.app import create_app


@dataclass
class LiveHub:
    url: str
    state: Any  # the app's HubState
    carrier: str  # CMCC's credential


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(env="dev", database_url=db_url, index_refresh_seconds=0.0, fanout_wait_ms=1000)


@pytest.fixture
def hub(settings: Settings, clock: FixedClock, engine: Engine, parties: dict[str, str]) -> Iterator[LiveHub]:
    """The real app on a free port, with the ledger of N and M loaded by its carrier."""
    app = create_app(settings, clock, engine)
    with serving(app) as url:
        r = httpx.post(f"{url}/carrier/v1/events", json=EVENTS, headers=bearer(parties["CMCC"]))
        assert r.status_code == 200 and r.json()["accepted"] == len(EVENTS), r.text
        yield LiveHub(url, app.state.hub, parties["CMCC"])


@pytest.fixture
def jd(hub: LiveHub, sessions: sessionmaker[Session], clock: FixedClock) -> Iterator[SimPlatform]:
    with simulated_jd(hub.state, hub.url, sessions, clock) as sim:
        yield sim


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A tab that fails the test on a script error or a refused load (the CSP)."""
    page = browser.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []

    def logged(message: ConsoleMessage) -> None:
        # A refused API call logs "Failed to load resource"; the page explains those.
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", logged)
    yield page
    page.close()
    assert errors == []


def code_from_the_phone(page: Page, before: int) -> str:
    """Wait for a message newer than the ``before`` the phone panel showed; read its code."""
    messages = page.get_by_test_id("inbox-message")
    expect(messages).to_have_count(before + 1)
    text = messages.first.locator("p").inner_text()
    found = re.search(r"(?<!\d)\d{6}(?!\d)", text)
    assert found is not None, text
    return found.group(0)


def open_request(page: Page, button: str) -> None:
    page.get_by_test_id(button).first.click()
    page.wait_for_url(re.compile(r"/me/requests/r_"))
    expect(page.get_by_test_id("request-state")).to_have_attribute("data-state", "completed")


def stored(page: Page) -> str:
    return str(page.evaluate("() => JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])"))


def test_the_current_holder_verifies_asks_and_unbinds_what_the_previous_holder_left(
    hub: LiveHub, jd: SimPlatform, page: Page, sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    page.goto(hub.url + "/")
    page.get_by_test_id("citizen-link").click()
    page.wait_for_url(hub.url + "/me")

    # details, then the code from the on-screen phone (a wrong one first)
    before = len(hub.state.sms.inbox(N))
    page.get_by_test_id("verify-phone").fill(N)
    page.get_by_test_id("verify-name").fill(BOB["name"])
    page.get_by_test_id("verify-id").fill(BOB["id_number"])
    page.get_by_test_id("verify-submit").click()
    expect(page.get_by_test_id("code-form")).to_be_visible()
    code = code_from_the_phone(page, before)
    # the details are gone from the form as soon as they were sent
    assert page.get_by_test_id("verify-name").input_value() == ""
    assert page.get_by_test_id("verify-id").input_value() == ""
    wrong = "000000" if code != "000000" else "111111"
    page.get_by_test_id("code-input").fill(wrong)
    page.get_by_test_id("code-submit").click()
    expect(page.get_by_test_id("message")).to_contain_text("Wrong code: 4 tries left")
    page.get_by_test_id("code-input").fill(code)
    page.get_by_test_id("code-submit").click()
    page.wait_for_url(hub.url + "/me/numbers")

    # my numbers: the one I hold, masked
    rows = page.get_by_test_id("number-row")
    expect(rows).to_have_count(1)
    expect(rows.get_by_test_id("number")).to_have_text("+86138****0001")
    expect(rows.get_by_test_id("number-current")).to_be_visible()

    # inquiry: counted from the start of my tenure, so Alice's a1 is not mine
    open_request(page, "inquiry-button")
    count = page.get_by_test_id("result-count")
    expect(count).to_have_attribute("data-app", "jd")
    expect(count).to_have_attribute("data-count", "2")
    expect(count).to_contain_text("京东")
    expect(page.get_by_test_id("request-due")).to_contain_text("北京时间")
    # the result SMS goes out from the worker, and the phone shows it
    assert jobs.run_due(sessions, clock) >= 1
    expect(page.get_by_test_id("inbox-message").first).to_contain_text("京东账号2个")

    # detail at JD, then a dispute: freeze one of the accounts listed
    page.get_by_test_id("nav-numbers").click()
    page.get_by_test_id("detail-platform").select_option("JD")
    open_request(page, "detail-button")
    accounts = page.get_by_test_id("account-row")
    expect(accounts).to_have_count(2)
    b1 = page.locator("[data-testid=account-row][data-account-ref=b1]")
    expect(b1.get_by_test_id("account-name")).to_have_text("李*")
    b1.get_by_test_id("dispute-action").select_option("freeze")
    open_request(page, "dispute-button")
    expect(page.get_by_test_id("result-outcome")).to_have_attribute("data-outcome", "done")
    assert jd.accounts.accounts["b1"].status == "frozen"

    # unbind: what the previous holder left goes, mine stay
    page.get_by_test_id("nav-numbers").click()
    open_request(page, "unbind-button")
    expect(page.get_by_test_id("result-unbound")).to_have_text("1")  # a count, not the previous holder's refs
    expect(page.get_by_test_id("result-kept")).to_have_text("2")
    assert jd.accounts.accounts["a1"].number is None

    # every request is listed, newest first
    page.get_by_test_id("nav-requests").click()
    expect(page.get_by_test_id("request-row")).to_have_count(4)
    expect(page.get_by_test_id("request-row").first).to_contain_text("一键解绑")

    # nothing personal was kept in the browser or shown in an address
    kept = stored(page)
    assert BOB["name"] not in kept and BOB["id_number"] not in kept
    assert json.loads(kept)[1] == []  # localStorage untouched

    page.get_by_test_id("signout").click()
    page.wait_for_url(hub.url + "/me")
    assert "tongcha.token" not in stored(page)
    page.goto(hub.url + "/me/numbers")
    expect(page.get_by_test_id("message")).to_contain_text("Verify who you are first")


def test_the_verify_page_shows_one_step_at_a_time(hub: LiveHub, page: Page) -> None:
    # Both forms showed at once: the stylesheet's display rule for forms won over the
    # hidden attribute, so a code box and "Start again" stood there before any code was
    # asked for, and the details form stayed up under the code.
    page.goto(hub.url + "/me")
    expect(page.get_by_test_id("verify-form")).to_be_visible()
    expect(page.get_by_test_id("code-form")).to_be_hidden()
    expect(page.get_by_test_id("verify-last6")).to_be_hidden()
    page.get_by_test_id("verify-phone").fill(N)
    page.get_by_test_id("verify-name").fill(BOB["name"])
    page.get_by_test_id("verify-id").fill(BOB["id_number"])
    page.get_by_test_id("verify-submit").click()
    expect(page.get_by_test_id("code-form")).to_be_visible()
    expect(page.get_by_test_id("verify-form")).to_be_hidden()
    page.get_by_test_id("verify-restart").click()
    expect(page.get_by_test_id("verify-form")).to_be_visible()
    expect(page.get_by_test_id("code-form")).to_be_hidden()


def send_details(page: Page) -> None:
    page.get_by_test_id("verify-phone").fill(N)
    page.get_by_test_id("verify-name").fill(BOB["name"])
    page.get_by_test_id("verify-id").fill(BOB["id_number"])
    page.get_by_test_id("verify-submit").click()
    expect(page.get_by_test_id("code-form")).to_be_visible()


def test_a_reload_between_the_two_steps_returns_to_the_code_already_sent(hub: LiveHub, page: Page) -> None:
    # A reload lost the verification's id: the citizen had to ask again, was told to
    # wait a minute, and the code on the phone could no longer be used.
    page.goto(hub.url + "/me")
    before = len(hub.state.sms.inbox(N))
    send_details(page)
    code = code_from_the_phone(page, before)
    page.reload()
    expect(page.get_by_test_id("code-form")).to_be_visible()
    expect(page.get_by_test_id("verify-form")).to_be_hidden()
    expect(page.get_by_test_id("code-sent")).to_contain_text("+86138****0001")
    kept = stored(page)
    assert BOB["name"] not in kept and BOB["id_number"] not in kept
    page.get_by_test_id("code-input").fill(code)
    page.get_by_test_id("code-submit").click()
    page.wait_for_url(hub.url + "/me/numbers")
    expect(page.get_by_test_id("number-row")).to_have_count(1)
    assert "tongcha.verification" not in stored(page)
    # signed in, the verify page no longer asks for that code
    page.goto(hub.url + "/me")
    expect(page.get_by_test_id("signed-in-number")).to_have_text("+86138****0001")
    expect(page.get_by_test_id("code-form")).to_be_hidden()


def test_start_again_and_expiry_forget_the_verification_waiting_for_its_code(
    hub: LiveHub, page: Page, clock: FixedClock
) -> None:
    page.goto(hub.url + "/me")
    send_details(page)
    page.get_by_test_id("verify-restart").click()
    page.reload()
    expect(page.get_by_test_id("verify-form")).to_be_visible()
    expect(page.get_by_test_id("code-form")).to_be_hidden()

    clock.advance(timedelta(seconds=61))  # another code only after a minute
    send_details(page)
    # five minutes later on the browser's own clock (the hub's need not agree with it)
    page.clock.set_system_time(datetime.now(UTC) + timedelta(minutes=5, seconds=1))
    page.reload()
    expect(page.get_by_test_id("verify-form")).to_be_visible()
    expect(page.get_by_test_id("code-form")).to_be_hidden()
    expect(page.get_by_test_id("message")).to_contain_text("The code has expired")
    assert "tongcha.verification" not in stored(page)


def test_the_previous_holder_verifies_with_six_digits_and_looks_back_at_a_former_number(
    hub: LiveHub, jd: SimPlatform, page: Page
) -> None:
    page.goto(hub.url + "/me")
    before = len(hub.state.sms.inbox(M))
    page.get_by_test_id("verify-phone").fill(M[3:])  # eleven digits do too
    page.get_by_test_id("verify-mode-tail").check()
    page.get_by_test_id("verify-last6").fill(ALICE["id_number"][-6:])
    page.get_by_test_id("verify-submit").click()
    page.get_by_test_id("code-input").fill(code_from_the_phone(page, before))
    page.get_by_test_id("code-submit").click()
    page.wait_for_url(hub.url + "/me/numbers")

    former = page.locator("[data-testid=number-row][data-current=false]")
    expect(former.get_by_test_id("number")).to_have_text("+86138****0001")
    expect(page.locator("[data-testid=number-row][data-current=true]")).to_have_count(1)
    # the former number stays masked and she need not type it: the row names it by its ref
    expect(former.locator("input")).to_have_count(0)
    open_request(page, "history-button")
    expect(page.get_by_test_id("request-number")).to_have_text("+86138****0001")
    # only what was bound inside her old tenure: a1
    expect(page.get_by_test_id("result-count")).to_have_attribute("data-count", "1")


def verify_on_the_page(page: Page, hub: LiveHub, person: dict[str, str], phone: str) -> None:
    """Verify with name and ID number, the code read off the on-screen phone."""
    page.goto(hub.url + "/me")
    before = len(hub.state.sms.inbox(phone))
    page.get_by_test_id("verify-phone").fill(phone)
    page.get_by_test_id("verify-name").fill(person["name"])
    page.get_by_test_id("verify-id").fill(person["id_number"])
    page.get_by_test_id("verify-submit").click()
    page.get_by_test_id("code-input").fill(code_from_the_phone(page, before))
    page.get_by_test_id("code-submit").click()
    page.wait_for_url(hub.url + "/me/numbers")


def test_acting_on_a_number_one_does_not_hold_shows_why(hub: LiveHub, jd: SimPlatform, page: Page) -> None:
    verify_on_the_page(page, hub, BOB, N)
    expect(page.get_by_test_id("number-row")).to_have_count(1)
    # the ledger moves on while the page is open: the number is cancelled
    r = httpx.post(f"{hub.url}/carrier/v1/events", json=[ev("cancelled", N, "2026-11-20")], headers=bearer(hub.carrier))
    assert r.status_code == 200, r.text
    page.get_by_test_id("unbind-button").click()
    expect(page.get_by_test_id("message")).to_contain_text("You can act only on numbers you hold")
    assert page.url == hub.url + "/me/numbers"


def test_a_holder_who_came_back_unbinds_what_others_left_in_between_and_sees_a_count(
    hub: LiveHub,
    jd: SimPlatform,
    page: Page,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
) -> None:
    # P: Alice's, then Bob's, then Alice's again. JD holds one account of each stretch.
    r = httpx.post(f"{hub.url}/carrier/v1/events", json=came_back(), headers=bearer(hub.carrier))
    assert r.json()["accepted"] == 3, r.text
    for ref, owner, bound in (
        ("alice-first", "张*", "2016-01-01"),
        ("bob", "李*", "2019-05-05"),
        ("alice-now", "张*", "2022-03-03"),
    ):
        moment = datetime.fromisoformat(f"{bound}T12:00:00+08:00").astimezone(UTC)
        jd.accounts.add(SimAccount(ref, "jd", owner, owner, P, moment, moment))
    verify_on_the_page(page, hub, ALICE, P)
    row = page.locator("[data-testid=number-row][data-current=true]").filter(has_text="****0003")
    row.get_by_test_id("unbind-button").click()
    page.wait_for_url(re.compile(r"/me/requests/r_"))
    # The listing answers at once; the workers then unbind what it named.
    state = page.get_by_test_id("request-state")
    for _ in range(100):
        if state.get_attribute("data-state") == "completed":
            break
        # On a thread of its own: Playwright's loop runs on this one.
        worker = threading.Thread(target=work, args=(sessions, settings, clock))
        worker.start()
        worker.join()
        page.wait_for_timeout(200)
    expect(state).to_have_attribute("data-state", "completed")
    expect(page.get_by_test_id("result-unbound")).to_have_text("1")
    expect(page.get_by_test_id("result-kept")).to_have_count(0)
    assert "李" not in page.content()
    assert {ref for ref, a in jd.accounts.accounts.items() if a.number == P} == {"alice-first", "alice-now"}
