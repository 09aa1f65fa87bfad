"""The citizen's pages and the demo's phone inbox, served by the app (TestClient)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import bearer
from tests.factories import BOB, ev
from tongcha.kit.clock import FixedClock
from tongcha.kit.settings import Settings
from tongcha.platforms import service as platforms
from tongcha.web.app import create_app

PAGES = {
    "/me": ["verify-form", "verify-phone", "verify-name", "verify-id", "verify-last6", "verify-submit", "code-input"],
    "/me/numbers": ["inquiry-button", "numbers", "numbers-empty"],
    "/me/requests": ["requests", "requests-empty"],
    "/me/requests/r_abc": ["request-state", "request-due", "platforms", "request-summary"],
}
NON_DEV_SECRET = "a-real-secret-for-tests-only-0123456789"


def fresh_number() -> str:
    """A number no other test (nor the other database's run) sends messages to: the
    console inbox is one per process."""
    return f"+86139{secrets.randbelow(10**8):08d}"


def raw_config(html: str) -> str:
    found = re.search(r'<script id="tongcha-config" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None, html
    return found.group(1)


def page_config(html: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(raw_config(html))
    return config


@contextmanager
def hub_with(settings: Settings, clock: FixedClock, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock, engine), raise_server_exceptions=False) as c:
        yield c


def test_the_front_page_links_the_citizen_pages(client: TestClient) -> None:
    html = client.get("/").text
    assert re.search(r'<a href="/me" data-testid="citizen-link">', html)


@pytest.mark.parametrize("path", list(PAGES))
def test_each_citizen_page_renders_with_the_ids_the_browser_drives(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    missing = [tid for tid in [*PAGES[path], "message", "signout"] if f'data-testid="{tid}"' not in r.text]
    assert missing == []


def test_the_pages_load_only_what_the_hub_serves(client: TestClient) -> None:
    r = client.get("/me")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text)
    assert sorted(assets) == ["/static/citizen.css", "/static/citizen.js"]
    assert not re.search(r'(?:src|href)="(?:https?:)?//', r.text)
    for path in assets:
        served = client.get(path)
        assert served.status_code == 200, path
        assert served.headers["content-type"].split(";")[0] in ("text/javascript", "text/css")
    assert client.get("/static/../pages.py").status_code == 404
    assert client.get("/static/secrets.txt").status_code == 404


def test_the_script_keeps_only_the_token_phone_and_pending_verification_in_session_storage(
    client: TestClient,
) -> None:
    script = client.get("/static/citizen.js").text
    assert "localStorage" not in script
    assert "document.cookie" not in script
    stored = set(re.findall(r"store\.setItem\(KEYS\.(\w+)", script))
    assert stored == {"token", "expires", "phone", "pending"}
    assert "console.log" not in script


def test_the_verify_forms_post_so_details_never_reach_a_url(client: TestClient) -> None:
    html = client.get("/me").text
    for form in re.findall(r"<form [^>]*>", html):
        assert 'method="post"' in form, form
        assert 'autocomplete="off"' in form, form


def test_a_request_id_in_the_path_cannot_break_out_of_the_page(client: TestClient) -> None:
    # "<!--<script>" inside a script element swallows the rest of the page
    r = client.get("/me/requests/r_x%3C!--%3Cscript%3Ealert(1)")
    assert r.status_code == 200
    assert "<" not in raw_config(r.text)
    assert page_config(r.text)["request_id"] == "r_x<!--<script>alert(1)"


def test_the_numbers_page_offers_the_platforms_that_take_requests(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    assert page_config(client.get("/me/numbers").text)["platforms"] == []
    with sessions() as session, session.begin():
        jd = platforms.update(session, "JD", platforms.PlatformUpdate(base_url="http://127.0.0.1:9"))
        platforms.add_app(session, jd, platforms.AppSpec("jd", "京东", "JD"))
    config = page_config(client.get("/me/numbers").text)
    assert [p["code"] for p in config["platforms"]] == ["JD"]
    assert config["apps"]["JD"]["jd"] == "京东 JD"
    assert config["zone"] == "Asia/Shanghai"


# ----- the demo's phone inbox --------------------------------------------------------------


def test_the_dev_inbox_shows_the_console_messages_newest_first(client: TestClient) -> None:
    number = fresh_number()
    hub: Any = client.app.state.hub  # type: ignore[attr-defined]
    hub.sms.send(number, "first")
    hub.sms.send(number, "second")
    hub.sms.send(fresh_number(), "someone else's")
    r = client.get(f"/dev/inbox/{number}")
    assert r.status_code == 200
    assert [(m["to"], m["text"]) for m in r.json()] == [(number, "second"), (number, "first")]
    # eleven digits name the same phone
    assert [m["text"] for m in client.get(f"/dev/inbox/{number[3:]}").json()] == ["second", "first"]


def test_the_dev_inbox_receives_the_verification_code(client: TestClient, parties: dict[str, str]) -> None:
    number = fresh_number()
    r = client.post(
        "/carrier/v1/events", json=[ev("activated", number, "2020-10-15", BOB)], headers=bearer(parties["CMCC"])
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert client.get(f"/dev/inbox/{number}").json() == []
    assert client.post("/v1/verifications", json={"phone": number, **BOB}).status_code == 202
    [message] = client.get(f"/dev/inbox/{number}").json()
    assert re.search(r"(?<!\d)\d{6}(?!\d)", message["text"])


def test_the_dev_inbox_refuses_what_is_not_a_phone_number(client: TestClient) -> None:
    r = client.get("/dev/inbox/12345")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_the_pages_show_the_phone_panel_on_a_dev_hub(client: TestClient) -> None:
    html = client.get("/me").text
    assert 'data-testid="inbox"' in html
    assert page_config(html)["inbox"] is True


@pytest.mark.parametrize("hub_kind", ["test environment", "file gateway"])
def test_the_dev_inbox_does_not_exist_elsewhere(
    hub_kind: str, db_url: str, clock: FixedClock, engine: Engine, tmp_path: Path
) -> None:
    if hub_kind == "test environment":
        settings = Settings(env="test", database_url=db_url, secret_key=NON_DEV_SECRET)
    else:
        settings = Settings(env="dev", database_url=db_url, sms_backend="file", sms_file=tmp_path / "sms.jsonl")
    number = fresh_number()
    with hub_with(settings, clock, engine) as c:
        c.app.state.hub.sms.send(number, "a code")  # type: ignore[attr-defined]
        unknown = c.get("/dev/no-such-route")
        for method in ("GET", "POST", "DELETE"):
            r = c.request(method, f"/dev/inbox/{number}")
            # answered exactly like a path that was never there, whatever the method
            assert (r.status_code, r.json()) == (404, unknown.json()), method
        html = c.get("/me").text
    assert 'data-testid="inbox"' not in html
    assert page_config(html)["inbox"] is False
