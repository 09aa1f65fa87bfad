"""The platform SDK over real loopback HTTP: signatures, errors, idempotency, async answers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.sdk.fake_hub import CallbackReceiver, HubSigner, error_code
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
    ActionAnswer,
    ActionQuery,
    AppCount,
    BindingQuery,
    CallbackBody,
    CountAnswer,
    Operation,
    UnbindAnswer,
    UnbindQuery,
)
from tongcha.sdk.stores import SqliteTaskStore, TaskStore
from tongcha.sim.servers import LoopbackServer, ServerHost

CODE = "ACME"
COUNT = Operation.bindings_count
UNBIND = Operation.bindings_unbind
ACTION = Operation.account_action


def count_body(task_id: str = "task-1", **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "number": "+8613800138000", "bound_from": "2024-01-01T00:00:00+08:00", **extra}


class RecordingHandlers(PlatformHandlers):
    """count, unbind and action; each answer says how many calls came before it, so a
    second run of the same task could not give the same answer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.delay = 0.0
        self.failures: list[BaseException] = []

    async def _enter(self, operation: str, task_id: str) -> int:
        self.calls.append((operation, task_id))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)
        return len(self.calls)

    async def count(self, query: BindingQuery) -> CountAnswer | Later:
        n = await self._enter("count", query.task_id)
        return CountAnswer(counts=[AppCount(app="acme", count=n)])

    async def unbind(self, query: UnbindQuery) -> UnbindAnswer | Later:
        n = await self._enter("unbind", query.task_id)
        return UnbindAnswer(unbound=[f"acct-{n}"], kept=0)

    async def action(self, query: ActionQuery) -> ActionAnswer | Later:
        await self._enter("action", query.task_id)
        return LATER


@dataclass
class Served:
    url: str
    handlers: RecordingHandlers
    sdk: TongchaPlatform
    server: LoopbackServer


@pytest.fixture(scope="module")
def host() -> Iterator[ServerHost]:
    servers = ServerHost()
    yield servers
    servers.close()


@pytest.fixture(scope="module")
def hub() -> HubSigner:
    return HubSigner()


@pytest.fixture
def receiver(host: ServerHost) -> tuple[CallbackReceiver, str]:
    app = CallbackReceiver()
    return app, host.serve(app).base_url


def serve_platform(
    host: ServerHost, config: PlatformConfig, store: TaskStore | None = None, handlers: RecordingHandlers | None = None
) -> Served:
    handlers = handlers or RecordingHandlers()
    sdk = TongchaPlatform(handlers, config, store)
    server = host.serve(sdk)
    return Served(server.base_url, handlers, sdk, server)


@pytest.fixture
def platform(host: ServerHost, hub: HubSigner, receiver: tuple[CallbackReceiver, str]) -> Served:
    config = PlatformConfig(
        code=CODE, hub_url=receiver[1], signing_key=protocol.new_signing_key("acme-1"), hub_keys=hub.keys
    )
    # Left running: the module's host stops every server at once at the end.
    return serve_platform(host, config)


def test_a_signed_call_reaches_the_handler_and_its_answer_comes_back(platform: Served, hub: HubSigner) -> None:
    response = hub.post(platform.url, CODE, COUNT, count_body(), headers={"x-correlator": "corr-42"})
    assert response.status_code == 200
    assert CountAnswer.model_validate_json(response.content) == CountAnswer(counts=[AppCount(app="acme", count=1)])
    assert response.headers["x-correlator"] == "corr-42"
    assert platform.handlers.calls == [("count", "task-1")]


def _other_key_same_kid(hub: HubSigner) -> dict[str, Any]:
    return {"key": protocol.new_signing_key(hub.key.kid)}


BAD_SIGNATURES: dict[str, Any] = {
    "unknown key": lambda hub: {"key": protocol.new_signing_key("stranger")},
    "another key under the hub's kid": _other_key_same_kid,
    "expired": lambda hub: {"now": time.time() - 600},
    "issued in the future": lambda hub: {"now": time.time() + 600},
    "meant for another platform": lambda hub: {"audience": "OTHER"},
    "signed by a platform, not the hub": lambda hub: {"issuer": "OTHER"},
    "signed for another operation": lambda hub: {"path": Operation.bindings_list.path},
}


