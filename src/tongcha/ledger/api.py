"""Ledger routes: carriers send events; platforms ask whether numbers changed hands."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

import orjson
from fastapi import APIRouter, Body, Query, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from tongcha.kit.correlator import correlator
from tongcha.kit.errors import (
    OutOfRange,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
    responses,
)
from tongcha.kit.phone import parse_mobile
from tongcha.ledger import service
from tongcha.ledger.batch import BatchChecker
from tongcha.ledger.index import LedgerIndex
from tongcha.ledger.parse import json_array_events, numbered_lines
from tongcha.ledger.schemas import (
    CamaraCheckIn,
    CamaraCheckOut,
    IngestOut,
    ReassignmentOut,
    events_body_schema,
)
from tongcha.ledger.tasks import CheckRecord, Receipts
from tongcha.web.deps import CarrierCaller, HubDep, IndexDep, PlatformCaller
from tongcha.web.state import HubState

router = APIRouter()

MAX_JSON_BODY = 64 << 20
SPOOL_IN_MEMORY = 16 << 20


async def _spool(request: Request, limit: int | None = None) -> IO[bytes]:
    """The body, in memory while small and on disk beyond: batches may be any size."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - the caller closes it
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if limit is not None and size > limit:
            spool.close()
            raise PayloadTooLarge(f"a JSON array body is limited to {limit >> 20} MiB; send application/x-ndjson")
        spool.write(chunk)
    spool.seek(0)
    return spool


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


@router.post(
    "/carrier/v1/events",
    response_model=IngestOut,
    tags=["carrier"],
    summary="Send number lifecycle events (JSON array or NDJSON stream)",
    responses=responses(Unauthenticated, PayloadTooLarge, UnsupportedMediaType),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": events_body_schema()},
                "application/x-ndjson": {"schema": {"type": "string", "description": "one event object per line"}},
            },
            "required": True,
        }
    },
)
async def post_events(request: Request, caller: CarrierCaller, state: HubDep) -> Response:
    media = _media_type(request)
    if media not in ("application/json", "application/x-ndjson", "application/jsonl"):
        raise UnsupportedMediaType("send application/json (an array) or application/x-ndjson")
    body = await _spool(request, MAX_JSON_BODY if media == "application/json" else None)
    try:
        result = await run_in_threadpool(_ingest, state, caller.party_id, body, media)
    finally:
        body.close()
    return Response(orjson.dumps(result.as_dict()), media_type="application/json")


def _ingest(state: HubState, carrier_id: int, body: IO[bytes], media: str) -> service.IngestResult:
    events: Any = json_array_events(body.read()) if media == "application/json" else numbered_lines(body)
    # One connection for the write and the index's refresh: a checkout (and the pool's
    # ping of the connection) less for every post.
    with state.engine.connect() as conn:
        with state.sessions(bind=conn) as session, session.begin():
            carrier, known = service.carrier_among(session, carrier_id)
            if carrier is None:
                raise Unauthenticated("the carrier of this credential no longer exists")
            result = service.ingest(
                session, carrier, events, clock=state.clock, settings=state.settings, source="api", carriers=known
            )
        # This process answers checks too: let them see the change at once. The carrier's
        # batch was written holding the whole ledger, so its revision is settled: the index
        # goes up to it without waiting for the import jobs that may have started since.
        with state.sessions(bind=conn) as session:
            state.index().refresh(session, settled=result.revision)
    return result


@router.get(
    "/platform/v1/reassignments/{number}",
    response_model=ReassignmentOut,
    tags=["platform"],
    summary="Has this number changed hands since the given day?",
    responses=responses(Unauthenticated, OutOfRange),
)
async def get_reassignment(
    number: str,
    caller: PlatformCaller,
    state: HubDep,
    index: IndexDep,
    since: str = Query(description="RFC 3339 full-date, e.g. 2024-01-31"),
) -> Response:
    ans = await _check_one(state, index, caller.party_id, number, since, "single", correlator.get())
    return Response(orjson.dumps(ans.as_dict()), media_type="application/json")


