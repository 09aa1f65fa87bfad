"""The operator lists requests: what is open, what is overdue, what a platform was asked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import bearer
from tests.test_cli import run_cli
from tongcha.kit.clock import FixedClock
from tongcha.platforms import repository as platforms_repo
from tongcha.platforms.fanout import Target, open_request
from tongcha.platforms.models import PlatformTask, TaskState
from tongcha.requests.models import RequestKind, RequestState
from tongcha.sdk.protocol import Operation

HOLDER = "d" * 64
NUMBER = "+8613800138000"


def _open(
    sessions: sessionmaker[Session],
    clock: FixedClock,
    kind: RequestKind,
    platforms: tuple[str, ...] = ("JD", "MEITUAN"),
    *,
    done: tuple[str, ...] = (),
    overdue: tuple[str, ...] = (),
    minutes_ago: int = 0,
) -> str:
    """A citizen's request to these platforms; ``done`` answered, ``overdue`` marked late."""
    now = clock.now() - timedelta(minutes=minutes_ago)
    with sessions() as session, session.begin():
        callees = [platforms_repo.platform_by_code(session, code) for code in platforms]
        request, _ = open_request(
            session,
            kind=kind,
            params={"number": NUMBER},
            operation=Operation.bindings_count,
            targets=[Target(c, {"number": NUMBER}, due_by=now + timedelta(days=2)) for c in callees if c is not None],
            now=now,
            give_up_after=timedelta(hours=48),
            holder_digest=HOLDER,
            due_by=now + timedelta(days=2),
            notify_number=8613800138000,
        )
        for code in done:
            _set(session, request.id, code, state=TaskState.done.value, answer={"counts": []}, finished_at=now)
        for code in overdue:
            _set(session, request.id, code, overdue_at=now)
        if len(done) == len(platforms):
            request.state, request.completed_at = RequestState.completed.value, now
        return request.public_id


def _set(session: Session, request_pk: int, code: str, **values: Any) -> None:
    platform = platforms_repo.platform_by_code(session, code)
    assert platform is not None
    session.execute(
        update(PlatformTask)
        .where(PlatformTask.request_id == request_pk, PlatformTask.platform_id == platform.id)
        .values(**values)
    )


def _list(client: TestClient, operator: dict[str, str], **params: Any) -> dict[str, Any]:
    r = client.get("/operator/v1/requests", params=params, headers=operator)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _ids(body: dict[str, Any]) -> list[str]:
    return [r["request_id"] for r in body["requests"]]


