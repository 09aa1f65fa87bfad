"""The OpenAPI document is complete, and every answer keeps the error shape and correlator."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import bearer
from tongcha.kit.clock import FixedClock
from tongcha.kit.correlator import CorrelatorFilter
from tongcha.kit.settings import Settings
from tongcha.web.app import create_app

LEDGER_PATHS = {
    ("post", "/carrier/v1/events"),
    ("get", "/platform/v1/reassignments/{number}"),
    ("post", "/platform/v1/reassignments:batch"),
    ("post", "/number-recycling/v0.2/check"),
}
FEDERATION_PATHS = {
    ("post", "/platform/v1/tasks/{task_id}/result"),
    ("get", "/.well-known/jwks.json"),
    ("post", "/operator/v1/platforms"),
    ("patch", "/operator/v1/platforms/{code}"),
    ("post", "/operator/v1/platforms/{code}/keys"),
    ("post", "/operator/v1/probes"),
    ("get", "/operator/v1/requests"),
    ("get", "/operator/v1/requests/{request_id}"),
}
# Public documents (and the health check) that take no input and so cannot fail with a 4xx.
NO_INPUT = {"GET /", "GET /.well-known/jwks.json", "GET /healthz"}
# Routes anyone may call: the start of a citizen's verification, and callbacks, which
# are signed rather than carrying a bearer credential.
PUBLIC = {
    *NO_INPUT,
    "POST /v1/verifications",
    "POST /v1/verifications/{verification_id}/code",
    "POST /platform/v1/tasks/{task_id}/result",
}


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_openapi_lists_the_ledger_paths_of_the_contract(spec: dict[str, Any]) -> None:
    listed = {(method, path) for method, path, _ in operations(spec)}
    assert listed >= LEDGER_PATHS


def test_openapi_lists_the_federation_paths(spec: dict[str, Any]) -> None:
    listed = {(method, path) for method, path, _ in operations(spec)}
    assert listed >= FEDERATION_PATHS


def refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def test_every_reference_in_the_document_resolves(spec: dict[str, Any]) -> None:
    # A model's own "#/$defs/..." pasted into a route left clients and fuzzers unable to
    # read the carrier's event body.
    schemas = spec["components"]["schemas"]
    unresolved = [ref for ref in refs(spec) if ref.removeprefix("#/components/schemas/") not in schemas]
    assert unresolved == []


def test_every_api_route_declares_a_4xx_response(spec: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for method, path, op in operations(spec)
        if not any(str(code).startswith("4") for code in op.get("responses", {}))
    ]
    # the HTML pages and public key documents take no input; everything else must
    # declare its errors
    assert [m for m in missing if m not in NO_INPUT] == []


def test_no_route_declares_a_422_the_hub_never_answers(spec: dict[str, Any]) -> None:
    # FastAPI's default 422 (HTTPValidationError) was declared on every route with input,
    # while a body that does not validate is a 400 in the one error shape.
    declared = [f"{m.upper()} {p}" for m, p, op in operations(spec) if "422" in op["responses"]]
    assert declared == []
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_declared_errors_use_the_one_error_shape(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        for code, response in op["responses"].items():
            if str(code).startswith("4"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, code)


def test_every_authenticated_route_declares_unauthenticated(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        if f"{method.upper()} {path}" not in PUBLIC:
            assert "401" in op["responses"], (method, path)


def test_unknown_path_is_404_in_the_error_shape(client: TestClient) -> None:
    r = client.get("/no/such/path")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"
    assert set(r.json()["error"]) >= {"code", "message", "details"}


def test_wrong_method_is_405_in_the_error_shape(client: TestClient) -> None:
    r = client.delete("/carrier/v1/events")
    assert r.status_code == 405
    assert set(r.json()) == {"error"}


def test_wrong_method_says_which_methods_are_allowed(client: TestClient) -> None:
    # RFC 9110 asks a 405 for an Allow header; the error handler used to drop it.
    r = client.delete("/carrier/v1/events")
    assert r.status_code == 405
    assert r.headers.get("allow") == "POST"
    # a path with a route per method lists them all
    assert client.put("/operator/v1/platforms").headers.get("allow") == "GET, HEAD, POST"


@pytest.mark.parametrize(
    "path", ["/.well-known/jwks.json", "/platform/v1/reassignments/+8613800138000?since=2020-01-01"]
)
def test_head_on_a_get_route_answers_as_the_get_would_without_a_body(
    client: TestClient, parties: dict[str, str], path: str
) -> None:
    # `curl -I` was a 405 whose allow header listed HEAD.
    get = client.get(path, headers=bearer(parties["JD"]))
    head = client.head(path, headers=bearer(parties["JD"]))
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert head.headers.get("cache-control") == get.headers.get("cache-control")


def test_head_on_the_check_is_answered_by_the_route_too(
    settings: Settings, clock: FixedClock, engine: Engine, parties: dict[str, str]
) -> None:
    app = create_app(settings.model_copy(update={"check_fast_path": False}), clock, engine)
    with TestClient(app) as client:
        r = client.head("/platform/v1/reassignments/+8613800138000?since=2020-01-01", headers=bearer(parties["JD"]))
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["content-length"]) > 0


def test_head_keeps_the_errors_of_the_get(client: TestClient) -> None:
    r = client.head("/platform/v1/reassignments/+8613800138000?since=2020-01-01")
    assert r.status_code == 401
    assert r.content == b""


def test_head_on_a_path_without_a_get_is_405_and_not_offered(client: TestClient) -> None:
    r = client.head("/carrier/v1/events")
    assert r.status_code == 405
    assert r.headers.get("allow") == "POST"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v1/verifications/v_a%00b/code"),
        ("post", "/platform/v1/tasks/t_a%00b/result"),
        ("get", "/operator/v1/requests/r_a%00b"),
        ("get", "/operator/v1/platforms/A%00B"),
        ("delete", "/operator/v1/platforms/JD/keys/k%00"),
    ],
)
def test_a_nul_in_a_path_id_is_a_400_in_the_error_shape(
    client: TestClient, operator: dict[str, str], method: str, path: str
) -> None:
    # PostgreSQL refuses a NUL in the lookup: these answered 500 there.
    r = client.request(method, path, headers=operator, json={"code": "123456"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_x_correlator_is_echoed(client: TestClient, parties: dict[str, str]) -> None:
    r = client.get(
        "/platform/v1/reassignments/+8613800138000",
        params={"since": "2020-01-01"},
        headers={**bearer(parties["JD"]), "x-correlator": "req-42.a:b"},
    )
    assert r.status_code == 200
    assert r.headers["x-correlator"] == "req-42.a:b"


def test_x_correlator_is_echoed_on_errors(client: TestClient) -> None:
    r = client.get("/no/such/path", headers={"x-correlator": "err-7"})
    assert r.headers["x-correlator"] == "err-7"


@pytest.mark.parametrize("sent", ["boom-42", None])
def test_an_unexpected_error_is_logged_and_answered_with_the_requests_correlator(
    settings: Settings, clock: FixedClock, engine: Engine, sent: str | None
) -> None:
    # The 500 says "the x-correlator identifies it in the hub's log", but it carried no
    # x-correlator and its log line had "-": Starlette answers it outside the middleware.
    app = create_app(settings, clock, engine)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    handler.addFilter(CorrelatorFilter())
    logger = logging.getLogger("tongcha.errors")
    logger.addHandler(handler)
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            r = c.get("/boom", headers={"x-correlator": sent} if sent else {})
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 500 and r.json()["error"]["code"] == "INTERNAL"
    echoed = r.headers.get("x-correlator")
    assert echoed and (sent is None or echoed == sent)
    assert [getattr(rec, "correlator", None) for rec in seen if rec.levelno >= logging.ERROR] == [echoed]


def test_a_correlator_is_made_up_when_none_is_sent(client: TestClient) -> None:
    r = client.get("/no/such/path")
    assert r.headers.get("x-correlator")