async def _check_one(
    state: HubState,
    index: LedgerIndex,
    platform_id: int,
    number: str,
    since: str,
    channel: str,
    correlator_value: str,
    fields: tuple[str, str] = ("number", "since"),
) -> service.Answer:
    """Answer one check and wait until it is in the check log, with the request's
    correlator; errors name ``fields``, the request's names for the number and the day."""
    parsed = parse_mobile(number, fields[0])
    day = service.parse_since(since, service.today_in(state.settings, state.clock), fields[1])
    ans = service.answer(parsed, day, *index.lookup(parsed))
    record = CheckRecord(
        platform_id, ans.number, ans.since, ans.result, channel, state.clock.now(), correlator=correlator_value
    )
    await state.checklog.record(record)
    return ans


@router.post(
    "/number-recycling/v0.2/check",
    response_model=CamaraCheckOut,
    tags=["platform"],
    summary="CAMARA Number Recycling: has the number been recycled since the date?",
    responses=responses(Unauthenticated, OutOfRange),
)
async def camara_check(
    caller: PlatformCaller, state: HubDep, index: IndexDep, body: CamaraCheckIn = Body()
) -> Response:
    ans = await _check_one(
        state,
        index,
        caller.party_id,
        body.phoneNumber,
        body.specifiedDate,
        "camara",
        correlator.get(),
        ("phoneNumber", "specifiedDate"),
    )
    recycled = service.camara_recycled(ans)
    return Response(orjson.dumps({"phoneNumberRecycled": recycled}), media_type="application/json")


@router.post(
    "/platform/v1/reassignments:batch",
    tags=["platform"],
    summary="Batch check: CSV or NDJSON of number,since rows in; the same rows with result out",
    responses=responses(Unauthenticated, UnsupportedMediaType),
    response_class=StreamingResponse,
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string", "example": "number,since\n+8613800138000,2024-01-31\n"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            "required": True,
        }
    },
)
async def post_batch(request: Request, caller: PlatformCaller, state: HubDep, index: IndexDep) -> StreamingResponse:
    media = _media_type(request)
    fmt = {"text/csv": "csv", "application/x-ndjson": "ndjson", "application/jsonl": "ndjson"}.get(media)
    if fmt is None:
        raise UnsupportedMediaType("send text/csv or application/x-ndjson")
    body = await _spool(request)
    checker = BatchChecker(index, service.today_in(state.settings, state.clock), fmt)
    batch_id = await run_in_threadpool(_new_batch, state, caller.party_id)
    asked_as = correlator.get()  # the answer is streamed after the middleware has finished

    def produce() -> Iterator[bytes]:
        # Every row answered is in the check log before the answer ends; if a block cannot
        # be written, the answer is cut short (no last chunk), so that no client keeps
        # answers that the log does not hold.
        receipts = Receipts(state.checklog)
        try:
            for block in checker.run(_read_chunks(body)):
                receipts.record_checked(checker.blocks, caller.party_id, batch_id, state.clock.now(), asked_as)
                yield block
            receipts.check(wait=True)
        finally:
            body.close()
            _finish_batch(state, batch_id, checker.stats.rows, checker.stats.invalid)

    async def stream() -> AsyncIterator[bytes]:
        async for block in iterate_in_threadpool(produce()):
            yield block

    media_out = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(stream(), media_type=media_out, headers={"x-batch-id": str(batch_id)})


def _read_chunks(body: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := body.read(size):
        yield chunk


def _new_batch(state: HubState, platform_id: int) -> int:
    from tongcha.ledger import repository as repo

    with state.sessions() as session, session.begin():
        return repo.new_batch(session, platform_id, state.clock.now()).id


def _finish_batch(state: HubState, batch_id: int, rows: int, invalid: int) -> None:
    from tongcha.ledger.models import ReassignmentBatch

    with state.sessions() as session, session.begin():
        batch = session.get(ReassignmentBatch, batch_id)
        if batch is not None:
            batch.rows = rows
            batch.invalid_rows = invalid
