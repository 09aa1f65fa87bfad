"""A carrier's event id is stored and matched as sent, so it must be one the ledger can store."""

from __future__ import annotations

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