@pytest.mark.parametrize("case", sorted(BAD_SIGNATURES))
def test_an_untrustworthy_signature_is_refused_before_the_handler(platform: Served, hub: HubSigner, case: str) -> None:
    response = hub.post(platform.url, CODE, COUNT, count_body(), **BAD_SIGNATURES[case](hub))
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHENTICATED"
    assert platform.handlers.calls == []


@pytest.mark.parametrize("header", [None, "", "not-a-jwt", "a.b.c"])
def test_a_missing_or_garbled_signature_header_is_refused(platform: Served, header: str | None) -> None:
    headers = {} if header is None else {protocol.SIGNATURE_HEADER: header}
    response = httpx.post(platform.url + COUNT.path, content=json.dumps(count_body()), headers=headers)
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHENTICATED"
    assert platform.handlers.calls == []


def test_a_body_changed_after_signing_is_refused(platform: Served, hub: HubSigner) -> None:
    signed = json.dumps(count_body()).encode()
    token = hub.token(CODE, COUNT, signed)
    tampered = json.dumps(count_body(number="+8613900139000")).encode()
    response = httpx.post(platform.url + COUNT.path, content=tampered, headers={protocol.SIGNATURE_HEADER: token})
    assert response.status_code == 401
    assert "body" in response.json()["error"]["message"]
    assert platform.handlers.calls == []


def test_a_replayed_signature_is_refused_even_for_the_same_request(platform: Served, hub: HubSigner) -> None:
    body = json.dumps(count_body()).encode()
    headers = {protocol.SIGNATURE_HEADER: hub.token(CODE, COUNT, body)}
    first = httpx.post(platform.url + COUNT.path, content=body, headers=headers)
    replay = httpx.post(platform.url + COUNT.path, content=body, headers=headers)
    assert first.status_code == 200
    assert replay.status_code == 401
    assert "replay" in replay.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"task_id": "t", "number": "+8613800138000"}).encode(),
        json.dumps(count_body(bound_from="yesterday")).encode(),
        json.dumps(count_body(task_id="")).encode(),
    ],
    ids=["not-json", "array", "missing-field", "bad-time", "empty-task-id"],
)
def test_a_body_that_does_not_fit_the_operation_is_400(platform: Served, hub: HubSigner, body: bytes) -> None:
    response = hub.post(platform.url, CODE, COUNT, body)
    assert response.status_code == 400
    assert error_code(response) == "INVALID_ARGUMENT"
    assert response.json()["error"]["details"], "the fields at fault are named"
    assert platform.handlers.calls == []


def test_the_same_task_twice_runs_the_handler_once_and_answers_the_same(platform: Served, hub: HubSigner) -> None:
    first = hub.post(
        platform.url,
        CODE,
        UNBIND,
        {"task_id": "u1", "number": "+8613800138000", "bound_before": "2024-05-01T00:00:00Z"},
    )
    # Re-sent with a new signature, other key order and spacing: still the same task.
    again = json.dumps({"bound_before": "2024-05-01T00:00:00Z", "number": "+8613800138000", "task_id": "u1"}, indent=2)
    second = hub.post(platform.url, CODE, UNBIND, again.encode())
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert platform.handlers.calls == [("unbind", "u1")]


def test_a_task_id_reused_for_another_request_is_a_conflict(platform: Served, hub: HubSigner) -> None:
    assert hub.post(platform.url, CODE, COUNT, count_body("t7")).status_code == 200
    other_body = hub.post(platform.url, CODE, COUNT, count_body("t7", bound_from="2025-01-01T00:00:00Z"))
    other_operation = hub.post(
        platform.url,
        CODE,
        UNBIND,
        {"task_id": "t7", "number": "+8613800138000", "bound_before": "2025-01-01T00:00:00Z"},
    )
    assert other_body.status_code == other_operation.status_code == 409
    assert error_code(other_body) == error_code(other_operation) == "CONFLICT"
    assert platform.handlers.calls == [("count", "t7")]


def test_an_operation_the_platform_does_not_implement_is_404(platform: Served, hub: HubSigner) -> None:
    response = hub.post(platform.url, CODE, Operation.bindings_list, count_body())
    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"
    assert Operation.bindings_list not in platform.sdk.supported


