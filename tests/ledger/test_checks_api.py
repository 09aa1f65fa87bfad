"""Platforms ask whether a number changed hands: one at a time, CAMARA-style, or in batches."""

from __future__ import annotations

import csv
import io
from datetime import date

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import bearer, refusing_rows, serving
from tests.factories import ALICE, BOB, ev

N = "+8613800138000"
OTHER = "+8613900139000"


@pytest.fixture
def history(client: TestClient, parties: dict[str, str]) -> None:
    """N: Alice 2018-01-10..2021-05-01, Bob since 2021-08-15. OTHER: Bob since 2020-01-01."""
    r = client.post(
        "/carrier/v1/events",
        json=[
            ev("activated", N, "2018-01-10", ALICE),
            ev("cancelled", N, "2021-05-01"),
            ev("activated", N, "2021-08-15", BOB),
            ev("activated", OTHER, "2020-01-01", BOB),
        ],
        headers=bearer(parties["CMCC"]),
    )
    assert r.status_code == 200 and r.json()["accepted"] == 4, r.text


def get_check(client: TestClient, secret: str, number: str, since: str):  # type: ignore[no-untyped-def]
    return client.get(f"/platform/v1/reassignments/{number}", params={"since": since}, headers=bearer(secret))


def camara(client: TestClient, secret: str, body: dict[str, object]):  # type: ignore[no-untyped-def]
    return client.post("/number-recycling/v0.2/check", json=body, headers=bearer(secret))


def assert_error(r, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)


def check_rows(sessions: sessionmaker[Session]) -> list[tuple[int | None, str, date, str, str]]:
    with sessions() as session:
        return list(
            session.execute(
                text("SELECT platform_id, number_digest, since, result, channel FROM reassignment_checks ORDER BY id")
            )
        )


def platform_id(sessions: sessionmaker[Session], code: str) -> int:
    with sessions() as session:
        return int(session.execute(text("SELECT id FROM platforms WHERE code = :c"), {"c": code}).scalar_one())


# ----- single check --------------------------------------------------------------------


@pytest.mark.usefixtures("history")
def test_bare_eleven_digit_number_is_accepted_and_answered_in_e164(client: TestClient, parties: dict[str, str]) -> None:
    r = get_check(client, parties["JD"], "13800138000", "2019-06-01")
    assert r.status_code == 200, r.text
    assert r.json() == {"number": N, "since": "2019-06-01", "result": "yes", "last_change_on": "2021-08-15"}


@pytest.mark.usefixtures("history")
def test_current_holder_since_their_activation_gets_no(client: TestClient, parties: dict[str, str]) -> None:
    r = get_check(client, parties["JD"], OTHER, "2020-06-01")
    assert r.json() == {"number": OTHER, "since": "2020-06-01", "result": "no", "last_change_on": "2020-01-01"}


def test_invalid_number_is_a_400_invalid_argument(client: TestClient, parties: dict[str, str]) -> None:
    assert_error(get_check(client, parties["JD"], "+8612345678901", "2020-01-01"), 400, "INVALID_ARGUMENT")
    assert_error(get_check(client, parties["JD"], "not-a-number", "2020-01-01"), 400, "INVALID_ARGUMENT")


@pytest.mark.usefixtures("history")
def test_full_width_digits_as_an_input_method_types_them_are_the_same_number(
    client: TestClient, parties: dict[str, str]
) -> None:
    r = get_check(client, parties["JD"], "＋８６１３８００１３８０００", "2019-06-01")
    assert r.status_code == 200, r.text
    assert r.json() == {"number": N, "since": "2019-06-01", "result": "yes", "last_change_on": "2021-08-15"}


