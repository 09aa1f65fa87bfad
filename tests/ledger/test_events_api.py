"""Carriers send lifecycle events; the ledger applies its rules and never half-writes."""

from __future__ import annotations

import codecs
from typing import TypedDict

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import bearer
from tests.factories import ALICE, BOB, ev

N = "+8613800138000"


class RejectedBody(TypedDict):
    """One refused event in the answer to a POST of events (RejectedEvent in the API)."""

    event_id: str | None
    code: str
    rule: str
    reason: str


class IngestBody(TypedDict):
    """The answer to a POST of events (IngestOut in the API)."""

    accepted: int
    duplicates: int
    rejected: list[RejectedBody]
    revision: int


def send(client: TestClient, secret: str, events: list[dict[str, object]]) -> IngestBody:
    r = client.post("/carrier/v1/events", json=events, headers=bearer(secret))
    assert r.status_code == 200, r.text
    body: IngestBody = r.json()
    return body


def check(client: TestClient, secret: str, number: str, since: str) -> dict[str, object]:
    r = client.get(f"/platform/v1/reassignments/{number}", params={"since": since}, headers=bearer(secret))
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_activation_then_check_says_no_since_activation_day(client: TestClient, parties: dict[str, str]) -> None:
    out = send(client, parties["CMCC"], [ev("activated", N, "2020-03-01", ALICE)])
    assert out["accepted"] == 1 and out["rejected"] == []
    assert check(client, parties["JD"], N, "2020-03-01")["result"] == "no"
    assert check(client, parties["JD"], N, "2020-02-29")["result"] == "no_data"


def test_reissue_after_quarantine_answers_yes_for_old_dates(client: TestClient, parties: dict[str, str]) -> None:
    send(
        client,
        parties["CMCC"],
        [
            ev("activated", N, "2018-01-10", ALICE),
            ev("cancelled", N, "2021-05-01"),
            ev("activated", N, "2021-08-15", BOB),
        ],
    )
    answer = check(client, parties["MEITUAN"], N, "2019-06-01")
    assert answer == {"number": N, "since": "2019-06-01", "result": "yes", "last_change_on": "2021-08-15"}
    # in quarantine: nobody held it, but the ledger knows it
    assert check(client, parties["MEITUAN"], N, "2021-06-01")["result"] == "yes"
    assert check(client, parties["MEITUAN"], N, "2021-08-15")["result"] == "no"


def test_transfer_day_belongs_to_the_new_holder(client: TestClient, parties: dict[str, str]) -> None:
    send(client, parties["CMCC"], [ev("activated", N, "2019-01-01", ALICE), ev("transferred", N, "2022-02-02", BOB)])
    assert check(client, parties["JD"], N, "2022-02-01")["result"] == "yes"
    assert check(client, parties["JD"], N, "2022-02-02")["result"] == "no"


def test_port_keeps_the_holder_and_moves_the_carrier(client: TestClient, parties: dict[str, str]) -> None:
    out = send(
        client,
        parties["CMCC"],
        [ev("activated", N, "2019-01-01", ALICE), ev("ported", N, "2020-01-01", to_carrier="CUCC")],
    )
    assert out["accepted"] == 2
    assert check(client, parties["JD"], N, "2019-06-01")["result"] == "no"
    # the old carrier no longer serves the number: it cannot cancel it
    refused = send(client, parties["CMCC"], [ev("cancelled", N, "2021-01-01", event_id="late-cancel")])
    assert refused["rejected"] == [
        {
            "event_id": "late-cancel",
            "code": "PERMISSION_DENIED",
            "rule": "not_serving_carrier",
            "reason": "cancellation from a carrier that does not serve the number",
        }
    ]
    assert send(client, parties["CUCC"], [ev("cancelled", N, "2021-01-01")])["accepted"] == 1


def test_suspension_and_resumption_change_nothing(client: TestClient, parties: dict[str, str]) -> None:
    send(
        client,
        parties["CMCC"],
        [ev("activated", N, "2019-01-01", ALICE), ev("suspended", N, "2020-01-01"), ev("resumed", N, "2020-02-01")],
    )
    assert check(client, parties["JD"], N, "2019-03-01")["result"] == "no"


def test_events_out_of_order_in_a_batch_are_replayed_in_time_order(client: TestClient, parties: dict[str, str]) -> None:
    out = send(
        client,
        parties["CMCC"],
        [
            ev("activated", N, "2021-08-15", BOB),
            ev("cancelled", N, "2021-05-01"),
            ev("activated", N, "2018-01-10", ALICE),
        ],
    )
    assert out["accepted"] == 3 and out["rejected"] == []
    assert check(client, parties["JD"], N, "2019-01-01")["result"] == "yes"


def test_same_event_twice_is_a_duplicate_not_a_second_change(client: TestClient, parties: dict[str, str]) -> None:
    first = ev("activated", N, "2019-01-01", ALICE, event_id="a-1")
    assert send(client, parties["CMCC"], [first])["accepted"] == 1
    again = send(client, parties["CMCC"], [first, first])
    assert again["accepted"] == 0 and again["duplicates"] == 2


