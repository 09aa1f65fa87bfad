"""Simulated platforms: real HTTP servers built only on the platform SDK.

Each enterprise of the catalogue (or a synthetic one) gets an account store consistent
with the simulated ledger (``tongcha.sim.accounts``), handlers that answer the hub's
operations from it, and a uvicorn server on 127.0.0.1. ``Knobs`` make a platform slow,
failing, hanging, asynchronous, malformed or flapping, to exercise the hub's timeouts,
retries and circuit breaker. A ``PlatformFleet`` runs them all on one background loop::

    with PlatformFleet(hub_url=hub, hub_keys=keys, ledger=SynthConfig(numbers=500)) as fleet:
        jd = fleet.add(enterprise("JD"), Knobs(latency_ms=(5, 40)))
        register(jd.code, jd.base_url, jd.public_jwk)   # at the hub
        ...
        jd.stop(); jd.start()                            # down and back, same port
        assert jd.accounts.accounts[ref].number is None  # detached, never deleted
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from joserfc.jwk import ECKey, KeySet

from tongcha.platforms.catalogue import ENTERPRISES, EnterpriseEntry
from tongcha.sdk import protocol
from tongcha.sdk.platform import (
    LATER,
    HandlerError,
    Later,
    PlatformConfig,
    PlatformHandlers,
    ReportFailed,
    TongchaPlatform,
)
from tongcha.sdk.protocol import (
    Account,
    ActionAnswer,
    ActionQuery,
    Answer,
    AppCount,
    BindingQuery,
    CountAnswer,
    ListAnswer,
    Operation,
    UnbindAnswer,
    UnbindQuery,
)
from tongcha.sdk.stores import TaskStore
from tongcha.sim.accounts import AccountStore, Tenure, build_accounts, mask_name, tenures_from_events
from tongcha.sim.ledger import SynthConfig, generate
from tongcha.sim.servers import LoopbackServer, Message, Receive, Scope, Send, ServerHost

__all__ = ["Knobs", "PlatformFleet", "SimHandlers", "SimPlatform", "enterprise"]

log = logging.getLogger("tongcha.sim.platforms")
A = TypeVar("A", bound=Answer)
Delay = float | tuple[float, float]

# A deferred answer is re-sent this many times while the hub cannot take it.
_REPORT_ATTEMPTS = 6


@dataclass
class Knobs:
    """How a simulated platform behaves. Rates are shares of calls (0 to 1); delays are
    milliseconds, fixed or a (low, high) range. Change them while the platform runs
    (``flap`` is read when the platform starts)."""

    # Time the handler takes for every call.
    latency_ms: Delay = 0.0
    # Calls answered 503 UNAVAILABLE before acting (not stored: a retry runs again).
    error_rate: float = 0.0
    # Calls held for ``hang_seconds`` before anything reads them (a stuck front end,
    # longer than the hub waits), then answered 504; a retry runs normally.
    hang_rate: float = 0.0
    hang_seconds: float = 60.0
    # Calls answered 202, then acted on and reported with a signed callback later.
    async_rate: float = 0.0
    callback_delay_ms: Delay = 200.0
    # Successful calls whose 200 body does not fit the operation's answer model.
    malformed_rate: float = 0.0
    # (up_seconds, down_seconds): the server stops and starts again in turn.
    flap: tuple[float, float] | None = None
    seed: int = 0


def enterprise(code: str) -> EnterpriseEntry:
    """The catalogue entry for ``code`` (``"JD"``, ``"BAIDU"``...)."""
    for entry in ENTERPRISES:
        if entry.code == code:
            return entry
    raise KeyError(f"no enterprise {code!r} in the catalogue")


class SimHandlers(PlatformHandlers):
    """The operations, answered from an ``AccountStore`` and shaped by ``Knobs``."""

    def __init__(
        self,
        accounts: AccountStore,
        knobs: Knobs,
        *,
        rng: random.Random,
        clock: Callable[[], datetime],
    ) -> None:
        self.accounts = accounts
        self.knobs = knobs
        self.sdk: TongchaPlatform | None = None
        self._rng = rng
        self._clock = clock
        self._deferred: set[asyncio.Task[None]] = set()

    async def count(self, query: BindingQuery) -> CountAnswer | Later:
        def answer() -> CountAnswer:
            counts = self.accounts.count(query.number, query.bound_from, query.bound_until)
            return CountAnswer(counts=[AppCount(app=app, count=n) for app, n in counts.items()])

        return await self._serve(query.task_id, answer)

    async def list(self, query: BindingQuery) -> ListAnswer | Later:
        def answer() -> ListAnswer:
            found = self.accounts.bound_between(query.number, query.bound_from, query.bound_until)
            return ListAnswer(
                accounts=[
                    Account(
                        app=a.app,
                        account_ref=a.account_ref,
                        display_name_masked=mask_name(a.display_name),
                        bound_at=a.bound_at,
                        last_active_at=a.last_active_at,
                    )
                    for a in found
                ]
            )

        return await self._serve(query.task_id, answer)

    async def unbind(self, query: UnbindQuery) -> UnbindAnswer | Later:
        def answer() -> UnbindAnswer:
            unbound, kept = self.accounts.unbind(
                query.number, query.bound_before, task_id=query.task_id, at=self._clock()
            )
            return UnbindAnswer(unbound=unbound, kept=kept)

        return await self._serve(query.task_id, answer)

    async def action(self, query: ActionQuery) -> ActionAnswer | Later:
        def answer() -> ActionAnswer:
            refusal = self.accounts.act(
                query.number, query.account_ref, query.action, task_id=query.task_id, at=self._clock()
            )
            return ActionAnswer(outcome="done") if refusal is None else ActionAnswer(outcome="refused", reason=refusal)

        return await self._serve(query.task_id, answer)

    async def _serve(self, task_id: str, answer: Callable[[], A]) -> A | Later:
        knobs = self.knobs
        await asyncio.sleep(_seconds(knobs.latency_ms, self._rng))
        if knobs.error_rate and self._rng.random() < knobs.error_rate:
            raise HandlerError(503, "UNAVAILABLE", "the simulated platform is overloaded; try again")
        if knobs.async_rate and self._rng.random() < knobs.async_rate:
            delay = _seconds(knobs.callback_delay_ms, self._rng)
            later = asyncio.create_task(self._answer_later(task_id, answer, delay), name=f"answer {task_id}")
            self._deferred.add(later)
            later.add_done_callback(self._deferred.discard)
            return LATER
        return answer()

    async def _answer_later(self, task_id: str, answer: Callable[[], Answer], delay: float) -> None:
        assert self.sdk is not None, "SimHandlers.sdk is set when the platform is built"
        await asyncio.sleep(delay)
        result = answer()
        pause = 0.2
        for _ in range(_REPORT_ATTEMPTS):
            try:
                status = await self.sdk.report(task_id, result)
            except ReportFailed as exc:
                log.info("%s: report of %s failed (%s); retrying", self.accounts.enterprise.code, task_id, exc)
            else:
                if status < 500:
                    if status >= 400:
                        log.warning(
                            "%s: the hub refused the report of %s (%d)", self.accounts.enterprise.code, task_id, status
                        )
                    return
            await asyncio.sleep(pause)
            pause *= 2
        log.warning("%s: gave up reporting %s", self.accounts.enterprise.code, task_id)


def _seconds(delay_ms: Delay, rng: random.Random) -> float:
    if isinstance(delay_ms, tuple):
        low, high = delay_ms
        return rng.uniform(low, high) / 1000
    return delay_ms / 1000


# Bodies that do not fit any answer model: missing fields, wrong types, not JSON.
_MALFORMED_ANY = (b'{"unexpected": true}', b"<html><body>502 Bad Gateway</body></html>", b'{"counts": [', b"[]")
_MALFORMED_BY_OPERATION = {
    Operation.bindings_count: b'{"counts": [{"app": "x", "count": -1}]}',
    Operation.bindings_list: b'{"accounts": [{"app": "x", "account_ref": 7}]}',
    Operation.bindings_unbind: b'{"unbound": "all", "kept": -1}',
    Operation.account_action: b'{"outcome": "maybe"}',
    Operation.labels_list: b'{"labels": null}',
    Operation.labels_clear: b'{"cleared": "some"}',
}


class _FrontEnd:
    """What sits in front of the SDK: where calls hang, and where answers get mangled."""

    def __init__(self, sdk: TongchaPlatform, knobs: Knobs, rng: random.Random) -> None:
        self.sdk = sdk
        self.knobs = knobs
        self._rng = rng

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.sdk(scope, receive, send)
            return
        knobs = self.knobs
        if knobs.hang_rate and self._rng.random() < knobs.hang_rate:
            await asyncio.sleep(knobs.hang_seconds)
            await _send_json(
                send, 504, b'{"error": {"code": "TIMEOUT", "message": "upstream timed out", "details": []}}'
            )
            return
        if knobs.malformed_rate and self._rng.random() < knobs.malformed_rate:
            await self.sdk(scope, receive, self._mangling(send, scope["path"]))
            return
        await self.sdk(scope, receive, send)

    def _mangling(self, send: Send, path: str) -> Send:
        operation = next((op for p, op in protocol.OPERATION_BY_PATH.items() if path.endswith(p)), None)
        choices = [*_MALFORMED_ANY, *([_MALFORMED_BY_OPERATION[operation]] if operation else [])]
        body = self._rng.choice(choices)
        status = 0

        async def mangled(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 200:
                    headers = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                    message = {**message, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
            elif message["type"] == "http.response.body" and status == 200:
                message = {**message, "body": body, "more_body": False}
            await send(message)

        return mangled


async def _send_json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SimPlatform:
    """A running simulated platform: register ``code``, ``base_url`` and ``public_jwk``
    at the hub; inspect ``accounts``; turn ``knobs``; ``stop()`` and ``start()`` it."""

    def __init__(
        self,
        *,
        code: str,
        accounts: AccountStore,
        knobs: Knobs,
        signing_key: ECKey,
        handlers: SimHandlers,
        sdk: TongchaPlatform,
        server: LoopbackServer,
        host: ServerHost,
    ) -> None:
        self.code = code
        self.accounts = accounts
        self.knobs = knobs
        self.signing_key = signing_key
        self.handlers = handlers
        self.sdk = sdk
        self.server = server
        self._host = host
        self._flapping: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def public_jwk(self) -> dict[str, Any]:
        return protocol.public_jwk(self.signing_key)

    @property
    def is_up(self) -> bool:
        return self.server.is_up

    def stop(self) -> None:
        """Take the platform down (connections refused) until ``start``; flapping pauses."""
        self._host.call(self.stop_here())

    def start(self) -> None:
        """Bring it back on the same port; flapping resumes if ``knobs.flap`` is set."""
        self._host.call(self.start_here())

    async def start_here(self) -> None:
        """``start`` for code running on the fleet's loop."""
        await self.server.start_here()
        if self.knobs.flap is not None and self._flapping is None:
            self._flapping = asyncio.create_task(self._flap(), name=f"flap {self.code}")

    async def stop_here(self) -> None:
        """``stop`` for code running on the fleet's loop."""
        if self._flapping is not None:
            self._flapping.cancel()
            await asyncio.wait({self._flapping})
            self._flapping = None
        await self.server.stop_here()

    async def _flap(self) -> None:
        while self.knobs.flap is not None:
            up, down = self.knobs.flap
            await asyncio.sleep(up)
            await self.server.stop_here()
            await asyncio.sleep(down)
            await self.server.start_here()
        self._flapping = None


