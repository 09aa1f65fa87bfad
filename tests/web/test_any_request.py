"""No request makes any endpoint answer 5xx, on either database.

Every operation of the hub's OpenAPI document is called with generated paths, query
strings and bodies (JSON values of any shape, and objects with the operation's own
field names holding values near valid and far from it), as nobody, a stranger, a
carrier, a platform, the operator or a verified citizen. Each answer is below 500, and
an error is in the API's error shape.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import assert_error_shape, bearer
from tests.factories import ALICE
from tests.requests.test_citizen_requests import EVENTS, M, verify

# Bodies of their own, generated in tests/ledger/test_any_input.py; and the citizen's
# sign-out, which would end the session the other requests are made in.
LEFT_OUT = {"/platform/v1/reassignments:batch", "/carrier/v1/events", "/v1/me/session"}
NOBODY, STRANGER, CARRIER, PLATFORM, OPERATOR, CITIZEN = range(6)


def audience(path: str) -> int:
    """Who an operation is for, by its path."""
    for prefix, who in (
        ("/carrier/", CARRIER),
        ("/platform/", PLATFORM),
        ("/number-recycling/", PLATFORM),
        ("/operator/", OPERATOR),
        ("/v1/verifications", NOBODY),
        ("/v1/", CITIZEN),
    ):
        if path.startswith(prefix):
            return who
    return NOBODY


# Values a field might hold: plausible ones of this hub, and anything.
plausible = st.sampled_from(
    [
        M,
        "+8613800000001",
        "13800000002",
        "+12025550100",
        "2020-01-01",
        "2020-01-01T00:00:00+08:00",
        "2999-01-01",
        "JD",
        "MEITUAN",
        "CMCC",
        "jd",
        "unbind",
        "freeze",
        "count",
        "list",
        ALICE["id_number"],
        ALICE["id_number"][-6:],
        ALICE["name"],
        "000000",
        "http://127.0.0.1:9",
        "",
        " ",
        "\x00",
        "a" * 300,
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
field_values: st.SearchStrategy[Any] = plausible | json_values | st.lists(plausible, max_size=3)


def _schema(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def operations(spec: dict[str, Any]) -> list[tuple[str, str, list[str], list[str]]]:
    """(method, path, query parameter names, JSON body field names) of each operation."""
    found = []
    for path, ops in spec["paths"].items():
        if path in LEFT_OUT:
            continue
        for method, op in ops.items():
            query = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            fields = list(_schema(spec, body).get("properties", {})) if body else []
            found.append((method.upper(), path, query, fields))
    return found


@st.composite
def requests(draw: st.DrawFn, ops: list[tuple[str, str, list[str], list[str]]]) -> dict[str, Any]:
    method, path, query, fields = draw(st.sampled_from(ops))
    # Mostly as the party the operation is for, so that the request gets past its door.
    who = audience(path) if draw(st.integers(0, 4)) else draw(st.integers(NOBODY, CITIZEN))
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        value = draw(st.sampled_from(["JD", "nope", "r_x", "t_x", "v_x", M, "k1"]) | st.text(min_size=1, max_size=12))
        path = path[:start] + quote(value, safe="") + path[end + 1 :]
    params: dict[str, str] = {}
    for name in query:
        if draw(st.booleans()):
            params[name] = draw(plausible | st.text(max_size=12))
    body: Any = None
    if method in ("POST", "PATCH", "PUT"):
        by_fields = draw(st.booleans())
        if fields and by_fields:
            body = {}
            for name in fields:
                if draw(st.integers(0, 3)):  # now and then a field is left out
                    body[name] = draw(field_values)
            if "base_url" in body:  # the hub may call what it is given: only ever loopback
                body["base_url"] = draw(st.sampled_from(["http://127.0.0.1:9", "not a url", ""]))
        else:
            body = draw(json_values)
    return {"method": method, "path": path, "params": params, "body": body, "who": who}


@pytest.fixture
def callers(client: TestClient, parties: dict[str, str], operator: dict[str, str]) -> list[dict[str, str]]:
    r = client.post("/carrier/v1/events", json=EVENTS, headers=bearer(parties["CMCC"]))
    assert r.status_code == 200, r.text
    citizen = verify(client, client.app.state.hub, ALICE, M)  # type: ignore[attr-defined]
    return [{}, bearer("tc_x_stranger"), bearer(parties["CMCC"]), bearer(parties["JD"]), operator, citizen]  # by index


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_request_to_any_endpoint_is_answered_with_a_5xx(
    client: TestClient, callers: list[dict[str, str]], data: st.DataObject
) -> None:
    ops = operations(client.get("/openapi.json").json())
    ask = data.draw(requests(ops))
    r = client.request(
        ask["method"],
        ask["path"],
        params=ask["params"],
        content=None if ask["body"] is None else json.dumps(ask["body"]).encode(),
        headers={**callers[ask["who"]], "content-type": "application/json"},
    )
    assert r.status_code < 500, (ask, r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert_error_shape(r.status_code, r.content)