# phonenumbers alone read past the letters, or turned them into digits: these were answered.
LETTERED = ["abc13800138000", "1-800-FLOWERS", "+86 138 CALL 8000", "+86-13800138000x1"]


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize("number", LETTERED)
def test_a_number_with_letters_is_a_400_and_not_checked(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session], number: str
) -> None:
    r = get_check(client, parties["JD"], number, "2019-06-01")
    assert_error(r, 400, "INVALID_ARGUMENT")
    assert r.json()["error"]["message"].startswith("number is not a phone number")
    assert check_rows(sessions) == []


@pytest.mark.parametrize("since", ["2020-13-01", "2020/01/01", "yesterday", "20200101", ""])
def test_malformed_since_is_a_400(client: TestClient, parties: dict[str, str], since: str) -> None:
    r = get_check(client, parties["JD"], N, since)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("INVALID_ARGUMENT", "OUT_OF_RANGE")


def test_missing_since_is_a_400(client: TestClient, parties: dict[str, str]) -> None:
    r = client.get(f"/platform/v1/reassignments/{N}", headers=bearer(parties["JD"]))
    assert_error(r, 400, "INVALID_ARGUMENT")


def test_future_since_is_a_400_out_of_range(client: TestClient, parties: dict[str, str]) -> None:
    # the fixed clock says 2026-11-23 in Beijing: the 24th is tomorrow, the 23rd is today
    assert_error(get_check(client, parties["JD"], N, "2026-11-24"), 400, "OUT_OF_RANGE")
    assert get_check(client, parties["JD"], N, "2026-11-23").status_code == 200


def test_check_without_credential_is_401(client: TestClient) -> None:
    r = client.get(f"/platform/v1/reassignments/{N}", params={"since": "2020-01-01"})
    assert_error(r, 401, "UNAUTHENTICATED")


def test_check_with_a_carrier_credential_is_401(client: TestClient, parties: dict[str, str]) -> None:
    assert_error(get_check(client, parties["CMCC"], N, "2020-01-01"), 401, "UNAUTHENTICATED")


def test_check_with_a_forged_credential_is_401(client: TestClient) -> None:
    assert_error(get_check(client, "tc_p_forged", N, "2020-01-01"), 401, "UNAUTHENTICATED")


def test_unknown_number_is_no_data(client: TestClient, parties: dict[str, str]) -> None:
    r = get_check(client, parties["JD"], "+8613700137000", "2020-01-01")
    assert r.json() == {"number": "+8613700137000", "since": "2020-01-01", "result": "no_data", "last_change_on": None}


# ----- CAMARA --------------------------------------------------------------------------


@pytest.mark.usefixtures("history")
def test_camara_same_holder_is_not_recycled(client: TestClient, parties: dict[str, str]) -> None:
    r = camara(client, parties["MEITUAN"], {"phoneNumber": N, "specifiedDate": "2022-01-01"})
    assert r.status_code == 200, r.text
    assert r.json() == {"phoneNumberRecycled": False}


@pytest.mark.usefixtures("history")
def test_camara_new_holder_since_the_date_is_recycled(client: TestClient, parties: dict[str, str]) -> None:
    r = camara(client, parties["MEITUAN"], {"phoneNumber": N, "specifiedDate": "2019-01-01"})
    assert r.status_code == 200, r.text
    assert r.json() == {"phoneNumberRecycled": True}


@pytest.mark.usefixtures("history")
def test_camara_no_data_is_400_out_of_range(client: TestClient, parties: dict[str, str]) -> None:
    before_records = camara(client, parties["MEITUAN"], {"phoneNumber": N, "specifiedDate": "2017-01-01"})
    assert_error(before_records, 400, "OUT_OF_RANGE")
    unknown = camara(client, parties["MEITUAN"], {"phoneNumber": "+8613700137000", "specifiedDate": "2020-01-01"})
    assert_error(unknown, 400, "OUT_OF_RANGE")


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize("number", LETTERED)
def test_camara_number_with_letters_is_a_400(client: TestClient, parties: dict[str, str], number: str) -> None:
    r = camara(client, parties["MEITUAN"], {"phoneNumber": number, "specifiedDate": "2019-01-01"})
    assert_error(r, 400, "INVALID_ARGUMENT")
    # CAMARA's name for the field: "number" was this API's other one.
    assert r.json()["error"]["message"].startswith("phoneNumber is not a phone number")


