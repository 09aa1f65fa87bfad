"""Routes: a citizen's requests, answered 202 with a due time, followed on their page."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from tongcha.identity import service as identity
from tongcha.kit.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated, responses
from tongcha.kit.phone import parse_mobile
from tongcha.platforms import fanout
from tongcha.platforms.dispatch import run_claimed
from tongcha.platforms.models import FINAL_STATES, TaskState
from tongcha.requests import service
from tongcha.requests.models import RequestKind
from tongcha.requests.schemas import (
    Accepted,
    DetailIn,
    DisputeIn,
    HistoryIn,
    InquiryIn,
    OneNumber,
    RequestOut,
    TaskOut,
    UnbindIn,
)
from tongcha.requests.service import Ask, Citizen
from tongcha.web.deps import CitizenCaller, HubDep, PublicIdPath
from tongcha.web.state import HubState

router = APIRouter(tags=["citizen"])
ERRORS = responses(InvalidArgument, Unauthenticated, PermissionDenied, NotFound)


async def _open(hub: HubState, citizen: Citizen, ask: Ask, about: OneNumber | None = None) -> Accepted:
    wait_s = hub.settings.fanout_wait_ms / 1000
    now = hub.clock.now()
    if about is not None and about.number is not None:
        ask = replace(ask, number=parse_mobile(about.number))

    def open_() -> tuple[str, datetime, list[fanout.TaskCall]]:
        # Read before the transaction: on SQLite it holds the write lock from its start.
        callees = list(hub.platforms.callees())
        with hub.sessions() as session, session.begin():
            asked = ask
            if about is not None and about.number_ref is not None:
                held = identity.tenure_of_ref(session, hub.digester, citizen.holder_digest, about.number_ref)
                asked = replace(ask, number=held.number, tenure_seq=held.seq)
            request, calls = service.open_citizen_request(
                session,
                citizen=citizen,
                ask=asked,
                callees=callees,
                calendar=hub.calendar,
                zone=hub.zone,
                now=now,
                claim_for=timedelta(seconds=wait_s) + fanout.LEASE_MARGIN,
                give_up_after=timedelta(hours=hub.settings.fanout_give_up_hours),
            )
            assert request.due_by is not None
            # In the hub's zone, whether the request is new or the same one asked again
            # (read back from the database, in UTC).
            return request.public_id, request.due_by.astimezone(hub.zone), calls

    public_id, due_by, calls = await run_in_threadpool(open_)
    # The platforms are called right away, after the answer; what is slow or down is
    # left to the workers when the claim runs out.
    job = asyncio.create_task(run_claimed(hub.sessions, hub.dispatcher, hub.clock, calls, wait_s))
    hub.background.add(job)
    job.add_done_callback(hub.background.discard)
    return Accepted(request_id=public_id, due_by=due_by)


@router.post(
    "/v1/inquiries", status_code=202, summary="一证通查: accounts on every number under my ID", responses=ERRORS
)
async def inquiry(body: InquiryIn, citizen: CitizenCaller, hub: HubDep) -> Accepted:
    return await _open(hub, citizen, Ask(RequestKind.inquiry))


@router.post("/v1/details", status_code=202, summary="The accounts (masked) at one enterprise", responses=ERRORS)
async def detail(body: DetailIn, citizen: CitizenCaller, hub: HubDep) -> Accepted:
    return await _open(hub, citizen, Ask(RequestKind.detail, platform=body.platform), body)


@router.post(
    "/v1/unbind-requests",
    status_code=202,
    summary="一键解绑: unbind what the previous holder left on my number",
    responses=ERRORS,
)
async def unbind(body: UnbindIn, citizen: CitizenCaller, hub: HubDep) -> Accepted:
    platforms = tuple(body.platforms) if body.platforms is not None else None
    return await _open(hub, citizen, Ask(RequestKind.unbind, platforms=platforms), body)


@router.post(
    "/v1/disputes", status_code=202, summary="An account in my tenure I did not open: act on it", responses=ERRORS
)
async def dispute(body: DisputeIn, citizen: CitizenCaller, hub: HubDep) -> Accepted:
    ask = Ask(RequestKind.dispute, platform=body.platform, account_ref=body.account_ref, action=body.action)
    return await _open(hub, citizen, ask, body)


@router.post(
    "/v1/history-inquiries",
    status_code=202,
    summary="Accounts bound to a number I used to hold, within my old tenure",
    responses=ERRORS,
)
async def history(body: HistoryIn, citizen: CitizenCaller, hub: HubDep) -> Accepted:
    return await _open(hub, citizen, Ask(RequestKind.history), body)


def _for_the_citizen(answer: dict[str, Any] | None) -> dict[str, Any] | None:
    """A platform's answer as the citizen sees it. An unbind names the accounts it
    detached, which were the previous holder's: the citizen is told how many, not which
    (the operator's view keeps the names)."""
    if answer is not None and isinstance(answer.get("unbound"), list):
        return {**answer, "unbound": len(answer["unbound"])}
    return answer


def _task_out(t: fanout.TaskView) -> TaskOut:
    return TaskOut(
        platform=t.platform,
        platform_name=t.platform_name,
        number=t.number,
        state=t.state,
        due_by=t.due_by,
        overdue=t.overdue,
        answer=_for_the_citizen(t.answer),
        error=t.error_code,
    )


def _one_platforms_unbind(tasks: list[fanout.TaskView]) -> TaskOut:
    """An unbind that took a platform several calls (the unbind before the holder's first
    tenure, a listing of each stretch others held the number in between, then one call
    per account listed) as one platform's progress. The listings named the previous
    holders' accounts: the citizen is told how many went, never which."""
    still_open = [t.state for t in tasks if t.state not in FINAL_STATES]
    failed = [t for t in tasks if t.state == TaskState.failed.value]
    unbound = refused = 0
    for t in tasks:
        said = t.answer or {}
        if isinstance(said.get("unbound"), list):
            unbound += len(said["unbound"])
        elif said.get("outcome") == "done":
            unbound += 1
        elif said.get("outcome") == "refused":
            refused += 1
    answer: dict[str, Any] | None = None
    if not still_open:
        answer = {"unbound": unbound, **({"refused": refused} if refused else {})}
    dues = [t.due_by for t in tasks if t.due_by is not None]
    return TaskOut(
        platform=tasks[0].platform,
        platform_name=tasks[0].platform_name,
        number=tasks[0].number,
        state=still_open[0] if still_open else TaskState.failed.value if failed else TaskState.done.value,
        due_by=max(dues) if dues else None,
        overdue=any(t.overdue for t in tasks),
        answer=answer,
        error=failed[0].error_code if failed else None,
    )


def _platforms_out(progress: fanout.Progress) -> list[TaskOut]:
    if progress.kind != RequestKind.unbind.value:
        # A line per task (an inquiry over several numbers has one per number and platform).
        return [_task_out(t) for t in progress.tasks]
    per_platform: dict[str, list[fanout.TaskView]] = {}
    for t in progress.tasks:
        per_platform.setdefault(t.platform, []).append(t)
    return [_task_out(tasks[0]) if len(tasks) == 1 else _one_platforms_unbind(tasks) for tasks in per_platform.values()]


def request_out(progress: fanout.Progress) -> RequestOut:
    """A request as its citizen sees it."""
    return RequestOut(
        request_id=progress.request_id,
        kind=progress.kind,
        state=progress.state,
        created_at=progress.created_at,
        due_by=progress.due_by,
        completed_at=progress.completed_at,
        params=progress.params,
        pending=progress.pending,
        overdue=list(dict.fromkeys(t.platform for t in progress.tasks if t.overdue)),
        platforms=_platforms_out(progress),
    )


@router.get("/v1/requests", summary="My requests, newest first", responses=responses(Unauthenticated))
def my_requests(citizen: CitizenCaller, hub: HubDep) -> list[RequestOut]:
    with hub.sessions() as session:
        return [request_out(fanout.progress(session, r)) for r in service.requests_of(session, citizen.holder_digest)]


@router.get(
    "/v1/requests/{request_id}",
    summary="One of my requests: state, due time, each platform's progress and result",
    responses=responses(Unauthenticated, NotFound),
)
def my_request(request_id: PublicIdPath, citizen: CitizenCaller, hub: HubDep) -> RequestOut:
    with hub.sessions() as session:
        request = service.request_of(session, citizen.holder_digest, request_id)
        return request_out(fanout.progress(session, request))
