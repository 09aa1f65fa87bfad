"""An unbind's listing of a stretch others held the number in, once answered: the hub
opens one account unbind per account listed inside the stretch, once, whoever records
the answer and however often."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit.clock import FixedClock
from tongcha.platforms import fanout, service
from tongcha.platforms.models import PlatformTask
from tongcha.requests.models import Request, RequestKind
from tongcha.sdk.protocol import Operation

NUMBER = "+8613800000009"
STRETCH = {"bound_from": "2018-01-11T00:00:00+08:00", "bound_until": "2021-02-01T00:00:00+08:00"}


def account(ref: str, bound_at: str) -> dict[str, Any]:
    return {"app": "jd", "account_ref": ref, "display_name_masked": "李*", "bound_at": bound_at, "last_active_at": None}


def open_unbind(sessions: sessionmaker[Session], clock: FixedClock, kind: RequestKind) -> tuple[int, fanout.TaskCall]:
    """A request of ``kind`` whose one task lists the stretch, claimed as the API claims."""
    with sessions() as session, session.begin():
        platform, _ = service.add(session, service.PlatformSpec("XHS", "Xiaohongshu"), clock.now())
        callee = fanout.CalleeRow(platform.id, "XHS", "Xiaohongshu", "http://127.0.0.1:9", 2000, 8, {})
        request, calls = fanout.open_request(
            session,
            kind=kind,
            params={},
            operation=Operation.bindings_unbind,
            targets=[fanout.Target(callee, {"number": NUMBER, **STRETCH}, clock.now(), Operation.bindings_list)],
            now=clock.now(),
            give_up_after=timedelta(days=3),
            claim_for=timedelta(seconds=5),
        )
        return request.id, calls[0]


def tasks_of(sessions: sessionmaker[Session], request_pk: int) -> list[PlatformTask]:
    with sessions() as session:
        stmt = select(PlatformTask).where(PlatformTask.request_id == request_pk).order_by(PlatformTask.id)
        return list(session.scalars(stmt))


def test_only_accounts_listed_inside_the_stretch_are_unbound_and_each_once(
    sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    request_pk, listing = open_unbind(sessions, clock, RequestKind.unbind)
    assert listing.operation is Operation.bindings_list
    answer = {
        "accounts": [
            account("inside", "2019-05-05T04:00:00Z"),
            account("inside", "2019-05-05T04:00:00Z"),  # listed twice: unbound once
            account("first-moment", "2018-01-10T16:00:00Z"),  # 2018-01-11 00:00 in Beijing
            # A platform that lists more than it was asked: these may be the holder's own.
            account("before", "2018-01-10T15:59:59Z"),
            account("at-the-end", "2021-01-31T16:00:00Z"),
            account("x" * 201, "2019-05-05T04:00:00Z"),
        ]
    }
    with sessions() as session, session.begin():
        fanout.record(session, [(listing, fanout.Outcome.answered(answer))], clock.now())
    follow_ups = [t for t in tasks_of(sessions, request_pk) if t.operation == Operation.account_action.value]
    assert sorted(t.body["account_ref"] for t in follow_ups) == ["first-moment", "inside"]
    assert all(
        t.body == {"task_id": t.task_id, "number": NUMBER, "account_ref": t.body["account_ref"], "action": "unbind"}
        for t in follow_ups
    )
    assert all(t.state == "pending" and t.due_by == clock.now() for t in follow_ups)
    # The request waits for them.
    with sessions() as session:
        assert session.scalars(select(Request.state).where(Request.id == request_pk)).one() == "open"

    # The same answer again, by a late callback of the same listing: nothing new.
    with sessions() as session, session.begin():
        task = session.scalars(select(PlatformTask).where(PlatformTask.task_id == listing.task_id)).one()
        task.state = "awaiting_callback"
        session.flush()
        assert fanout.record_callback(session, task, answer=answer, error=None, now=clock.now())
    again = [t for t in tasks_of(sessions, request_pk) if t.operation == Operation.account_action.value]
    assert sorted(t.task_id for t in again) == sorted(t.task_id for t in follow_ups)


def test_a_details_listing_opens_nothing(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    request_pk, listing = open_unbind(sessions, clock, RequestKind.detail)
    answer = {"accounts": [account("inside", "2019-05-05T04:00:00Z")]}
    with sessions() as session, session.begin():
        fanout.record(session, [(listing, fanout.Outcome.answered(answer))], clock.now())
    assert [t.operation for t in tasks_of(sessions, request_pk)] == [Operation.bindings_list.value]