@pytest.mark.parametrize(
    ("specified", "status", "code", "message"),
    [
        ("2020/01/01", 400, "INVALID_ARGUMENT", "specifiedDate must be an RFC 3339 full-date like 2024-01-31"),
        ("2020-1-1", 400, "INVALID_ARGUMENT", "specifiedDate must be an RFC 3339 full-date like 2024-01-31"),
        ("", 400, "INVALID_ARGUMENT", "specifiedDate is required: a date like 2024-01-31"),
        ("2026-11-24", 400, "OUT_OF_RANGE", "specifiedDate is in the future"),
    ],
)
def test_camara_date_errors_name_specified_date(
    client: TestClient, parties: dict[str, str], specified: str, status: int, code: str, message: str
) -> None:
    # They said "since", a field the CAMARA request does not have.
    r = camara(client, parties["MEITUAN"], {"phoneNumber": N, "specifiedDate": specified})
    assert_error(r, status, code)
    assert r.json()["error"]["message"] == message


def test_camara_number_errors_name_phone_number(client: TestClient, parties: dict[str, str]) -> None:
    r = camara(client, parties["MEITUAN"], {"phoneNumber": "+8612345678901", "specifiedDate": "2020-01-01"})
    assert_error(r, 400, "INVALID_ARGUMENT")
    assert r.json()["error"]["message"] == "phoneNumber is not a mainland China mobile number"


def test_single_check_errors_still_name_number_and_since(client: TestClient, parties: dict[str, str]) -> None:
    assert get_check(client, parties["JD"], N, "2026-11-24").json()["error"]["message"] == "since is in the future"
    r = get_check(client, parties["JD"], "+8612345678901", "2020-01-01")
    assert r.json()["error"]["message"] == "number is not a mainland China mobile number"


def test_camara_extra_field_is_400(client: TestClient, parties: dict[str, str]) -> None:
    r = camara(client, parties["MEITUAN"], {"phoneNumber": N, "specifiedDate": "2020-01-01", "extra": 1})
    assert_error(r, 400, "INVALID_ARGUMENT")


def test_camara_missing_field_is_400(client: TestClient, parties: dict[str, str]) -> None:
    assert_error(camara(client, parties["MEITUAN"], {"phoneNumber": N}), 400, "INVALID_ARGUMENT")


def test_camara_needs_a_platform_credential(client: TestClient, parties: dict[str, str]) -> None:
    r = camara(client, parties["CMCC"], {"phoneNumber": N, "specifiedDate": "2020-01-01"})
    assert_error(r, 401, "UNAUTHENTICATED")


# ----- batch ---------------------------------------------------------------------------


def batch(client: TestClient, secret: str, body: bytes, media: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/platform/v1/reassignments:batch", content=body, headers={**bearer(secret), "content-type": media}
    )