def test_an_event_id_held_by_another_numbers_event_is_a_duplicate_and_the_rest_is_kept(
    client: TestClient, parties: dict[str, str]
) -> None:
    other = "+8613900139000"
    assert send(client, parties["CMCC"], [ev("activated", N, "2019-01-01", ALICE, event_id="x-1")])["accepted"] == 1
    out = send(
        client,
        parties["CMCC"],
        [
            ev("activated", other, "2020-01-01", BOB, event_id="x-1"),  # the id is N's activation's
            ev("activated", other, "2020-02-01", BOB, event_id="x-2"),
        ],
    )
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (1, 1, [])
    assert check(client, parties["JD"], other, "2020-01-15")["result"] == "no_data"  # x-1 was not taken as other's
    assert check(client, parties["JD"], other, "2020-02-01")["result"] == "no"
    assert check(client, parties["JD"], N, "2020-06-01")["result"] == "no"


def test_contradictions_are_rejected_and_the_rest_of_the_batch_is_kept(
    client: TestClient, parties: dict[str, str]
) -> None:
    other = "+8613900139000"
    out = send(
        client,
        parties["CMCC"],
        [
            ev("activated", N, "2019-01-01", ALICE),
            ev("activated", N, "2019-06-01", BOB, event_id="second-activation"),
            ev("cancelled", other, "2019-06-01", event_id="nobody-holds"),
            ev("activated", other, "2019-07-01", BOB),
            ev("cancelled", other, "2020-01-01"),
            ev("activated", other, "2020-02-01", ALICE, event_id="in-quarantine"),
        ],
    )
    rules = {r["event_id"]: r["rule"] for r in out["rejected"]}
    assert rules == {
        "second-activation": "tenure_open",
        "nobody-holds": "no_open_tenure",
        "in-quarantine": "in_quarantine",
    }
    assert out["accepted"] == 3
    assert check(client, parties["JD"], other, "2019-08-01")["result"] == "yes"


def test_ndjson_stream_keeps_good_lines_and_rejects_bad_ones(client: TestClient, parties: dict[str, str]) -> None:
    lines = [
        orjson.dumps(ev("activated", N, "2019-01-01", ALICE)),
        b"{not json",
        orjson.dumps(ev("activated", "+8613900139000", "2019-01-01", BOB)),
    ]
    r = client.post(
        "/carrier/v1/events",
        content=b"\n".join(lines) + b"\n",
        headers={**bearer(parties["CMCC"]), "content-type": "application/x-ndjson"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"event_id": None, "code": "INVALID_ARGUMENT", "rule": "malformed", "reason": "line 2 is not JSON"}
    ]


def test_bad_fields_are_rejected_without_echoing_identity(client: TestClient, parties: dict[str, str]) -> None:
    bad_id = {"id_number": ALICE["id_number"][:-1] + ("0" if ALICE["id_number"][-1] != "0" else "1"), "name": "张伟"}
    out = send(
        client,
        parties["CMCC"],
        [
            ev("activated", "+8612345678901", "2019-01-01", ALICE, event_id="bad-number"),
            ev("activated", N, "2019-01-01", bad_id, event_id="bad-checksum"),
            ev("activated", N, "2027-01-01", ALICE, event_id="future"),
            ev("activated", N, "2019-01-01", None, event_id="no-holder"),
            ev("exploded", N, "2019-01-01", event_id="bad-type"),
            ev("ported", N, "2019-01-01", to_carrier="NOPE", event_id="unknown-carrier"),
            ev("activated", N, "2019-01-01", ALICE, at="yesterday", event_id="bad-time"),
        ],
    )
    by_id = {r["event_id"]: r for r in out["rejected"]}
    assert set(by_id) == {
        "bad-number",
        "bad-checksum",
        "future",
        "no-holder",
        "bad-type",
        "unknown-carrier",
        "bad-time",
    }
    assert by_id["future"]["code"] == "OUT_OF_RANGE"
    assert by_id["unknown-carrier"]["rule"] == "unknown_carrier"
    text = orjson.dumps(out).decode()
    assert ALICE["id_number"] not in text and bad_id["id_number"] not in text and "张" not in text
    assert out["accepted"] == 0


def test_a_name_with_a_control_character_is_rejected_and_the_batch_kept(
    client: TestClient, parties: dict[str, str]
) -> None:
    # A NUL inside a name was digested as it came: no citizen can ever type that name.
    nul = {"id_number": ALICE["id_number"], "name": "张\u0000伟"}
    out = send(
        client,
        parties["CMCC"],
        [
            ev("activated", N, "2019-01-01", nul, event_id="nul-name"),
            ev("activated", "+8613900139000", "2019-01-01", BOB),
        ],
    )
    assert out["accepted"] == 1
    assert [(r["event_id"], r["rule"]) for r in out["rejected"]] == [("nul-name", "bad_name")]
    assert "张" not in orjson.dumps(out).decode()


