"""The platform SDK: what an internet platform embeds to answer the Tongcha hub.

``TongchaPlatform`` is a plain ASGI application. It accepts the hub's signed ``POST``
calls (API.md "Hub → platform"), checks the signature against the hub's published keys,
refuses replays, parses the body, and hands a typed query to the platform's handlers; it
answers every task id once and repeats that answer when the hub asks again. Serve it
alone (``uvicorn module:app``) or mount it in an existing FastAPI/Starlette app::

    sdk = TongchaPlatform(MyHandlers(), PlatformConfig(code="ACME", hub_url=..., signing_key=key))
    app.mount("/hooks", sdk)   # the hub then calls https://acme.example/hooks/tongcha/v1/...

Handlers subclass ``PlatformHandlers`` and implement the operations they support; the
others answer ``404``. A handler may return ``LATER`` to answer ``202`` now and report
the answer later with ``await sdk.report(task_id, answer)``.

Duplicates: the first answer of a task id is stored (``stores.TaskStore``). The same task
while the first attempt is still running waits for that attempt, up to
``PlatformConfig.duplicate_wait_seconds``, and shares its answer; past that it answers
``503 UNAVAILABLE`` with details ``[{"reason": "IN_PROGRESS"}]`` (a 5xx, so the hub asks
again later, where a 409 would tell it the task can never succeed). It never runs the
handler a second time. The same task id with a different body or operation is
``409 CONFLICT``. A handler that raises is not stored, so the hub's retry runs it again:
a handler should raise before it acts, not after.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final
from urllib.parse import quote

import httpx
from joserfc.jwk import ECKey, KeySet
from pydantic import BaseModel, ValidationError

from tongcha.sdk import protocol
from tongcha.sdk.protocol import (
    ActionAnswer,
    ActionQuery,
    Answer,
    BindingQuery,
    CallbackBody,
    CallbackError,
    ClearAnswer,
    CountAnswer,
    LabelQuery,
    LabelsAnswer,
    ListAnswer,
    Operation,
    UnbindAnswer,
    UnbindQuery,
)
from tongcha.sdk.stores import MemoryTaskStore, StoredAnswer, TaskStore

__all__ = [
    "LATER",
    "HandlerError",
    "Later",
    "PlatformConfig",
    "PlatformHandlers",
    "ReportFailed",
    "TongchaPlatform",
]

log = logging.getLogger("tongcha.sdk")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES: Final = 1 << 20
_CORRELATOR = re.compile(rb"[A-Za-z0-9\-_.:]{1,128}")
_OPERATION_ROOT = "/tongcha/v1/"
_ACCEPTED = StoredAnswer(202, b'{"accepted":true}')


class Later(Enum):
    """The type of ``LATER``."""

    LATER = "later"


LATER: Final = Later.LATER
"""Returned by a handler that will answer later through ``TongchaPlatform.report``."""


class HandlerError(Exception):
    """Raise in a handler to answer with this status and error code.

    The answer is not stored, so the hub's retry of the task runs the handler again:
    use it for "not now" (``503 UNAVAILABLE``), before acting.
    """

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


class ReportFailed(Exception):
    """A callback did not reach the hub (connection refused, timeout...): try again later."""


class _KeysUnavailable(Exception):
    pass


class PlatformHandlers:
    """What a platform implements: override the operations it supports.

    Each method gets a validated query and returns the operation's answer, or ``LATER``.
    An operation left as inherited answers ``404 NOT_FOUND``. Handlers run on the server's
    event loop: blocking work belongs in ``asyncio.to_thread``.
    """

    async def count(self, query: BindingQuery) -> CountAnswer | Later:
        """Accounts bound to ``query.number`` with ``bound_from <= bound_at < bound_until``
        (no upper bound when ``bound_until`` is None), counted per app (``independent``
        account model) or once for the enterprise (``unified``)."""
        raise NotImplementedError

    async def list(self, query: BindingQuery) -> ListAnswer | Later:
        """The same accounts as ``count``, one entry each, with a masked display name."""
        raise NotImplementedError

    async def unbind(self, query: UnbindQuery) -> UnbindAnswer | Later:
        """Detach the number from every binding made strictly before ``bound_before``;
        keep the others (they belong to the current holder). Never delete an account."""
        raise NotImplementedError

    async def action(self, query: ActionQuery) -> ActionAnswer | Later:
        """Unbind, freeze or cancel one account bound to the number, or refuse with a reason."""
        raise NotImplementedError

    async def labels_list(self, query: LabelQuery) -> LabelsAnswer | Later:
        """Label providers: the labels on the number (made before ``labeled_before``, if given)."""
        raise NotImplementedError

    async def labels_clear(self, query: LabelQuery) -> ClearAnswer | Later:
        """Label providers: remove those labels and say how many."""
        raise NotImplementedError


def _implements(handlers: PlatformHandlers, operation: Operation) -> bool:
    method = getattr(type(handlers), operation.value, None)
    return method is not None and method is not getattr(PlatformHandlers, operation.value)


@dataclass(frozen=True, slots=True)
class PlatformConfig:
    """How a platform is known to the hub.

    ``code`` is the platform's code at the hub (the audience the hub signs for).
    ``signing_key`` is the platform's private key: it signs callbacks, and its public half
    is registered at the hub. ``hub_keys`` pins the hub's public keys; without it the SDK
    fetches ``{hub_url}/.well-known/jwks.json``, and fetches again when a call names a
    key it does not know (the hub rotated) or the copy is older than
    ``jwks_max_age_seconds``, never more often than every ``jwks_refetch_seconds``.
    """

    code: str
    hub_url: str
    signing_key: ECKey
    hub_keys: KeySet | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    jwks_refetch_seconds: float = 5.0
    jwks_max_age_seconds: float = 3600.0
    duplicate_wait_seconds: float = 10.0
    # A claim older than this is taken to be left by a process that died mid-task.
    claim_lease_seconds: float = 300.0
    callback_timeout_seconds: float = 10.0


class TongchaPlatform:
    """The ASGI application a platform serves (or mounts) for the hub's calls.

    ``store`` remembers answered tasks and used token ids; the default keeps them in
    memory, ``SqliteTaskStore`` keeps them across restarts. ``clock`` gives the wall-clock
    time in seconds (tokens carry wall-clock times).
    """

    def __init__(
        self,
        handlers: PlatformHandlers,
        config: PlatformConfig,
        store: TaskStore | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.handlers = handlers
        self.config = config
        self.store: TaskStore = store if store is not None else MemoryTaskStore()
        self._clock = clock
        self._methods: dict[Operation, Callable[[Any], Awaitable[Any]]] = {
            op: getattr(handlers, op.value) for op in Operation if _implements(handlers, op)
        }
        self._inflight: dict[str, tuple[str, asyncio.Future[StoredAnswer]]] = {}
        self._keys = config.hub_keys
        self._kids = _kids(config.hub_keys)
        self._keys_fetched_at = -math.inf
        self._keys_tried_at = -math.inf
        self._keys_lock: asyncio.Lock | None = None
        self._http = http
        self._owns_http = http is None
        self._http_loop: asyncio.AbstractEventLoop | None = None

    @property
    def supported(self) -> frozenset[Operation]:
        """The operations the handlers implement."""
        return frozenset(self._methods)

    # --- ASGI -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._serve_http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
        # Anything else (websockets) is not ours: returning unanswered refuses it.

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        token: str | None = None
        correlator: bytes | None = None
        declared_length = 0
        for name, value in scope["headers"]:
            if name == b"tongcha-signature":
                token = value.decode("latin-1")
            elif name == b"x-correlator":
                correlator = value if _CORRELATOR.fullmatch(value) else None
            elif name == b"content-length":
                declared_length = int(value) if value.isdigit() else 0
        operation = _operation_at(scope["path"])
        if operation is None:
            answer = _error(404, "NOT_FOUND", "no such operation")
        elif scope["method"] != "POST":
            answer = _error(405, "INVALID_ARGUMENT", "only POST is allowed here")
        elif operation not in self._methods:
            answer = _error(404, "NOT_FOUND", f"this platform does not implement {operation.path}")
        elif declared_length > self.config.max_body_bytes:
            answer = _too_large(self.config.max_body_bytes)
        else:
            try:
                body = await _read_body(receive, self.config.max_body_bytes)
            except _ClientGone:
                return
            except _TooLarge:
                answer = _too_large(self.config.max_body_bytes)
            else:
                answer = await self._answer(operation, token, body)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer.body)).encode())]
        if correlator is not None:
            headers.append((b"x-correlator", correlator))
        if answer.status == 405:
            headers.append((b"allow", b"POST"))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- one call ---------------------------------------------------------------

    async def _answer(self, operation: Operation, token: str | None, body: bytes) -> StoredAnswer:
        try:
            keys = await self._hub_keys(protocol.peek_kid(token) if token else None)
        except _KeysUnavailable as exc:
            return _error(503, "UNAVAILABLE", str(exc))
        now = self._clock()
        try:
            verified = protocol.verify(
                token,
                keys,
                audience=self.config.code,
                issuer=protocol.HUB_ISSUER,
                path=operation.path,
                body=body,
                now=now,
            )
        except protocol.SignatureError as exc:
            return _error(401, "UNAUTHENTICATED", str(exc))
        # verify() accepts a token until exp + leeway; remember it that long.
        expires_at = verified.expires_at + protocol.LEEWAY_SECONDS
        if not await self.store.first_use_of_jti(verified.jti, expires_at=expires_at, now=now):
            return _error(401, "UNAUTHENTICATED", "this signature was already used (replay)")
        try:
            query = protocol.QUERY_TYPES[operation].model_validate_json(body)
        except ValidationError as exc:
            return _error(400, "INVALID_ARGUMENT", "the body does not fit the operation", _issues(exc))
        return await self._answer_once(operation, query)

    async def _answer_once(self, operation: Operation, query: protocol.Query) -> StoredAnswer:
        task_id = query.task_id
        fingerprint = _fingerprint(operation, query)
        running = self._inflight.get(task_id)
        if running is not None:
            if running[0] != fingerprint:
                return _reused(task_id)
            return await self._await_first_attempt(task_id, running[1])
        first_attempt: asyncio.Future[StoredAnswer] = asyncio.get_running_loop().create_future()
        # Registered before any await, so a duplicate arriving meanwhile finds it.
        self._inflight[task_id] = (fingerprint, first_attempt)
        try:
            answer = await self._claim_and_run(operation, query, fingerprint)
        except BaseException:
            first_attempt.cancel()
            raise
        finally:
            del self._inflight[task_id]
        first_attempt.set_result(answer)
        return answer

    async def _await_first_attempt(self, task_id: str, first_attempt: asyncio.Future[StoredAnswer]) -> StoredAnswer:
        done, _ = await asyncio.wait({first_attempt}, timeout=self.config.duplicate_wait_seconds)
        if not done:
            return _in_progress(task_id)
        if first_attempt.cancelled():
            return _error(503, "UNAVAILABLE", f"the first attempt at task {task_id} was interrupted; ask again")
        return first_attempt.result()

    async def _claim_and_run(self, operation: Operation, query: protocol.Query, fingerprint: str) -> StoredAnswer:
        task_id = query.task_id
        record = await self.store.claim(
            task_id, fingerprint, now=self._clock(), lease_seconds=self.config.claim_lease_seconds
        )
        if record is not None:
            if record.fingerprint != fingerprint:
                return _reused(task_id)
            return record.answer if record.answer is not None else _in_progress(task_id)
        finished = False
        try:
            result = await self._methods[operation](query)
            answer = _render(operation, result)
            if answer is None:
                log.error(
                    "the %s handler returned %r, not a %s", operation.value, type(result), _answer_name(operation)
                )
                return _error(500, "INTERNAL", "the platform's handler gave an answer of the wrong type")
            await self.store.finish(task_id, answer)
            finished = True
            return answer
        except HandlerError as exc:
            return _error(exc.status, exc.code, exc.message, exc.details)
        except Exception:
            log.exception("the %s handler failed on task %s", operation.value, task_id)
            return _error(500, "INTERNAL", "the platform's handler failed; the task may be sent again")
        finally:
            if not finished:
                await self.store.release(task_id)

    # --- the hub's keys ---------------------------------------------------------

    async def _hub_keys(self, kid: str | None) -> KeySet:
        if self.config.hub_keys is not None:
            return self.config.hub_keys
        if self._keys_wanted(kid):
            if self._keys_lock is None:
                self._keys_lock = asyncio.Lock()
            async with self._keys_lock:
                # Asked again: another request may have fetched while this one waited.
                due = time.monotonic() - self._keys_tried_at >= self.config.jwks_refetch_seconds
                fetched = due and self._keys_wanted(kid) and await self._fetch_keys()
                if due and not fetched and (self._keys is None or (kid is not None and kid not in self._kids)):
                    raise _KeysUnavailable("the hub's keys could not be fetched; ask again later")
        if self._keys is None:
            raise _KeysUnavailable("the hub's keys are not known yet; ask again later")
        return self._keys

    def _keys_wanted(self, kid: str | None) -> bool:
        return (
            self._keys is None
            or (kid is not None and kid not in self._kids)
            or time.monotonic() - self._keys_fetched_at > self.config.jwks_max_age_seconds
        )

    async def _fetch_keys(self) -> bool:
        self._keys_tried_at = time.monotonic()
        url = self.config.hub_url.rstrip("/") + "/.well-known/jwks.json"
        try:
            response = await self._client().get(url)
            response.raise_for_status()
            keys = protocol.key_set(response.json())
        except (httpx.HTTPError, ValueError, protocol.SignatureError) as exc:
            log.warning("could not fetch the hub's keys from %s: %s", url, exc)
            return False
        self._keys, self._kids = keys, _kids(keys)
        self._keys_fetched_at = time.monotonic()
        return True

    def _client(self) -> httpx.AsyncClient:
        if not self._owns_http:
            assert self._http is not None
            return self._http
        loop = asyncio.get_running_loop()
        # An httpx client belongs to the loop it first ran on; a report() from another
        # loop (a script, a test) gets its own.
        if self._http is None or self._http_loop is not loop:
            self._http = httpx.AsyncClient(timeout=self.config.callback_timeout_seconds)
            self._http_loop = loop
        return self._http

    # --- answering later --------------------------------------------------------

    async def report(self, task_id: str, answer: Answer) -> int:
        """Send the answer of a task the handler deferred (``LATER``) to the hub.

        Returns the hub's HTTP status (2xx: taken; 5xx: try again later; 4xx: the hub
        refuses it, see its error body in the hub's log). Raises ``ReportFailed`` when the
        hub cannot be reached.
        """
        body = CallbackBody(answer=answer.model_dump(mode="json", exclude_none=True))
        return await self._deliver(task_id, body)

    async def report_error(self, task_id: str, code: str, message: str) -> int:
        """Tell the hub that a deferred task cannot be done, with a code and a reason."""
        body = CallbackBody(error=CallbackError(code=code[:64], message=message[:2000]))
        return await self._deliver(task_id, body)

    async def _deliver(self, task_id: str, callback: CallbackBody) -> int:
        body = callback.model_dump_json(exclude_none=True).encode()
        token = protocol.sign(
            self.config.signing_key,
            issuer=self.config.code,
            audience=protocol.HUB_ISSUER,
            path=protocol.callback_path(task_id),
            body=body,
            now=self._clock(),
        )
        url = self.config.hub_url.rstrip("/") + protocol.callback_path(quote(task_id, safe=""))
        headers = {protocol.SIGNATURE_HEADER: token, "content-type": "application/json"}
        try:
            response = await self._client().post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ReportFailed(f"the hub at {url} could not be reached: {exc.__class__.__name__}") from exc
        return response.status_code

    async def aclose(self) -> None:
        """Close the HTTP client the SDK opened (served alone, the ASGI lifespan does it).
        The task store is the caller's to close."""
        if self._owns_http and self._http is not None:
            client, self._http = self._http, None
            if self._http_loop is asyncio.get_running_loop():
                await client.aclose()