@pytest.mark.usefixtures("history")
def test_csv_batch_returns_the_same_rows_with_results(client: TestClient, parties: dict[str, str]) -> None:
    body = f"number,since\n{N},2019-06-01\n13900139000,2020-06-01\n+8613700137000,2020-01-01\n".encode()
    r = batch(client, parties["JD"], body, "text/csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0] == "number,since,result,last_change_on,error"
    rows = [line.split(",") for line in lines[1:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        (N, "2019-06-01", "yes"),
        ("13900139000", "2020-06-01", "no"),
        ("+8613700137000", "2020-01-01", "no_data"),
    ]
    assert rows[0][3] == "2021-08-15"


@pytest.mark.usefixtures("history")
def test_ndjson_batch_returns_the_same_rows_with_results(client: TestClient, parties: dict[str, str]) -> None:
    rows = [{"number": N, "since": "2022-01-01"}, {"number": "13900139000", "since": "2019-06-01"}]
    body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    r = batch(client, parties["JD"], body, "application/x-ndjson")
    assert r.status_code == 200, r.text
    out = [orjson.loads(line) for line in r.content.splitlines()]
    assert [(o["number"], o["since"], o["result"]) for o in out] == [
        (N, "2022-01-01", "no"),
        ("13900139000", "2019-06-01", "no_data"),
    ]
    assert out[0]["last_change_on"] == "2021-08-15"


def test_csv_batch_marks_invalid_rows_with_an_error(client: TestClient, parties: dict[str, str]) -> None:
    body = (f"number,since\n+8612345678901,2020-01-01\n{N},not-a-date\n{N},2030-01-01\n{N},2020-01-01\n{N}\n").encode()
    r = batch(client, parties["JD"], body, "text/csv")
    assert r.status_code == 200, r.text
    rows = [line.split(",") for line in r.text.splitlines()[1:]]
    assert len(rows) == 5
    results = [row[2] if len(row) > 2 else None for row in rows]
    assert results[:3] == ["invalid", "invalid", "invalid"]
    assert all(row[4] for row in rows[:3]), rows
    assert results[3] == "no_data" and rows[3][4] == ""
    assert "invalid" in rows[4]


def test_ndjson_batch_marks_invalid_rows_with_an_error(client: TestClient, parties: dict[str, str]) -> None:
    body = b'{"number": "12", "since": "2020-01-01"}\n{not json\n{"number": "+8613800138000", "since": "2020-01-01"}\n'
    r = batch(client, parties["JD"], body, "application/x-ndjson")
    assert r.status_code == 200, r.text
    out = [orjson.loads(line) for line in r.content.splitlines()]
    assert len(out) == 3
    assert out[0]["result"] == "invalid" and out[0]["error"]
    assert out[1]["result"] == "invalid" and out[1]["error"]
    assert out[2]["result"] == "no_data" and "error" not in out[2]


@pytest.mark.usefixtures("history")
def test_ndjson_batch_with_a_bare_null_row_marks_it_and_answers_the_rest(
    client: TestClient, parties: dict[str, str]
) -> None:
    # A block starting with `null` used to crash Arrow's JSON reader, and the hub with it.
    body = b'null\n  null\n{"number": "+8613800138000", "since": "2022-01-01"}\n'
    r = batch(client, parties["JD"], body, "application/x-ndjson")
    assert r.status_code == 200, r.text
    out = [orjson.loads(line) for line in r.content.splitlines()]
    assert [(o["result"], o.get("error")) for o in out] == [
        ("invalid", "row is malformed"),
        ("invalid", "row is malformed"),
        ("no", None),
    ]


@pytest.mark.usefixtures("history")
def test_ndjson_batch_with_a_lone_surrogate_escaped_in_a_row_refuses_only_what_holds_it(
    client: TestClient, parties: dict[str, str]
) -> None:
    # JSON may escape a lone surrogate; the row was "malformed" whichever field held it.
    body = (
        b'{"number": "\\ud800", "since": "2022-01-01"}\n'
        b'{"number": "+8613800138000", "since": "2022-01-01", "note": "\\ud800"}\n'
        b'{"number": "+8613800138000", "since": "2022-01-01"}\n'
    )
    r = batch(client, parties["JD"], body, "application/x-ndjson")
    assert r.status_code == 200, r.text
    out = [orjson.loads(line) for line in r.content.splitlines()]
    assert [(o["number"], o["result"], o.get("error")) for o in out] == [
        ("\ufffd", "invalid", "number is not a mainland China mobile number"),
        (N, "no", None),
        (N, "no", None),
    ]


@pytest.mark.usefixtures("history")
def test_csv_batch_with_a_bare_carriage_return_is_answered_row_by_row(
    client: TestClient, parties: dict[str, str]
) -> None:
    # A stray CR used to stop the row-by-row reader mid-stream: the answer broke off.
    body = b"number,since\n+8613800138000,2022-01-01\n1380013\r8000,2022-01-01\n"
    r = batch(client, parties["JD"], body, "text/csv")
    assert r.status_code == 200, r.text
    rows = [line.split(",") for line in r.text.splitlines()[1:]]
    assert rows[0][:3] == ["+8613800138000", "2022-01-01", "no"]
    assert all(row[2] == "invalid" and row[-1] for row in rows[1:]), rows


@pytest.mark.usefixtures("history")
def test_csv_batch_with_an_unclosed_quote_over_the_csv_field_limit_marks_that_row_and_answers_the_rest(
    client: TestClient, parties: dict[str, str]
) -> None:
    # The row-by-row reader raised csv.Error (field larger than field limit) mid-stream:
    # the answer broke off after its header, and the hub logged an unhandled error.
    body = f'number,since\n{N},2022-01-01\n"{"1" * 200_000},2020-01-01\n{OTHER},2021-01-01\n'.encode()
    r = batch(client, parties["JD"], body, "text/csv")
    assert r.status_code == 200, r.text
    rows = [line.split(",") for line in r.text.splitlines()[1:]]
    assert rows[0][:3] == [N, "2022-01-01", "no"]
    assert rows[1][2:] == ["invalid", "", "row is malformed"]
    assert rows[-1][:3] == [OTHER, "2021-01-01", "no"]


@pytest.mark.usefixtures("history")
def test_csv_batch_with_a_repeated_header_column_reads_the_first(client: TestClient, parties: dict[str, str]) -> None:
    # A header naming a column twice used to break the answer off after its first line.
    body = b"number,since,since,note,note\n+8613800138000,2022-01-01,2019-01-01,a,b\n"
    r = batch(client, parties["JD"], body, "text/csv")
    assert r.status_code == 200, r.text
    assert r.text.splitlines() == [
        "number,since,since,note,note,result,last_change_on,error",
        "+8613800138000,2022-01-01,2019-01-01,a,b,no,2021-08-15,",
    ]


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize(
    ("media", "body"),
    [
        ("text/csv", b"\xef\xbb\xbfnumber,since\n+8613800138000,2022-01-01\n"),
        ("text/csv", b'"number","since"\n"+8613800138000","2022-01-01"\n'),
        ("application/x-ndjson", b'\xef\xbb\xbf{"number": "+8613800138000", "since": "2022-01-01"}\n'),
    ],
    ids=["csv-with-bom", "csv-quoted-header", "ndjson-with-bom"],
)
def test_a_file_saved_by_excel_gets_one_answer_per_row(
    client: TestClient, parties: dict[str, str], media: str, body: bytes
) -> None:
    # A byte order mark or a quoted header used to read the header as a row of its own.
    r = batch(client, parties["JD"], body, media)
    assert r.status_code == 200, r.text
    lines = r.content.splitlines()
    if media == "text/csv":
        assert lines[0].endswith(b",result,last_change_on,error")
        lines = lines[1:]
    assert len(lines) == 1 and b"no" in lines[0] and b"invalid" not in lines[0], lines


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize("media", ["text/csv", "application/x-ndjson"])
def test_batch_marks_a_number_with_letters_or_a_tab_invalid_as_a_single_check_would(
    client: TestClient, parties: dict[str, str], media: str
) -> None:
    # These rows were answered: the row-by-row parser stripped the tab and phonenumbers
    # read past the letters.
    numbers = [*LETTERED, "\t13800138000", "１３８ ００１３ ８０００", "+86 138 0013 8000"]
    if media == "text/csv":
        body = ("number,since\n" + "".join(f'"{n}",2019-06-01\n' for n in numbers)).encode()
    else:
        body = b"".join(orjson.dumps({"number": n, "since": "2019-06-01"}) + b"\n" for n in numbers)
    r = batch(client, parties["JD"], body, media)
    assert r.status_code == 200, r.text
    if media == "text/csv":
        rows = [(row["number"], row["result"], row["error"]) for row in csv.DictReader(io.StringIO(r.text))]
    else:
        rows = [(o["number"], o["result"], o.get("error", "")) for o in map(orjson.loads, r.content.splitlines())]
    bad = "number is not a mainland China mobile number"
    answered = [(n, "yes", "") for n in numbers[-2:]]
    assert rows == [*((n, "invalid", bad) for n in numbers[:-2]), *answered]


@pytest.mark.parametrize(
    ("media", "body", "answer"),
    [
        ("text/csv", b"", b"number,since,result,last_change_on,error\n"),
        ("text/csv", b"\r\n\n", b"number,since,result,last_change_on,error\n"),
        ("text/csv", b"\xef\xbb\xbf\r\n\n", b"number,since,result,last_change_on,error\n"),
        ("text/csv", b"number,since\n", b"number,since,result,last_change_on,error\n"),
        ("text/csv", b"\xef\xbb\xbfnumber,since,note\r\n", b"number,since,note,result,last_change_on,error\n"),
        ("application/x-ndjson", b"", b""),
        ("application/x-ndjson", b"\n", b""),
        ("application/x-ndjson", b"\xef\xbb\xbf\n\n", b""),
    ],
    ids=[
        "csv-empty",
        "csv-blank-lines",
        "csv-blank-lines-from-excel",
        "csv-header-only",
        "csv-header-only-from-excel",
        "ndjson-empty",
        "ndjson-blank",
        "ndjson-blank-from-excel",
    ],
)
def test_an_empty_batch_is_answered_with_an_empty_table_of_the_same_shape(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session], media: str, body: bytes, answer: bytes
) -> None:
    # An empty CSV body was answered with nothing at all, not even the header line.
    r = batch(client, parties["JD"], body, media)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media)
    assert r.content == answer
    with sessions() as session:
        assert session.execute(text("SELECT rows, invalid_rows FROM reassignment_batches")).all() == [(0, 0)]


