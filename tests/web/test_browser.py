"""The front page in a real browser (Debian's Chromium, driven by Playwright)."""

from __future__ import annotations

from playwright.sync_api import sync_playwright

from tests.factories import ALICE, BOB, ev
from tongcha.sdk.carrier import CarrierClient

CHROMIUM = "/usr/bin/chromium"


def test_a_platform_engineer_checks_a_recycled_number_from_the_front_page(
    live_hub: str, parties: dict[str, str]
) -> None:
    number = "+8613800138000"
    with CarrierClient(live_hub, parties["CMCC"]) as carrier:
        sent = carrier.send(
            [
                ev("activated", number, "2018-01-10", ALICE),
                ev("cancelled", number, "2021-05-01"),
                ev("activated", number, "2021-08-15", BOB),
            ]
        )
    assert sent.accepted == 3
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page()
        page.goto(live_hub + "/")
        assert page.get_by_test_id("numbers").inner_text() == "1"
        page.fill("input[name=number]", number)
        page.fill("input[name=since]", "2019-06-01")
        page.fill("input[name=token]", parties["JD"])
        page.click("button[type=submit]")
        page.wait_for_function("document.querySelector('[data-testid=answer]').textContent.length > 0")
        answer = page.get_by_test_id("answer").inner_text()
        browser.close()
    assert '"result": "yes"' in answer
    assert '"last_change_on": "2021-08-15"' in answer