def test_the_operator_sees_requests_newest_first_with_pending_and_overdue_platforms(
    client: TestClient, operator: dict[str, str], sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    older = _open(sessions, clock, RequestKind.inquiry, done=("JD", "MEITUAN"), minutes_ago=10)
    newer = _open(sessions, clock, RequestKind.unbind, done=("MEITUAN",), overdue=("JD",))
    body = _list(client, operator)
    assert _ids(body) == [newer, older]
    assert body["next_before"] is None
    first = body["requests"][0]
    assert (first["kind"], first["state"], first["platforms"]) == ("unbind", "open", 2)
    assert first["pending"] == ["JD"]
    assert first["overdue"] == ["JD"]
    assert first["due_by"] is not None
    assert body["requests"][1]["state"] == "completed"
    assert body["requests"][1]["pending"] == []


def test_the_list_shows_no_holder_number_or_answer(
    client: TestClient, operator: dict[str, str], sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    _open(sessions, clock, RequestKind.inquiry, done=("JD",))
    r = client.get("/operator/v1/requests", headers=operator)
    assert HOLDER not in r.text
    assert "13800138000" not in r.text
    assert "counts" not in r.text
    assert set(r.json()["requests"][0]) == {
        "request_id",
        "kind",
        "state",
        "created_at",
        "due_by",
        "completed_at",
        "platforms",
        "pending",
        "overdue",
    }


def test_overdue_keeps_requests_with_a_task_still_open_past_its_due_time(
    client: TestClient, operator: dict[str, str], sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    late = _open(sessions, clock, RequestKind.inquiry, overdue=("JD",), minutes_ago=3)
    _open(sessions, clock, RequestKind.inquiry, minutes_ago=2)  # open, on time
    # JD answered, but after its due time: late once, not overdue now.
    answered_late = _open(sessions, clock, RequestKind.inquiry, done=("JD", "MEITUAN"), overdue=("JD",), minutes_ago=1)
    assert _ids(_list(client, operator, overdue="true")) == [late]
    everything = _list(client, operator)
    assert everything["requests"][0]["request_id"] == answered_late
    assert everything["requests"][0]["overdue"] == ["JD"]


def test_state_kind_and_platform_filter_the_list(
    client: TestClient, operator: dict[str, str], sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    inquiry = _open(sessions, clock, RequestKind.inquiry, minutes_ago=3)
    detail_jd = _open(sessions, clock, RequestKind.detail, ("JD",), done=("JD",), minutes_ago=2)
    detail_meituan = _open(sessions, clock, RequestKind.detail, ("MEITUAN",), minutes_ago=1)
    assert _ids(_list(client, operator, state="open")) == [detail_meituan, inquiry]
    assert _ids(_list(client, operator, state="completed")) == [detail_jd]
    assert _ids(_list(client, operator, kind="detail")) == [detail_meituan, detail_jd]
    assert _ids(_list(client, operator, platform="JD")) == [detail_jd, inquiry]
    assert _ids(_list(client, operator, kind="detail", state="open", platform="MEITUAN")) == [detail_meituan]
    assert _ids(_list(client, operator, kind="probe")) == []


def test_pages_follow_next_before_to_the_end(
    client: TestClient, operator: dict[str, str], sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    made = [_open(sessions, clock, RequestKind.inquiry, ("JD",), minutes_ago=9 - i) for i in range(5)]
    seen: list[str] = []
    page = _list(client, operator, limit=2)
    while True:
        assert len(page["requests"]) <= 2
        seen += _ids(page)
        if page["next_before"] is None:
            break
        page = _list(client, operator, limit=2, before=page["next_before"])
    assert seen == made[::-1]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "closed"}, "query.state"),
        ({"kind": "lookup"}, "query.kind"),
        ({"overdue": "maybe"}, "query.overdue"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "501"}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"platform": "A\x00B"}, "query.platform"),
        ({"before": "r_a\x00b"}, "query.before"),
        ({"platform": "NOBODY"}, "platform"),
        ({"before": "r_nosuchrequest"}, "before"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(
    client: TestClient, operator: dict[str, str], params: dict[str, str], field: str
) -> None:
    r = client.get("/operator/v1/requests", params=params, headers=operator)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert [d["field"] for d in error["details"]] == [field]


def test_the_list_needs_an_operator_credential(client: TestClient, parties: dict[str, str]) -> None:
    assert client.get("/operator/v1/requests").status_code == 401
    r = client.get("/operator/v1/requests", headers=bearer(parties["JD"]))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHENTICATED"


def test_the_single_request_view_shows_due_times_and_overdue_platforms(
    client: TestClient, operator: dict[str, str], sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    request_id = _open(sessions, clock, RequestKind.unbind, done=("MEITUAN",), overdue=("JD",))
    body = client.get(f"/operator/v1/requests/{request_id}", headers=operator).json()
    assert body["overdue"] == ["JD"]
    assert body["due_by"] is not None
    assert {t["platform"]: t["overdue"] for t in body["tasks"]} == {"JD": True, "MEITUAN": False}


def test_requests_list_prints_the_overdue_open_requests(
    db_url: str, parties: dict[str, str], sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    late = _open(sessions, clock, RequestKind.unbind, done=("MEITUAN",), overdue=("JD",), minutes_ago=2)
    on_time = _open(sessions, clock, RequestKind.inquiry, minutes_ago=1)
    out = run_cli(db_url, "requests", "list", "--state", "open", "--overdue").stdout
    assert late in out and on_time not in out
    row = next(line for line in out.splitlines() if late in line)
    # Cell by cell: a random request id may itself hold the letters JD.
    cells = [cell.strip() for cell in row.strip().strip("│").split("│")]
    assert cells[0] == late and cells[1:3] == ["unbind", "open"]
    assert cells[-2:] == ["JD", "JD"]  # pending, overdue
    assert not any("MEITUAN" in cell for cell in cells[1:])
    everything = run_cli(db_url, "requests", "list", "--kind", "inquiry", "--platform", "MEITUAN").stdout
    assert on_time in everything and late not in everything


def test_requests_list_pages_and_refuses_bad_filters(
    db_url: str, parties: dict[str, str], sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    older = _open(sessions, clock, RequestKind.inquiry, minutes_ago=2)
    newer = _open(sessions, clock, RequestKind.inquiry, minutes_ago=1)
    first = run_cli(db_url, "requests", "list", "--limit", "1").stdout
    assert newer in first and older not in first
    assert f"more: --before {newer}" in first
    second = run_cli(db_url, "requests", "list", "--limit", "1", "--before", newer).stdout
    assert older in second and "more:" not in second
    for args, says in (
        (("--state", "closed"), "--state is open or completed"),
        (("--kind", "lookup"), "--kind is one of"),
        (("--limit", "501"), "limit is 1 to 500"),
        (("--platform", "NOBODY"), "platform names no platform"),
    ):
        refused = run_cli(db_url, "requests", "list", *args, check=False)
        assert refused.returncode == 1, args
        assert says in refused.stderr, (args, refused.stderr)