def test_batch_with_wrong_content_type_is_415(client: TestClient, parties: dict[str, str]) -> None:
    assert_error(batch(client, parties["JD"], b'{"a": 1}', "application/json"), 415, "INVALID_ARGUMENT")


def test_batch_needs_a_platform_credential(client: TestClient, parties: dict[str, str]) -> None:
    assert_error(batch(client, parties["CMCC"], b"number,since\n", "text/csv"), 401, "UNAUTHENTICATED")


@pytest.mark.usefixtures("history")
def test_batch_output_has_one_row_per_input_row(client: TestClient, parties: dict[str, str]) -> None:
    numbers = [f"1380013{i:04d}" for i in range(3000)]
    body = ("number,since\n" + "".join(f"{n},2020-0{1 + i % 9}-15\n" for i, n in enumerate(numbers))).encode()
    r = batch(client, parties["JD"], body, "text/csv")
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert len(lines) == 1 + len(numbers)
    assert [line.split(",")[0] for line in lines[1:]] == numbers


# ----- the audit trail -----------------------------------------------------------------


@pytest.mark.usefixtures("history")
def test_single_check_is_logged_with_platform_digest_and_answer(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    assert get_check(client, parties["JD"], N, "2019-06-01").json()["result"] == "yes"
    rows = check_rows(sessions)
    assert len(rows) == 1
    pid, digest, since, result, channel = rows[0]
    assert pid == platform_id(sessions, "JD")
    assert str(since) == "2019-06-01" and result == "yes" and channel == "single"
    assert digest == client.app.state.hub.digester.number(13800138000)  # type: ignore[attr-defined]
    assert "13800138000" not in digest


@pytest.mark.usefixtures("history")
def test_camara_check_is_logged(client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session]) -> None:
    camara(client, parties["MEITUAN"], {"phoneNumber": N, "specifiedDate": "2022-01-01"})
    rows = check_rows(sessions)
    assert len(rows) == 1
    assert rows[0][0] == platform_id(sessions, "MEITUAN") and rows[0][3] == "no"


