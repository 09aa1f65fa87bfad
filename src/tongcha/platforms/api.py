"""Routes: the hub's JWKS, platforms' task callbacks, and the operator's registry API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from tongcha.kit import keys as hub_keys
from tongcha.kit.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PayloadTooLarge,
    Unauthenticated,
    responses,
)
from tongcha.platforms import dispatch, fanout, service
from tongcha.platforms import repository as repo
from tongcha.platforms.models import Platform
from tongcha.platforms.schemas import (
    AppIn,
    AppOut,
    CallbackAck,
    HubKeysOut,
    KeyIn,
    KeyOut,
    PlatformCreated,
    PlatformIn,
    PlatformOut,
    PlatformPatch,
    ProbeIn,
    ProgressOut,
    RequestPageOut,
    RequestSummaryOut,
)
from tongcha.requests import repository as requests_repo
from tongcha.requests import service as requests_service
from tongcha.requests.models import RequestKind, RequestState
from tongcha.sdk import protocol
from tongcha.web.deps import HubDep, KidPath, OperatorCaller, PublicIdPath, SessionDep

router = APIRouter()
operator = APIRouter(prefix="/operator/v1", tags=["operator"])

MAX_CALLBACK_BYTES = 1 << 20


@router.get("/.well-known/jwks.json", tags=["hub → platform"], summary="The hub's public signing keys")
def jwks(hub: HubDep, response: Response) -> dict[str, Any]:
    # Short cache: a platform that meets an unknown kid re-fetches anyway.
    response.headers["cache-control"] = "public, max-age=300"
    return hub.keyring.jwks()


@router.post(
    "/platform/v1/tasks/{task_id}/result",
    tags=["hub → platform"],
    summary="A platform's signed answer to a task it accepted with 202",
    responses=responses(InvalidArgument, Unauthenticated, NotFound, PayloadTooLarge),
)
async def task_result(task_id: PublicIdPath, request: Request, hub: HubDep) -> CallbackAck:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CALLBACK_BYTES:
            raise PayloadTooLarge("a task result is at most 1 MiB")
    token = request.headers.get(protocol.SIGNATURE_HEADER)

    def take() -> CallbackAck:
        with hub.sessions() as session, session.begin():
            result = service.accept_callback(
                session, task_id, token, bytes(body), wall=hub.dispatcher.wall(), now=hub.clock.now()
            )
            return CallbackAck(task_id=result.task_id, state=result.state, recorded=result.recorded)

    return await run_in_threadpool(take)


def _out(session: Session, platform: Platform) -> PlatformOut:
    return PlatformOut(
        code=platform.code,
        name=platform.name,
        name_zh=platform.name_zh,
        account_model=platform.account_model,
        base_url=platform.base_url,
        status=platform.status,
        timeout_ms=platform.timeout_ms,
        max_concurrency=platform.max_concurrency,
        sla_overrides=platform.sla_overrides,
        apps=[AppOut(code=a.code, name_zh=a.name_zh, name_en=a.name_en) for a in service.apps_of(session, platform.id)],
        keys=service.live_kids(session, platform.id),
    )


@operator.get("/platforms", summary="Every registered platform", responses=responses(Unauthenticated))
def list_platforms(_: OperatorCaller, session: SessionDep) -> list[PlatformOut]:
    return [_out(session, p) for p in repo.platforms(session)]


@operator.post(
    "/platforms",
    status_code=201,
    summary="Register an enterprise; its bearer credential is in the answer, once",
    responses=responses(InvalidArgument, Unauthenticated, Conflict),
)
def add_platform(body: PlatformIn, _: OperatorCaller, session: SessionDep, hub: HubDep) -> PlatformCreated:
    spec = service.PlatformSpec(
        code=body.code,
        name=body.name,
        name_zh=body.name_zh,
        account_model=body.account_model,
        base_url=body.base_url,
        apps=[service.AppSpec(a.code, a.name_zh, a.name_en) for a in body.apps],
    )
    platform, secret = service.add(session, spec, hub.clock.now())
    hub.platforms.forget()
    return PlatformCreated(**_out(session, platform).model_dump(), credential=secret)


@operator.get("/platforms/{code}", responses=responses(Unauthenticated, NotFound))
def get_platform(code: PublicIdPath, _: OperatorCaller, session: SessionDep) -> PlatformOut:
    return _out(session, service.get(session, code))


@operator.patch(
    "/platforms/{code}",
    summary="Change where and how the hub calls a platform, or suspend/resume it",
    responses=responses(InvalidArgument, Unauthenticated, NotFound),
)
def patch_platform(
    code: PublicIdPath, body: PlatformPatch, _: OperatorCaller, session: SessionDep, hub: HubDep
) -> PlatformOut:
    sent = body.model_dump(include=body.model_fields_set)
    change = service.PlatformUpdate(
        **{name: value for name, value in sent.items() if value is not None},
        cleared=frozenset(name for name, value in sent.items() if value is None),
    )
    platform = service.update(session, code, change)
    hub.platforms.forget()
    return _out(session, platform)


@operator.post(
    "/platforms/{code}/apps",
    status_code=201,
    summary="Add an app to an enterprise",
    responses=responses(InvalidArgument, Unauthenticated, NotFound, Conflict),
)
def add_app(code: PublicIdPath, body: AppIn, _: OperatorCaller, session: SessionDep) -> PlatformOut:
    platform = service.get(session, code)
    service.add_app(session, platform, service.AppSpec(body.code, body.name_zh, body.name_en))
    return _out(session, platform)


@operator.post(
    "/platforms/{code}/keys",
    status_code=201,
    summary="Register a public key for the platform's signed callbacks",
    responses=responses(InvalidArgument, Unauthenticated, NotFound, Conflict),
)
def add_key(code: PublicIdPath, body: KeyIn, _: OperatorCaller, session: SessionDep, hub: HubDep) -> KeyOut:
    return KeyOut(kid=service.add_key(session, code, body.jwk, hub.clock.now()))


@operator.delete(
    "/platforms/{code}/keys/{kid}",
    status_code=204,
    summary="Retire a platform key: callbacks signed with it are refused from now on",
    responses=responses(Unauthenticated, NotFound),
)
def retire_key(code: PublicIdPath, kid: KidPath, _: OperatorCaller, session: SessionDep, hub: HubDep) -> Response:
    service.retire_key(session, code, kid, hub.clock.now())
    return Response(status_code=204)


def _hub_keys(session: Session) -> HubKeysOut:
    rows = hub_keys.all_keys(session)
    return HubKeysOut(live=[k.kid for k in rows if k.retired_at is None], retired=[k.kid for k in rows if k.retired_at])


@operator.post("/hub-keys:rotate", summary="Start signing with a new hub key", responses=responses(Unauthenticated))
def rotate_hub_key(_: OperatorCaller, session: SessionDep, hub: HubDep) -> HubKeysOut:
    hub_keys.rotate(session, hub.settings, hub.clock.now())
    session.flush()
    return _hub_keys(session)


@operator.post(
    "/hub-keys:retire",
    summary="Unpublish every hub key but the newest",
    responses=responses(Unauthenticated),
)
def retire_hub_keys(_: OperatorCaller, session: SessionDep, hub: HubDep) -> HubKeysOut:
    hub_keys.retire(session, hub.clock.now())
    return _hub_keys(session)


@operator.post(
    "/probes",
    summary="Ask platforms about a number now: the hub → platform path, end to end",
    description=(
        "Opens a probe request with one task per platform, waits for the quick ones and "
        "answers with each platform's state; the rest are left to the workers and listed "
        "in `pending`. For onboarding a platform and for watching the federation. A "
        "platform named in `platforms` must exist (404) and be callable: active, with a "
        "base URL (409)."
    ),
    responses=responses(InvalidArgument, OutOfRange, Unauthenticated, NotFound, Conflict),
)
async def probe_now(body: ProbeIn, _: OperatorCaller, hub: HubDep) -> ProgressOut:
    progress = await dispatch.probe(
        hub.sessions,
        hub.dispatcher,
        hub.clock,
        number=body.number,
        operation=body.operation,
        since=body.bound_from,
        only=body.platforms,
        zone=hub.zone,
        wait_s=hub.settings.fanout_wait_ms / 1000,
        directory=hub.platforms,
    )
    return ProgressOut.of(progress)


@operator.get(
    "/requests",
    summary="Requests, newest first: what is open, what is overdue, what a platform was asked",
    description=(
        "One page of every party's requests, each with the platforms still pending and "
        "those marked overdue. `overdue=true` keeps the requests with a task still open "
        "past its due time; `platform` those that asked that platform. For the next page, "
        "send `next_before` back as `before`."
    ),
    responses=responses(InvalidArgument, Unauthenticated),
)
def list_requests(
    _: OperatorCaller,
    session: SessionDep,
    state: RequestState | None = None,
    kind: RequestKind | None = None,
    overdue: bool = False,
    # Patterns as PublicIdPath's: anything else names nothing, and a NUL fails on PostgreSQL.
    platform: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="a platform code")] = None,
    before: Annotated[
        str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a request_id: only requests older than it")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=requests_service.MAX_PAGE)] = 50,
) -> RequestPageOut:
    page = requests_service.operator_requests(
        session, limit=limit, before=before, state=state, kind=kind, overdue=overdue, platform=platform
    )
    return RequestPageOut(
        requests=[RequestSummaryOut.model_validate(r, from_attributes=True) for r in page.requests],
        next_before=page.next_before,
    )


@operator.get(
    "/requests/{request_id}",
    summary="A request's state and each platform's progress",
    responses=responses(Unauthenticated, NotFound),
)
def get_request(request_id: PublicIdPath, _: OperatorCaller, session: SessionDep) -> ProgressOut:
    request = requests_repo.request_by_public_id(session, request_id)
    if request is None:
        raise NotFound(f"no request {request_id!r}")
    return ProgressOut.of(fanout.progress(session, request))
