"""Calling platforms: signed HTTP, per-call timeouts, a circuit breaker and a concurrency
limit per platform, and the worker loop that drives the durable tasks.

One slow or broken platform must never hold up the others: each platform has its own
semaphore and breaker, every call has its own timeout, and no call waits on another.

The calls go out through aiohttp's client: a fan-out makes many small calls at once, and
on the same machine it makes them about eight times faster than httpx (see
docs/benchmarks.md), which matters when one inquiry is twenty calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import aiohttp
import orjson
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit.clock import Clock
from tongcha.kit.db import UNAVAILABLE, Outage, database_trouble
from tongcha.kit.errors import Conflict, InvalidArgument, NotFound, OutOfRange
from tongcha.kit.keys import Keyring
from tongcha.kit.phone import e164, parse_mobile
from tongcha.kit.workdays import local_midnight
from tongcha.platforms import fanout, service
from tongcha.platforms import repository as repo
from tongcha.platforms.fanout import Outcome, TaskCall
from tongcha.platforms.models import FINAL_STATES, PlatformStatus
from tongcha.requests.models import Request, RequestKind, RequestState
from tongcha.sdk import protocol
from tongcha.sdk.protocol import ANSWER_TYPES, HUB_ISSUER, SIGNATURE_HEADER, Accepted, Operation

log = logging.getLogger("tongcha.dispatch")


@dataclass
class CircuitBreaker:
    """Closed → open after ``threshold`` failures in a row; after ``cooldown`` one trial
    call goes through (half-open): success closes it, failure opens it for twice as long."""

    threshold: int = 5
    cooldown: float = 10.0
    max_cooldown: float = 300.0
    failures: int = 0
    open_until: float = 0.0
    current_cooldown: float = 0.0
    trial_in_flight: bool = False

    def allow(self, now: float) -> bool:
        if self.failures < self.threshold:
            return True
        if now < self.open_until or self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def success(self) -> None:
        self.failures = 0
        self.current_cooldown = 0.0
        self.trial_in_flight = False

    def failure(self, now: float) -> None:
        self.failures += 1
        self.trial_in_flight = False
        if self.failures >= self.threshold:
            self.current_cooldown = min(self.max_cooldown, (self.current_cooldown * 2) or self.cooldown)
            self.open_until = now + self.current_cooldown

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold


def _error_message(status: int, content: bytes) -> str:
    try:
        body = orjson.loads(content)
        error = body.get("error", {}) if isinstance(body, dict) else {}
        message = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    except (orjson.JSONDecodeError, AttributeError):
        message = ""
    return f"HTTP {status}" + (f" ({message[:300]})" if message else "")


class Dispatcher:
    """Makes the hub's calls to platforms. One per process (it owns a connection pool)."""

    def __init__(
        self,
        keyring: Keyring,
        clock: Clock,
        *,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 10.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.keyring = keyring
        self.clock = clock
        # Signatures carry real time: the platform checks them against its own clock.
        self.wall = wall
        self._client: aiohttp.ClientSession | None = None
        self._breaker_threshold = breaker_threshold
        self._breaker_cooldown = breaker_cooldown
        self.breakers: dict[int, CircuitBreaker] = {}
        self._limits: dict[int, tuple[int, asyncio.Semaphore]] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            # No overall connection cap: each platform's semaphore is the limit.
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def breaker(self, platform_id: int) -> CircuitBreaker:
        breaker = self.breakers.get(platform_id)
        if breaker is None:
            breaker = self.breakers[platform_id] = CircuitBreaker(self._breaker_threshold, self._breaker_cooldown)
        return breaker

    def _limit(self, call: TaskCall) -> asyncio.Semaphore:
        held = self._limits.get(call.platform_id)
        if held is None or held[0] != call.max_concurrency:
            held = self._limits[call.platform_id] = (call.max_concurrency, asyncio.Semaphore(call.max_concurrency))
        return held[1]

    async def call(self, call: TaskCall, *, timeout_s: float | None = None) -> Outcome:
        """One signed call; never raises: every way it can go wrong is an Outcome."""
        breaker = self.breaker(call.platform_id)
        moment = time.monotonic()
        if not breaker.allow(moment):
            until = self.clock.now() + timedelta(seconds=max(0.0, breaker.open_until - moment))
            return Outcome.deferred(until, f"circuit open after {breaker.failures} failures in a row")
        timeout = min(call.timeout_s, timeout_s) if timeout_s else call.timeout_s
        async with self._limit(call):
            outcome = await self._post(call, timeout)
        if outcome.kind == "failed" and outcome.transient:
            breaker.failure(time.monotonic())
        elif outcome.kind != "deferred":
            breaker.success()
        return outcome

    async def _post(self, call: TaskCall, timeout: float) -> Outcome:
        path = call.operation.path
        try:
            token = protocol.sign(
                self.keyring.signing_key(),
                issuer=HUB_ISSUER,
                audience=call.platform_code,
                path=path,
                body=call.body,
                now=self.wall(),
            )
            async with self._http().post(
                call.base_url + path,
                data=call.body,
                headers={SIGNATURE_HEADER: token, "content-type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                status, content = response.status, await response.read()
        except TimeoutError:
            return Outcome.failed("timeout", f"no answer within {timeout * 1000:.0f} ms", transient=True)
        except aiohttp.ClientError as exc:
            return Outcome.failed("unreachable", f"{exc.__class__.__name__}: {exc}"[:300], transient=True)
        if status == 200:
            try:
                answer = ANSWER_TYPES[call.operation].model_validate_json(content)
            except ValidationError as exc:
                return Outcome.failed(
                    "malformed_answer",
                    f"the answer does not fit {call.operation.value}: {exc.error_count()} problem(s), first: "
                    f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}",
                    transient=False,
                )
            return Outcome.answered(answer.model_dump(mode="json"))
        if status == 202:
            try:
                Accepted.model_validate_json(content)
            except ValidationError:
                return Outcome.failed("malformed_answer", 'a 202 must say {"accepted": true}', transient=False)
            return Outcome.accepted()
        if status == 429 or status >= 500:
            return Outcome.failed(f"http_{status}", _error_message(status, content), transient=True)
        return Outcome.failed(f"http_{status}", _error_message(status, content), transient=False)

    async def call_all(self, calls: Sequence[TaskCall], *, timeout_s: float | None = None) -> list[Outcome]:
        return list(await asyncio.gather(*(self.call(c, timeout_s=timeout_s) for c in calls)))


class FanoutWorker:
    """Drives durable tasks: claims what is due, calls, records. Any number may run."""

    def __init__(
        self, sessions: sessionmaker[Session], dispatcher: Dispatcher, clock: Clock, *, max_in_flight: int = 256
    ) -> None:
        self.sessions = sessions
        self.dispatcher = dispatcher
        self.clock = clock
        self.max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[None]] = set()

    def _claim(self, limit: int) -> list[TaskCall]:
        with self.sessions() as session, session.begin():
            return fanout.claim_due(session, self.clock.now(), limit)

    def _record(self, results: list[tuple[TaskCall, Outcome]]) -> None:
        with self.sessions() as session, session.begin():
            fanout.record(session, results, self.clock.now())

    async def _run(self, call: TaskCall) -> None:
        outcome = await self.dispatcher.call(call)
        if outcome.kind == "failed":
            log.warning("task %s to %s: %s %s", call.task_id, call.platform_code, outcome.error_code, outcome.message)
        try:
            await asyncio.to_thread(self._record, [(call, outcome)])
        except UNAVAILABLE as exc:
            # Its lease runs out and it is asked again under the same task_id; the
            # platform answers what it stored, so nothing is acted on twice.
            log.warning("task %s: outcome not recorded, to be asked again: %s", call.task_id, database_trouble(exc))

    async def run_once(self) -> int:
        """Run everything due now and wait for it. Returns how many calls were made."""
        await asyncio.to_thread(self._purge)
        calls = await asyncio.to_thread(self._claim, self.max_in_flight)
        await asyncio.gather(*(self._run(c) for c in calls))
        return len(calls)

    async def run_until_idle(self, max_rounds: int = 100) -> int:
        total = 0
        for _ in range(max_rounds):
            made = await self.run_once()
            total += made
            if made == 0:
                break
        return total

    async def work_forever(
        self, *, idle_sleep: float = 0.2, stop: asyncio.Event | None = None, outage: Outage | None = None
    ) -> None:
        """Claim and run due calls until ``stop``; through an outage of the database too,
        which it waits out (``outage``)."""
        log.info("fan-out worker started")
        outage = outage or Outage("fan-out")
        last_purge = 0.0
        while stop is None or not stop.is_set():
            room = self.max_in_flight - len(self._in_flight)
            try:
                calls = await asyncio.to_thread(self._claim, room) if room > 0 else []
            except UNAVAILABLE as exc:
                await asyncio.sleep(outage.wait(exc))
                continue
            outage.over()
            for call in calls:
                task = asyncio.create_task(self._run(call))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if time.monotonic() - last_purge > 60:
                with contextlib.suppress(*UNAVAILABLE):  # purged next time round
                    await asyncio.to_thread(self._purge)
                    last_purge = time.monotonic()
            if not calls:
                await asyncio.sleep(idle_sleep)
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _purge(self) -> None:
        with self.sessions() as session, session.begin():
            repo.forget_expired_tokens(session, datetime.fromtimestamp(self.dispatcher.wall(), UTC))
            repo.mark_overdue(session, self.clock.now())


async def fan_out(
    sessions: sessionmaker[Session],
    dispatcher: Dispatcher,
    clock: Clock,
    *,
    kind: RequestKind,
    params: dict[str, Any],
    operation: Operation,
    body_for: Callable[[fanout.Callee], dict[str, Any]],
    only: Sequence[str] | None = None,
    wait_s: float = 1.5,
    give_up_after: timedelta = timedelta(hours=48),
    directory: service.PlatformDirectory | None = None,
) -> fanout.Progress:
    """Open a request with one task per callable platform and call them all at once.

    Platforms that answer within ``wait_s`` are recorded before this returns; the rest
    (slow, down, asynchronous) stay with the workers, and the progress says which.
    """

    def open_() -> tuple[Request, list[TaskCall]]:
        with sessions() as session, session.begin():
            platforms: Sequence[fanout.Callee] = (
                directory.callees() if directory is not None else service.callees(session)
            )
            if only is not None:
                wanted = set(only)
                platforms = [p for p in platforms if p.code in wanted]
            request, calls = fanout.open_request(
                session,
                kind=kind,
                params=params,
                operation=operation,
                targets=[fanout.Target(p, body_for(p)) for p in platforms],
                now=clock.now(),
                give_up_after=give_up_after,
                claim_for=timedelta(seconds=wait_s) + fanout.LEASE_MARGIN,
            )
            session.expunge(request)
            return request, calls

    request, calls = await asyncio.to_thread(open_)
    outcomes = await dispatcher.call_all(calls, timeout_s=wait_s)
    now = clock.now()
    transitions = [fanout.transition(c, o, now) for c, o in zip(calls, outcomes, strict=True)]

    def finish() -> None:
        with sessions() as session, session.begin():
            fanout.record(session, list(zip(calls, outcomes, strict=True)), now, transitions=transitions)

    await asyncio.to_thread(finish)
    # Built from what was just written rather than read back: this is the hot path.
    views = [
        fanout.TaskView(
            platform=c.platform_code,
            platform_name=c.platform_name,
            task_id=c.task_id,
            state=t["state"],
            attempts=t["attempts"],
            answer=t["answer"],
            answered_via=t["answered_via"],
            error_code=t["error_code"],
            error=t["last_error"],
            finished_at=t["finished_at"],
        )
        for c, t in sorted(zip(calls, transitions, strict=True), key=lambda pair: pair[0].platform_code)
    ]
    done = all(v.state in FINAL_STATES for v in views)
    return fanout.Progress(
        request_id=request.public_id,
        kind=request.kind,
        state=RequestState.completed.value if done else RequestState.open.value,
        params=request.params,
        created_at=request.created_at,
        completed_at=now if done else None,
        tasks=views,
    )


# The same floor as carrier events (ledger.parse.EARLIEST).
EARLIEST_BINDING_DAY = date(1980, 1, 1)


async def probe(
    sessions: sessionmaker[Session],
    dispatcher: Dispatcher,
    clock: Clock,
    *,
    number: str,
    operation: str,
    since: date,
    only: Sequence[str] | None,
    zone: tzinfo,
    wait_s: float,
    directory: service.PlatformDirectory | None = None,
) -> fanout.Progress:
    """The operator's probe: a count (or, for one named platform, a list) of the
    bindings on ``number`` made since the start of ``since``, asked now and kept as a
    request. The API and the CLI both run it."""
    if operation not in ("count", "list"):
        raise InvalidArgument("the operation is count or list")
    if operation == "list" and (only is None or len(only) != 1):
        # Listing accounts is a diagnostic for one platform's integration, not a way for
        # the operator to read every enterprise's accounts on a number.
        raise InvalidArgument("a list probe names exactly one platform")
    e164_number = e164(parse_mobile(number))
    today = clock.now().astimezone(zone).date()
    if not EARLIEST_BINDING_DAY <= since <= today:
        # Before 1980 the zone's offsets are not whole minutes (local mean time), which
        # RFC 3339 cannot write; and no platform holds a binding from then, or tomorrow.
        raise OutOfRange(f"bound_from must be a day from {EARLIEST_BINDING_DAY} to today")
    if only is not None:
        await asyncio.to_thread(_check_callable, sessions, only)
    bound_from = local_midnight(since, zone).isoformat()
    return await fan_out(
        sessions,
        dispatcher,
        clock,
        kind=RequestKind.probe,
        params={"number": e164_number, "operation": operation, "bound_from": bound_from},
        operation=Operation(operation),
        body_for=lambda _p: {"number": e164_number, "bound_from": bound_from},
        only=only,
        wait_s=wait_s,
        directory=directory,
    )


def _check_callable(sessions: sessionmaker[Session], codes: Sequence[str]) -> None:
    """A probe that names platforms asks each of them: each must exist and be callable."""
    with sessions() as session:
        for code in codes:
            platform = repo.platform_by_code(session, code)
            if platform is None:
                raise NotFound(f"no platform {code!r}")
            if platform.status != PlatformStatus.active.value:
                raise Conflict(f"{code} is {platform.status}: the hub does not call it")
            if not platform.base_url:
                raise Conflict(f"{code} has no base URL yet: set one before probing it")


async def run_claimed(
    sessions: sessionmaker[Session], dispatcher: Dispatcher, clock: Clock, calls: Sequence[TaskCall], wait_s: float
) -> None:
    """Call tasks this process claimed when it opened them, and record what came back;
    whatever does not answer within ``wait_s`` is left to the workers."""
    if not calls:
        return
    outcomes = await dispatcher.call_all(calls, timeout_s=wait_s)

    def record() -> None:
        with sessions() as session, session.begin():
            fanout.record(session, list(zip(calls, outcomes, strict=True)), clock.now())

    await asyncio.to_thread(record)
