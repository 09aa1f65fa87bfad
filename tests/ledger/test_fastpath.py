"""The single check's fast path answers exactly as the documented route does."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import bearer
from tests.ledger.test_checks_api import OTHER, N, check_rows, get_check, history  # noqa: F401 - a fixture
from tongcha.kit.clock import FixedClock
from tongcha.kit.settings import Settings
from tongcha.web.app import create_app

ASKS = [
    (N, "2019-01-01"),
    (N, "2022-01-01"),
    (N, "2017-01-01"),
    (OTHER, "2020-01-01"),
    ("13800138000", "2021-08-15"),
    ("+8615000150008", "2020-01-01"),
    ("+86138001380", "2020-01-01"),  # not a mobile number: 400
    (N, "2020-02-30"),  # not a date: 400
    (N, "2099-01-01"),  # in the future: 400
]


@pytest.fixture
def slow_client(settings: Settings, clock: FixedClock, engine: Engine, parties: dict[str, str]) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"check_fast_path": False}), clock, engine)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.usefixtures("history")
def test_fast_and_routed_checks_give_the_same_answers_and_log_the_same_rows(
    client: TestClient,
    slow_client: TestClient,
    parties: dict[str, str],
    sessions: sessionmaker[Session],
) -> None:
    fast = [get_check(client, parties["JD"], n, s) for n, s in ASKS]
    fast_rows = check_rows(sessions)
    routed = [get_check(slow_client, parties["JD"], n, s) for n, s in ASKS]
    routed_rows = check_rows(sessions)[len(fast_rows) :]
    assert [(r.status_code, r.json()) for r in fast] == [(r.status_code, r.json()) for r in routed]
    assert fast_rows == routed_rows
    assert len(fast_rows) == 6  # the three bad asks are not logged
    assert all(r.headers["content-type"] == "application/json" for r in fast if r.status_code == 200)


@pytest.mark.usefixtures("history")
def test_fast_path_leaves_auth_failures_to_the_route(client: TestClient, parties: dict[str, str]) -> None:
    assert get_check(client, parties["CMCC"], N, "2019-01-01").status_code == 401  # a carrier's credential
    r = client.get(f"/platform/v1/reassignments/{N}", params={"since": "2019-01-01"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHENTICATED"
    r = client.get(
        f"/platform/v1/reassignments/{N}",
        params={"since": "2019-01-01"},
        headers={**bearer(parties["JD"]), "x-correlator": "fast-1"},
    )
    assert r.headers["x-correlator"] == "fast-1"


@pytest.mark.usefixtures("history")
def test_fast_answers_carry_a_correlator_like_every_other_answer(client: TestClient, parties: dict[str, str]) -> None:
    asks = [
        get_check(client, parties["JD"], N, "2019-01-01"),  # fast
        get_check(client, parties["JD"], N, "2020-02-30"),  # routed: 400
    ]
    made = [r.headers["x-correlator"] for r in asks]
    assert all(len(value) == 32 for value in made) and made[0] != made[1]
    r = client.get(
        f"/platform/v1/reassignments/{N}",
        params={"since": "2019-01-01"},
        headers={**bearer(parties["JD"]), "x-correlator": "bad value with spaces"},
    )
    assert r.status_code == 200
    assert r.headers["x-correlator"] != "bad value with spaces"


@pytest.mark.usefixtures("history")
def test_over_http_the_fast_path_decodes_the_number_once_as_the_route_does(
    live_hub: str, parties: dict[str, str]
) -> None:
    def ask(path_number: str) -> httpx.Response:
        url = f"{live_hub}/platform/v1/reassignments/{path_number}"
        return httpx.get(url, params={"since": "2019-01-01"}, headers=bearer(parties["JD"]))

    once = ask("%2B8613800138000")
    assert once.status_code == 200 and once.json()["number"] == N
    # Encoded twice, the number reads "%2B86…" once decoded: not a phone number.
    twice = ask("%252B8613800138000")
    assert twice.status_code == 400
    assert twice.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_every_check_is_logged_with_its_correlator_and_never_the_number(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tongcha.access")
    for correlator, since in (("fast-1", "2019-01-01"), ("routed-1", "2020-02-30"), ("fast-2", "2020-01-01")):
        r = client.get(
            f"/platform/v1/reassignments/{N}",
            params={"since": since},
            headers={**bearer(parties["JD"]), "x-correlator": correlator},
        )
        assert r.headers["x-correlator"] == correlator
    # The checks answered are in the check log under their correlators...
    with sessions() as session:
        logged = session.execute(text("SELECT correlator, since FROM reassignment_checks ORDER BY id")).all()
    assert [(c, str(d)) for c, d in logged] == [("fast-1", "2019-01-01"), ("fast-2", "2020-01-01")]
    # ...and the request refused (no check made) is in the access log under its own.
    lines = [(rec.correlator, rec.getMessage()) for rec in caplog.records if rec.name == "tongcha.access"]  # type: ignore[attr-defined]
    assert [(c, m.rsplit(" ", 2)[0]) for c, m in lines] == [("routed-1", "GET /platform/v1/reassignments/{number} 400")]
    assert not any(N[3:] in message for _, message in lines)
