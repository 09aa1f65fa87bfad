"""A carrier's event id is stored and matched as sent, so it must be one the ledger can store."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import bearer
from tests.factories import ALICE, ev

N = "+8613800138000"


@pytest.mark.parametrize(
    "event_id",
    ["x" * 129, "evt\x00one", "evt\none", "evt\tone", "evt\x7fone", "evt\u2028one"],
    ids=["too-long", "nul", "newline", "tab", "delete", "line-separator"],
)
def test_an_unstorable_event_id_is_rejected_and_the_batch_kept(
    client: TestClient, parties: dict[str, str], event_id: str
) -> None:
    bad = ev("activated", N, "2020-03-01", ALICE) | {"event_id": event_id}
    good = ev("activated", "+8613900139000", "2020-03-01", ALICE)
    r = client.post("/carrier/v1/events", json=[bad, good], headers=bearer(parties["CMCC"]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 1
    [rejected] = out["rejected"]
    assert rejected["code"] == "INVALID_ARGUMENT"
    assert "event_id" in rejected["reason"]


# JSON's grammar lets a string escape a lone surrogate; orjson refuses the document.
LONE_SURROGATE_ID = b'{"event_id": "\\ud800", "type": "cancelled", "number": "+8613900139000", "occurred_at": "2020-03-02T10:00:00+08:00"}'


@pytest.mark.parametrize("media", ["application/json", "application/x-ndjson"])
def test_an_event_id_escaping_a_lone_surrogate_is_rejected_and_the_batch_kept(
    client: TestClient, parties: dict[str, str], media: str
) -> None:
    # The array was a 400 "body is not JSON: no low surrogate" that lost every event,
    # and the NDJSON line was "not JSON" rather than refused for its event_id.
    good = orjson.dumps(ev("activated", N, "2020-03-01", ALICE, event_id="kept"))
    if media == "application/json":
        body = b"[" + LONE_SURROGATE_ID + b"," + good + b"]"
    else:
        body = LONE_SURROGATE_ID + b"\n" + good + b"\n"
    r = client.post("/carrier/v1/events", content=body, headers={**bearer(parties["CMCC"]), "content-type": media})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 1
    # The id cannot be echoed in JSON that every client reads: null, with the reason.
    assert out["rejected"] == [
        {
            "event_id": None,
            "code": "INVALID_ARGUMENT",
            "rule": "bad_event_id",
            "reason": "event_id must be 1 to 128 printable characters, not all spaces",
        }
    ]
    r = client.get(f"/platform/v1/reassignments/{N}", params={"since": "2020-03-01"}, headers=bearer(parties["JD"]))
    assert r.json()["result"] == "no"


def test_surrogates_as_raw_bytes_are_not_utf8_and_still_a_400(client: TestClient, parties: dict[str, str]) -> None:
    body = b'[{"event_id": "\xed\xa0\x80"}]'
    r = client.post(
        "/carrier/v1/events", content=body, headers={**bearer(parties["CMCC"]), "content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