def test_an_unknown_path_is_404_and_another_method_is_405(platform: Served) -> None:
    unknown = httpx.post(platform.url + "/tongcha/v1/bindings/delete_everything", content=b"{}")
    wrong_method = httpx.get(platform.url + COUNT.path)
    assert unknown.status_code == 404 and error_code(unknown) == "NOT_FOUND"
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert error_code(wrong_method) == "INVALID_ARGUMENT"


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_one_mebibyte_is_413(platform: Served, hub: HubSigner, streamed: bool) -> None:
    big = json.dumps(count_body(padding="x" * (1 << 20))).encode()
    headers = {protocol.SIGNATURE_HEADER: hub.token(CODE, COUNT, big)}
    content: Any = iter([big[: 1 << 19], big[1 << 19 :]]) if streamed else big
    response = httpx.post(platform.url + COUNT.path, content=content, headers=headers)
    assert response.status_code == 413
    assert platform.handlers.calls == []


def test_concurrent_duplicates_wait_for_the_first_attempt(platform: Served, hub: HubSigner) -> None:
    platform.handlers.delay = 0.3
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: hub.post(platform.url, CODE, COUNT, count_body("slow")), range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len({r.content for r in responses}) == 1
    assert platform.handlers.calls == [("count", "slow")]


def test_a_duplicate_that_waits_too_long_is_told_the_task_is_in_progress(
    host: ServerHost, hub: HubSigner, receiver: tuple[CallbackReceiver, str]
) -> None:
    config = PlatformConfig(
        code=CODE,
        hub_url=receiver[1],
        signing_key=protocol.new_signing_key(),
        hub_keys=hub.keys,
        duplicate_wait_seconds=0.1,
    )
    served = serve_platform(host, config)
    served.handlers.delay = 0.6
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(hub.post, served.url, CODE, COUNT, count_body("busy"))
        time.sleep(0.2)
        duplicate = hub.post(served.url, CODE, COUNT, count_body("busy"))
        assert first.result().status_code == 200
    assert duplicate.status_code == 503, "a 5xx: the hub asks again later"
    assert duplicate.json()["error"]["details"] == [{"reason": "IN_PROGRESS"}]
    assert served.handlers.calls == [("count", "busy")]


def test_a_handler_that_raises_is_500_and_its_retry_runs_again(platform: Served, hub: HubSigner) -> None:
    platform.handlers.failures.append(RuntimeError("database gone"))
    failed = hub.post(platform.url, CODE, COUNT, count_body("flaky"))
    retried = hub.post(platform.url, CODE, COUNT, count_body("flaky"))
    assert failed.status_code == 500 and error_code(failed) == "INTERNAL"
    assert "database" not in failed.text, "the handler's error stays in the platform's log"
    assert retried.status_code == 200
    assert platform.handlers.calls == [("count", "flaky"), ("count", "flaky")]


def test_a_handler_error_answers_its_status_and_is_not_stored(platform: Served, hub: HubSigner) -> None:
    platform.handlers.failures.append(HandlerError(503, "UNAVAILABLE", "maintenance"))
    busy = hub.post(platform.url, CODE, COUNT, count_body("maint"))
    retried = hub.post(platform.url, CODE, COUNT, count_body("maint"))
    assert busy.status_code == 503 and error_code(busy) == "UNAVAILABLE"
    assert busy.json()["error"]["message"] == "maintenance"
    assert retried.status_code == 200


def test_a_handler_answer_of_the_wrong_type_is_500(host: ServerHost, hub: HubSigner) -> None:
    class Confused(RecordingHandlers):
        async def count(self, query: BindingQuery) -> Any:
            return UnbindAnswer(unbound=[], kept=0)

    config = PlatformConfig(
        code=CODE, hub_url="http://127.0.0.1:9", signing_key=protocol.new_signing_key(), hub_keys=hub.keys
    )
    served = serve_platform(host, config, handlers=Confused())
    response = hub.post(served.url, CODE, COUNT, count_body())
    assert response.status_code == 500