# --- helpers ------------------------------------------------------------------------


class _ClientGone(Exception):
    pass


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _operation_at(path: str) -> Operation | None:
    # Matched on the suffix so that the app works mounted under any prefix.
    start = path.rfind(_OPERATION_ROOT)
    return protocol.OPERATION_BY_PATH.get(path[start:]) if start >= 0 else None


def _kids(keys: KeySet | None) -> frozenset[str]:
    return frozenset(key.kid for key in keys.keys if key.kid) if keys is not None else frozenset()


def _fingerprint(operation: Operation, query: BaseModel) -> str:
    # The parsed fields, not the raw bytes: the same task re-sent with other spacing,
    # key order or a new signature is still the same task.
    return hashlib.sha256(f"{operation.value}\n{query.model_dump_json()}".encode()).hexdigest()


def _render(operation: Operation, result: object) -> StoredAnswer | None:
    if result is LATER:
        return _ACCEPTED
    if isinstance(result, protocol.ANSWER_TYPES[operation]):
        return StoredAnswer(200, result.model_dump_json(exclude_none=True).encode())
    return None


def _answer_name(operation: Operation) -> str:
    return protocol.ANSWER_TYPES[operation].__name__


def _error(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> StoredAnswer:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return StoredAnswer(status, json.dumps(body, ensure_ascii=False).encode())


def _too_large(limit: int) -> StoredAnswer:
    return _error(413, "INVALID_ARGUMENT", f"the body is larger than {limit} bytes")


def _reused(task_id: str) -> StoredAnswer:
    return _error(409, "CONFLICT", f"task {task_id} was already used for a different request")


def _in_progress(task_id: str) -> StoredAnswer:
    return _error(503, "UNAVAILABLE", f"task {task_id} is still running; ask again later", [{"reason": "IN_PROGRESS"}])


def _issues(exc: ValidationError) -> list[dict[str, Any]]:
    # Never echo the input back: it holds a phone number.
    return [{"field": ".".join(str(part) for part in e["loc"]), "issue": e["msg"]} for e in exc.errors()]