class PlatformFleet:
    """Simulated platforms on loopback, all served from one background event loop.

    ``ledger`` (or ready ``tenures``) is the number history the account stores follow;
    ``hub_url`` receives callbacks (and serves the JWKS when ``hub_keys`` is None).
    """

    def __init__(
        self,
        *,
        hub_url: str,
        hub_keys: KeySet | None = None,
        ledger: SynthConfig | None = None,
        tenures: Mapping[str, Sequence[Tenure]] | None = None,
        today: date | None = None,
        seed: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        cfg = ledger or SynthConfig(numbers=1_000)
        self.hub_url = hub_url
        self.hub_keys = hub_keys
        self.tenures: Mapping[str, Sequence[Tenure]] = (
            tenures if tenures is not None else tenures_from_events(generate(cfg))
        )
        self.today = today or cfg.today
        self.seed = cfg.seed if seed is None else seed
        self.platforms: dict[str, SimPlatform] = {}
        self._clock = clock
        self._host = ServerHost()
        self._stopped = False

    def add(
        self,
        entry: EnterpriseEntry,
        knobs: Knobs | None = None,
        *,
        code: str | None = None,
        signing_key: ECKey | None = None,
        store: TaskStore | None = None,
        port: int = 0,
    ) -> SimPlatform:
        """Build the enterprise's accounts and start its server; returns once it listens."""
        code = code or entry.code
        if code in self.platforms:
            raise ValueError(f"platform {code} is already in the fleet")
        knobs = knobs or Knobs()
        key = signing_key or protocol.new_signing_key(f"{code.lower()}-1")
        accounts = build_accounts(entry, self.tenures, seed=self.seed, today=self.today)
        rng = random.Random(f"{knobs.seed}:{code}")
        handlers = SimHandlers(accounts, knobs, rng=rng, clock=self._clock)
        config = PlatformConfig(code=code, hub_url=self.hub_url, signing_key=key, hub_keys=self.hub_keys)
        sdk = TongchaPlatform(handlers, config, store)
        handlers.sdk = sdk
        server = LoopbackServer(self._host, _FrontEnd(sdk, knobs, rng), port=port)
        platform = SimPlatform(
            code=code,
            accounts=accounts,
            knobs=knobs,
            signing_key=key,
            handlers=handlers,
            sdk=sdk,
            server=server,
            host=self._host,
        )
        self._host.servers.append(server)
        platform.start()
        self.platforms[code] = platform
        return platform

    def add_all(self, entries: Iterable[EnterpriseEntry], knobs: Knobs | None = None) -> list[SimPlatform]:
        """Several platforms, each with its own copy of ``knobs``."""
        return [self.add(entry, None if knobs is None else dataclasses.replace(knobs)) for entry in entries]

    def __getitem__(self, code: str) -> SimPlatform:
        return self.platforms[code]

    def stop(self) -> None:
        """Stop every server and the background loop."""
        if self._stopped:
            return
        self._stopped = True
        self._host.call(_gather(platform.stop_here() for platform in self.platforms.values()))
        self._host.close()

    def __enter__(self) -> PlatformFleet:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


async def _gather(steps: Iterable[Coroutine[Any, Any, None]]) -> None:
    await asyncio.gather(*steps)