def test_a_deferred_task_is_accepted_and_accepted_again(platform: Served, hub: HubSigner) -> None:
    body = {"task_id": "later-1", "number": "+8613800138000", "account_ref": "a1", "action": "freeze"}
    first = hub.post(platform.url, CODE, ACTION, body)
    again = hub.post(platform.url, CODE, ACTION, body)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() == {"accepted": True}
    assert platform.handlers.calls == [("action", "later-1")]


def test_report_posts_a_callback_the_hub_can_verify(platform: Served, receiver: tuple[CallbackReceiver, str]) -> None:
    app, _ = receiver
    app.status = 204
    status = asyncio.run(platform.sdk.report("later-1", ActionAnswer(outcome="done")))
    assert status == 204
    [callback] = app.received
    path = protocol.callback_path("later-1")
    assert callback.path == path
    platform_keys = protocol.key_set({"keys": [protocol.public_jwk(platform.sdk.config.signing_key)]})
    verified = protocol.verify(
        callback.headers[protocol.SIGNATURE_HEADER.lower()],
        platform_keys,
        audience=protocol.HUB_ISSUER,
        issuer=CODE,
        path=path,
        body=callback.body,
    )
    assert verified.issuer == CODE
    sent = CallbackBody.model_validate_json(callback.body)
    assert sent.error is None and ActionAnswer.model_validate(sent.answer) == ActionAnswer(outcome="done")


def test_report_error_sends_the_code_and_reason(platform: Served, receiver: tuple[CallbackReceiver, str]) -> None:
    app, _ = receiver
    assert asyncio.run(platform.sdk.report_error("later-2", "PERMISSION_DENIED", "account under legal hold")) == 200
    sent = CallbackBody.model_validate_json(app.received[0].body)
    assert sent.answer is None and sent.error is not None
    assert (sent.error.code, sent.error.message) == ("PERMISSION_DENIED", "account under legal hold")


def test_report_to_an_unreachable_hub_raises_report_failed(hub: HubSigner) -> None:
    config = PlatformConfig(
        code=CODE, hub_url="http://127.0.0.1:9", signing_key=protocol.new_signing_key(), hub_keys=hub.keys
    )
    sdk = TongchaPlatform(RecordingHandlers(), config)
    with pytest.raises(ReportFailed):
        asyncio.run(sdk.report("t", ActionAnswer(outcome="done")))


class Jwks:
    """The hub's ``/.well-known/jwks.json``, counting fetches; keys can be added."""

    def __init__(self, *signers: HubSigner) -> None:
        self.signers = list(signers)
        self.fetches = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.fetches += 1
        status, body = 404, b"{}"
        if scope["path"] == "/.well-known/jwks.json":
            status = 200
            body = json.dumps({"keys": [protocol.public_jwk(s.key) for s in self.signers]}).encode()
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": body})


def test_without_pinned_keys_the_sdk_fetches_the_hubs_jwks_and_follows_a_rotation(host: ServerHost) -> None:
    old, new = HubSigner("hub-2025"), HubSigner("hub-2026")
    jwks = Jwks(old)
    hub_url = host.serve(jwks).base_url
    config = PlatformConfig(
        code=CODE, hub_url=hub_url, signing_key=protocol.new_signing_key(), jwks_refetch_seconds=0.3
    )
    served = serve_platform(host, config)

    assert old.post(served.url, CODE, COUNT, count_body("r1")).status_code == 200
    assert old.post(served.url, CODE, COUNT, count_body("r2")).status_code == 200
    assert jwks.fetches == 1, "the key set is cached"

    jwks.signers.append(new)
    time.sleep(0.3)
    assert new.post(served.url, CODE, COUNT, count_body("r3")).status_code == 200
    assert jwks.fetches == 2, "an unknown kid fetched the key set again"


def test_unknown_kids_do_not_make_the_sdk_hammer_the_hub(host: ServerHost) -> None:
    known, stranger = HubSigner("hub-a"), HubSigner("hub-unpublished")
    jwks = Jwks(known)
    config = PlatformConfig(
        code=CODE, hub_url=host.serve(jwks).base_url, signing_key=protocol.new_signing_key(), jwks_refetch_seconds=60
    )
    served = serve_platform(host, config)
    assert known.post(served.url, CODE, COUNT, count_body("k1")).status_code == 200
    refused = [stranger.post(served.url, CODE, COUNT, count_body(f"s{i}")).status_code for i in range(5)]
    assert refused == [401] * 5
    assert jwks.fetches == 1


