"""A platform that answered 202 reports later with a signed callback; only a fresh,
correctly signed callback from the task's own platform is taken, and only once."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit.clock import FixedClock
from tongcha.platforms import fanout, service
from tongcha.platforms import repository as platforms_repo
from tongcha.platforms.models import PlatformTask
from tongcha.requests.models import Request, RequestKind
from tongcha.sdk import protocol
from tongcha.sdk.protocol import Operation


@pytest.fixture
def keys(sessions: sessionmaker[Session], clock: FixedClock, parties: dict[str, str]) -> dict[str, ECKey]:
    """MEITUAN and JD each with a registered callback key and a base URL."""
    made = {}
    with sessions() as session, session.begin():
        for code in ("MEITUAN", "JD"):
            key = protocol.new_signing_key(f"{code.lower()}-1")
            service.add_key(session, code, protocol.public_jwk(key), clock.now())
            service.update(session, code, service.PlatformUpdate(base_url=f"http://127.0.0.1:9/{code}"))
            made[code] = key
    return made


@pytest.fixture
def task(sessions: sessionmaker[Session], clock: FixedClock, keys: dict[str, ECKey]) -> str:
    """A count task for MEITUAN that the platform has answered with 202."""
    with sessions() as session, session.begin():
        platform = service.get(session, "MEITUAN")
        _, calls = fanout.open_request(
            session,
            kind=RequestKind.probe,
            params={},
            operation=Operation.bindings_count,
            targets=fanout.each([platform], {"number": "+8613800138000", "bound_from": "2020-01-01T00:00:00+08:00"}),
            now=clock.now(),
            give_up_after=timedelta(hours=48),
            claim_for=timedelta(seconds=5),
        )
        fanout.record(session, [(calls[0], fanout.Outcome.accepted())], clock.now())
        return calls[0].task_id


def post_result(
    client: TestClient, task_id: str, body: dict[str, Any], key: ECKey, *, issuer: str = "MEITUAN", **sign: Any
) -> Any:
    raw = json.dumps(body).encode()
    token = protocol.sign(
        key, issuer=issuer, audience=protocol.HUB_ISSUER, path=protocol.callback_path(task_id), body=raw, **sign
    )
    return client.post(
        protocol.callback_path(task_id),
        content=raw,
        headers={protocol.SIGNATURE_HEADER: token, "content-type": "application/json"},
    )


COUNTS = {"answer": {"counts": [{"app": "meituan", "count": 2}]}}


def stored(sessions: sessionmaker[Session], task_id: str) -> tuple[PlatformTask, Request]:
    with sessions() as session:
        row = platforms_repo.task_by_public_id(session, task_id)
        assert row is not None
        request = session.get(Request, row.request_id)
        assert request is not None
        session.expunge_all()
        return row, request


def test_a_signed_callback_completes_the_task_and_its_request(
    client: TestClient, sessions: sessionmaker[Session], task: str, keys: dict[str, ECKey]
) -> None:
    before, request = stored(sessions, task)
    assert before.state == "awaiting_callback"
    assert request.state == "open"
    r = post_result(client, task, COUNTS, keys["MEITUAN"])
    assert r.status_code == 200, r.text
    assert r.json() == {"task_id": task, "state": "done", "recorded": True}
    after, request = stored(sessions, task)
    assert after.answer == {"counts": [{"app": "meituan", "count": 2}]}
    assert after.answered_via == "callback"
    assert request.state == "completed"


def test_a_duplicate_or_late_callback_changes_nothing(
    client: TestClient, sessions: sessionmaker[Session], task: str, keys: dict[str, ECKey]
) -> None:
    assert post_result(client, task, COUNTS, keys["MEITUAN"]).status_code == 200
    first, _ = stored(sessions, task)
    other = {"answer": {"counts": [{"app": "meituan", "count": 9}]}}
    r = post_result(client, task, other, keys["MEITUAN"])
    assert r.status_code == 200
    assert r.json()["recorded"] is False
    again, _ = stored(sessions, task)
    assert again.answer == first.answer
    assert again.finished_at == first.finished_at


def test_a_replayed_callback_is_refused(client: TestClient, task: str, keys: dict[str, ECKey]) -> None:
    raw = json.dumps(COUNTS).encode()
    token = protocol.sign(
        keys["MEITUAN"], issuer="MEITUAN", audience=protocol.HUB_ISSUER, path=protocol.callback_path(task), body=raw
    )
    headers = {protocol.SIGNATURE_HEADER: token}
    assert client.post(protocol.callback_path(task), content=raw, headers=headers).status_code == 200
    replay = client.post(protocol.callback_path(task), content=raw, headers=headers)
    assert replay.status_code == 401
    assert "replay" in replay.json()["error"]["message"]


@pytest.mark.parametrize(
    "case",
    ["unregistered key", "another platform's key", "expired", "tampered body", "missing header", "wrong audience"],
)
def test_a_badly_signed_callback_is_refused_and_the_task_still_waits(
    case: str, client: TestClient, sessions: sessionmaker[Session], task: str, keys: dict[str, ECKey]
) -> None:
    raw = json.dumps(COUNTS).encode()
    path = protocol.callback_path(task)
    key, issuer, audience, now, body = keys["MEITUAN"], "MEITUAN", protocol.HUB_ISSUER, time.time(), raw
    if case == "unregistered key":
        key = protocol.new_signing_key("meituan-1")  # same kid, different key
    elif case == "another platform's key":
        key, issuer = keys["JD"], "JD"
    elif case == "expired":
        now -= 3600
    elif case == "tampered body":
        body = json.dumps({"answer": {"counts": [{"app": "meituan", "count": 0}]}}).encode()
    elif case == "wrong audience":
        audience = "MEITUAN"
    token = protocol.sign(key, issuer=issuer, audience=audience, path=path, body=raw, now=now)
    headers = {} if case == "missing header" else {protocol.SIGNATURE_HEADER: token}
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "UNAUTHENTICATED"
    row, _ = stored(sessions, task)
    assert row.state == "awaiting_callback"
    assert row.answer is None


def test_a_malformed_answer_is_a_400_and_the_task_still_waits(
    client: TestClient, sessions: sessionmaker[Session], task: str, keys: dict[str, ECKey]
) -> None:
    body: dict[str, Any]
    for body in (
        {"answer": {"counts": [{"app": "meituan", "count": -1}]}},
        {"answer": {"accounts": []}},
        {},
        {"answer": COUNTS["answer"], "error": {"code": "X", "message": "both"}},
    ):
        r = post_result(client, task, body, keys["MEITUAN"])
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    row, _ = stored(sessions, task)
    assert row.state == "awaiting_callback"


def test_a_callback_with_an_error_fails_the_task_with_the_platforms_reason(
    client: TestClient, sessions: sessionmaker[Session], task: str, keys: dict[str, ECKey]
) -> None:
    body = {"error": {"code": "NUMBER_UNKNOWN", "message": "we hold no account for that number"}}
    r = post_result(client, task, body, keys["MEITUAN"])
    assert r.status_code == 200
    row, request = stored(sessions, task)
    assert row.state == "failed"
    assert row.last_error == "NUMBER_UNKNOWN: we hold no account for that number"
    assert request.state == "completed"


def test_a_callback_for_an_unknown_task_is_a_404(client: TestClient, keys: dict[str, ECKey]) -> None:
    r = post_result(client, "t_nope", COUNTS, keys["MEITUAN"])
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


def test_a_retired_key_no_longer_signs_callbacks(
    client: TestClient, sessions: sessionmaker[Session], clock: FixedClock, task: str, keys: dict[str, ECKey]
) -> None:
    with sessions() as session, session.begin():
        service.retire_key(session, "MEITUAN", "meituan-1", clock.now())
    assert post_result(client, task, COUNTS, keys["MEITUAN"]).status_code == 401