def test_a_number_with_letters_is_rejected_and_not_read_as_digits(client: TestClient, parties: dict[str, str]) -> None:
    # phonenumbers alone read past the letters, or turned them into digits: both were accepted.
    out = send(
        client,
        parties["CMCC"],
        [
            ev("activated", "abc13800138000", "2019-01-01", ALICE, event_id="letters-before"),
            ev("activated", "1-800-FLOWERS", "2019-01-01", ALICE, event_id="vanity"),
            ev("activated", ALICE["id_number"][:-1] + "X", "2019-01-01", BOB, event_id="an-id-number"),
        ],
    )
    assert out["accepted"] == 0
    assert {(r["event_id"], r["code"], r["reason"].split(":")[0]) for r in out["rejected"]} == {
        ("letters-before", "INVALID_ARGUMENT", "number is not a phone number"),
        ("vanity", "INVALID_ARGUMENT", "number is not a phone number"),
        ("an-id-number", "INVALID_ARGUMENT", "number is not a phone number"),
    }
    assert ALICE["id_number"][:-1] not in orjson.dumps(out).decode()
    assert check(client, parties["JD"], N, "2020-01-01")["result"] == "no_data"


def test_a_type_that_is_not_a_string_is_rejected_and_the_batch_kept(
    client: TestClient, parties: dict[str, str]
) -> None:
    # A list or object as type used to answer the whole batch with a 500.
    odd_types: list[object] = [[], {}]
    bad = [ev("activated", N, "2019-01-01", ALICE, event_id=f"odd-{i}") | {"type": t} for i, t in enumerate(odd_types)]
    r = client.post(
        "/carrier/v1/events",
        json=[*bad, ev("activated", "+8613900139000", "2019-01-01", ALICE)],
        headers=bearer(parties["CMCC"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    assert [(x["event_id"], x["rule"]) for x in r.json()["rejected"]] == [("odd-0", "bad_type"), ("odd-1", "bad_type")]


def test_an_ndjson_stream_starting_with_a_byte_order_mark_keeps_its_first_event(
    client: TestClient, parties: dict[str, str]
) -> None:
    # Windows tools start UTF-8 files with one; the first event used to be rejected as not JSON.
    body = codecs.BOM_UTF8 + orjson.dumps(ev("activated", N, "2019-01-01", ALICE)) + b"\n"
    r = client.post(
        "/carrier/v1/events",
        content=body,
        headers={**bearer(parties["CMCC"]), "content-type": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["rejected"]) == (1, [])


def test_malformed_json_body_is_a_400_in_the_error_shape(client: TestClient, parties: dict[str, str]) -> None:
    r = client.post(
        "/carrier/v1/events",
        content=b"[{",
        headers={**bearer(parties["CMCC"]), "content-type": "application/json", "x-correlator": "abc-123"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert r.headers["x-correlator"] == "abc-123"
    r = client.post("/carrier/v1/events", json={"event_id": "x"}, headers=bearer(parties["CMCC"]))
    assert r.status_code == 400


def test_events_need_a_carrier_credential(client: TestClient, parties: dict[str, str]) -> None:
    event = [ev("activated", N, "2019-01-01", ALICE)]
    assert client.post("/carrier/v1/events", json=event).status_code == 401
    r = client.post("/carrier/v1/events", json=event, headers=bearer(parties["JD"]))
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
    assert client.post("/carrier/v1/events", json=event, headers=bearer("tc_c_forged")).status_code == 401


def test_nothing_identifying_reaches_the_database(client: TestClient, parties: dict[str, str], sessions) -> None:  # type: ignore[no-untyped-def]
    send(client, parties["CMCC"], [ev("activated", N, "2019-01-01", ALICE), ev("transferred", N, "2020-01-01", BOB)])
    with sessions() as session:
        for table in ("ledger_events", "tenures", "ledger_rejections", "ledger_numbers"):
            for row in session.execute(text(f"SELECT * FROM {table}")):
                dump = " ".join(str(v) for v in row)
                for person in (ALICE, BOB):
                    assert person["id_number"] not in dump
                    assert person["name"] not in dump and person["name"].replace(" ", "") not in dump


@pytest.mark.parametrize(
    ("body", "media"), [(b"[]", "application/json"), (b"", "application/x-ndjson"), (b"\n \n", "application/x-ndjson")]
)
def test_an_empty_batch_writes_no_revision_and_names_the_ledgers(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session], body: bytes, media: str
) -> None:
    # Each empty batch added a row to ledger_revisions.
    latest = send(client, parties["CMCC"], [ev("activated", N, "2019-01-01", ALICE)])["revision"]
    for _ in range(2):
        r = client.post("/carrier/v1/events", content=body, headers={**bearer(parties["CMCC"]), "content-type": media})
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": 0, "duplicates": 0, "rejected": [], "revision": latest}
    with sessions() as session:
        assert session.scalar(text("SELECT count(*) FROM ledger_revisions")) == 1