def test_a_new_kid_while_the_hub_is_unreachable_is_503_not_401(host: ServerHost) -> None:
    old, new = HubSigner("hub-old"), HubSigner("hub-new")
    jwks_server = host.serve(Jwks(old, new))
    config = PlatformConfig(
        code=CODE, hub_url=jwks_server.base_url, signing_key=protocol.new_signing_key(), jwks_refetch_seconds=0
    )
    served = serve_platform(host, config)
    assert old.post(served.url, CODE, COUNT, count_body("n1")).status_code == 200
    jwks_server.stop()
    response = HubSigner("hub-newer").post(served.url, CODE, COUNT, count_body("n2"))
    assert response.status_code == 503, "the hub may have rotated: ask again, do not call it a bad signature"
    assert old.post(served.url, CODE, COUNT, count_body("n3")).status_code == 200, "known keys still work"


def test_an_old_copy_of_the_key_set_is_fetched_again(host: ServerHost) -> None:
    signer = HubSigner("hub-aged")
    jwks = Jwks(signer)
    config = PlatformConfig(
        code=CODE,
        hub_url=host.serve(jwks).base_url,
        signing_key=protocol.new_signing_key(),
        jwks_refetch_seconds=0,
        jwks_max_age_seconds=0.2,
    )
    served = serve_platform(host, config)
    assert signer.post(served.url, CODE, COUNT, count_body("a1")).status_code == 200
    time.sleep(0.3)
    assert signer.post(served.url, CODE, COUNT, count_body("a2")).status_code == 200
    assert jwks.fetches == 2


def test_when_the_hubs_keys_cannot_be_fetched_the_call_is_503(host: ServerHost, hub: HubSigner) -> None:
    config = PlatformConfig(code=CODE, hub_url="http://127.0.0.1:9", signing_key=protocol.new_signing_key())
    served = serve_platform(host, config)
    response = hub.post(served.url, CODE, COUNT, count_body())
    assert response.status_code == 503 and error_code(response) == "UNAVAILABLE"
    assert served.handlers.calls == []


def test_the_sdk_works_mounted_under_a_prefix_in_fastapi(host: ServerHost, hub: HubSigner) -> None:
    config = PlatformConfig(
        code=CODE, hub_url="http://127.0.0.1:9", signing_key=protocol.new_signing_key(), hub_keys=hub.keys
    )
    handlers = RecordingHandlers()
    app = FastAPI()
    app.mount("/hooks/tongcha-hub", TongchaPlatform(handlers, config))
    server = host.serve(app)
    response = hub.post(server.base_url + "/hooks/tongcha-hub", CODE, COUNT, count_body())
    assert response.status_code == 200
    assert handlers.calls == [("count", "task-1")]


def test_answers_stored_in_sqlite_survive_a_restart(host: ServerHost, hub: HubSigner, tmp_path: Path) -> None:
    config = PlatformConfig(
        code=CODE, hub_url="http://127.0.0.1:9", signing_key=protocol.new_signing_key(), hub_keys=hub.keys
    )
    body = json.dumps({"task_id": "u9", "number": "+8613800138000", "bound_before": "2024-05-01T00:00:00Z"}).encode()
    token = hub.token(CODE, UNBIND, body)
    before = serve_platform(host, config, SqliteTaskStore(tmp_path / "tasks.db"))
    first = httpx.post(before.url + UNBIND.path, content=body, headers={protocol.SIGNATURE_HEADER: token})
    before.server.stop()
    before.sdk.store.close()

    after = serve_platform(host, config, SqliteTaskStore(tmp_path / "tasks.db"))
    replay = httpx.post(after.url + UNBIND.path, content=body, headers={protocol.SIGNATURE_HEADER: token})
    again = hub.post(after.url, CODE, UNBIND, body)
    assert first.status_code == 200
    assert replay.status_code == 401, "used signatures are remembered across the restart"
    assert again.content == first.content
    assert after.handlers.calls == []
    after.server.stop()
    after.sdk.store.close()