@pytest.mark.usefixtures("history")
def test_camara_and_batch_checks_are_logged_under_the_requests_correlator(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    r = client.post(
        "/number-recycling/v0.2/check",
        json={"phoneNumber": N, "specifiedDate": "2022-01-01"},
        headers={**bearer(parties["MEITUAN"]), "x-correlator": "camara-7"},
    )
    assert r.headers["x-correlator"] == "camara-7"
    r = client.post(
        "/platform/v1/reassignments:batch",
        content=f"number,since\n{N},2019-06-01\n{OTHER},2020-06-01\n".encode(),
        headers={**bearer(parties["JD"]), "content-type": "text/csv", "x-correlator": "batch-9"},
    )
    assert r.status_code == 200 and r.headers["x-correlator"] == "batch-9"
    client.app.state.hub.checklog.flush()  # type: ignore[attr-defined]
    with sessions() as session:
        logged = session.execute(text("SELECT channel, correlator FROM reassignment_checks ORDER BY id")).all()
    assert [tuple(row) for row in logged] == [("camara", "camara-7"), ("batch", "batch-9"), ("batch", "batch-9")]


@pytest.mark.usefixtures("history")
def test_batch_checks_are_logged_one_row_per_valid_check(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    body = f"number,since\n{N},2019-06-01\n13900139000,2020-06-01\n+8612345678901,2020-01-01\n".encode()
    assert batch(client, parties["MEITUAN"], body, "text/csv").status_code == 200
    client.app.state.hub.checklog.flush()  # type: ignore[attr-defined]
    rows = check_rows(sessions)
    assert sorted((r[3], r[4]) for r in rows) == [("no", "batch"), ("yes", "batch")]
    assert {r[0] for r in rows} == {platform_id(sessions, "MEITUAN")}
    digester = client.app.state.hub.digester  # type: ignore[attr-defined]
    assert {r[1] for r in rows} == {digester.number(13800138000), digester.number(13900139000)}


@pytest.mark.usefixtures("history")
def test_no_raw_number_is_stored_in_the_check_log(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    get_check(client, parties["JD"], N, "2019-06-01")
    camara(client, parties["JD"], {"phoneNumber": OTHER, "specifiedDate": "2022-01-01"})
    batch(client, parties["JD"], f"number,since\n{N},2019-06-01\n".encode(), "text/csv")
    client.app.state.hub.checklog.flush()  # type: ignore[attr-defined]
    with sessions() as session:
        dump = " ".join(str(v) for row in session.execute(text("SELECT * FROM reassignment_checks")) for v in row)
    assert dump
    assert "13800138000" not in dump and "13900139000" not in dump


@pytest.mark.usefixtures("history")
def test_a_batch_whose_rows_cannot_be_logged_is_cut_short_not_answered_whole(
    client: TestClient, parties: dict[str, str], engine: Engine
) -> None:
    # The answer is the platform's evidence that it checked (API.md): answers that the
    # check log does not hold must not arrive as a complete answer.
    body = f"number,since\n{N},2019-06-01\n13900139000,2020-06-01\n".encode()
    headers = {**bearer(parties["JD"]), "content-type": "text/csv"}
    with serving(client.app) as url, refusing_rows(engine), pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{url}/platform/v1/reassignments:batch", content=body, headers=headers, timeout=30)
    with serving(client.app) as url:  # and with the log writable again, the same batch is answered
        r = httpx.post(f"{url}/platform/v1/reassignments:batch", content=body, headers=headers, timeout=30)
    assert r.status_code == 200 and len(r.text.splitlines()) == 3, r.text
