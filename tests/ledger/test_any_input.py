"""No input makes the ledger's endpoints answer 5xx, on either database.

Properties over generated requests: events near the valid and far from it, as a JSON
array or an NDJSON stream, and checks of any number and date. Every answer is a 2xx or
a 4xx in the API's error shape; a batch of events accounts for every item it sent, the
ledger holds exactly the events it says it accepted, and no answer repeats an ID number
or a name.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import API_ERROR_CODES, assert_error_shape, bearer
from tests.factories import ALICE, BOB, CAROL, id_number
from tongcha.kit.clock import FixedClock
from tongcha.kit.settings import Settings
from tongcha.ledger import importer
from tongcha.ledger.models import LedgerEvent
from tongcha.ledger.parse import CSV_COLUMNS

# Values of identity that must never come back in an answer: valid ones, one with a bad
# check digit, one with a birth date that does not exist.
ID_NUMBERS = [ALICE["id_number"], BOB["id_number"], CAROL["id_number"], id_number(serial=404)[:-1] + "0"]
ID_NUMBERS.append(id_number(born="19990230", serial=505))
NAMES = ["张 伟", "李娜", "王芳", "阿卜杜·热合曼", "欧阳\u3000娜娜"]

numbers = st.sampled_from(
    [
        "+8613800138000",
        "13800138001",
        "+86 138 0013 8002",
        "+86１３８００１３８００３",
        "+8612345",
        "+12025550100",
        "+8615400000000",
        "",
        "+8613800138000\x00",
        "1" * 400,
    ]
) | st.text(max_size=20)
times = st.sampled_from(
    [
        "2020-01-01T10:00:00+08:00",
        "2021-06-30T23:59:59Z",
        "2020-01-01",
        "2020-02-30T10:00:00+08:00",
        "9999-12-31T23:59:59Z",
        "1979-12-31T23:59:59Z",
        "2020-01-01T10:00:00",
        "2020-01-01T10:00:00+24:00",
        "0001-01-01T00:00:00+00:00",
    ]
) | st.text(max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """An event with each field valid, bent or missing."""
    event: dict[str, Any] = {
        "event_id": draw(st.sampled_from(["e1", "e2", "e3", " ", "", "x" * 129]) | st.text(max_size=12)),
        "type": draw(
            st.sampled_from(["activated", "cancelled", "ported", "transferred", "suspended", "resumed", "ACTIVATED"])
        ),
        "number": draw(numbers),
        "occurred_at": draw(times),
    }
    if draw(st.booleans()):
        event["holder"] = {
            "id_number": draw(st.sampled_from(ID_NUMBERS) | st.text(max_size=20)),
            "name": draw(st.sampled_from(NAMES) | st.text(max_size=8)),
        }
    if draw(st.booleans()):
        event["to_carrier"] = draw(st.sampled_from(["CUCC", "CTCC", "CMCC", "NOPE", ""]) | json_values)
    for key in draw(st.lists(st.sampled_from(list(event)), max_size=2, unique=True)):
        if draw(st.booleans()):
            del event[key]
        else:
            event[key] = draw(json_values)
    return event


items = st.lists(events() | json_values, min_size=1, max_size=8)
fuzzing = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def dumps(value: Any) -> bytes:
    # The standard library's: it writes integers of any size, which orjson refuses.
    return json.dumps(value, ensure_ascii=False).encode()


def assert_no_identity(body: bytes) -> None:
    text = body.decode("utf-8", "replace")
    for value in (*ID_NUMBERS, *NAMES):
        assert value not in text


def held_events(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(LedgerEvent)) or 0


@fuzzing
@given(batch=items)
def test_any_json_array_of_events_is_answered_item_by_item_and_written_whole(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session], batch: list[Any]
) -> None:
    before = held_events(sessions)
    r = client.post(
        "/carrier/v1/events",
        content=dumps(batch),
        headers={**bearer(parties["CMCC"]), "content-type": "application/json"},
    )
    assert_no_identity(r.content)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] + body["duplicates"] + len(body["rejected"]) == len(batch)
    assert all(rej["code"] in API_ERROR_CODES and rej["reason"] for rej in body["rejected"])
    assert held_events(sessions) == before + body["accepted"]


@fuzzing
@given(batch=items, junk=st.lists(st.binary(max_size=30), max_size=3))
def test_any_ndjson_stream_is_answered_line_by_line_and_written_whole(
    client: TestClient, parties: dict[str, str], sessions: sessionmaker[Session], batch: list[Any], junk: list[bytes]
) -> None:
    lines = [dumps(item) for item in batch] + [j.replace(b"\n", b" ").replace(b"\r", b" ") for j in junk]
    before = held_events(sessions)
    r = client.post(
        "/carrier/v1/events",
        content=b"\n".join(lines) + b"\n",
        headers={**bearer(parties["CMCC"]), "content-type": "application/x-ndjson"},
    )
    assert_no_identity(r.content)
    if r.status_code != 200:  # a stream that is not UTF-8 may be refused whole
        assert_error_shape(r.status_code, r.content)
        assert held_events(sessions) == before
        return
    body = r.json()
    assert body["accepted"] + body["duplicates"] + len(body["rejected"]) == sum(1 for x in lines if x.strip())
    assert held_events(sessions) == before + body["accepted"]


@fuzzing
@given(number=numbers, since=st.sampled_from(["2020-01-01", "2999-01-01", "2020-02-30", "", "20200101"]) | times)
def test_any_single_check_is_answered_or_refused_in_the_error_shape(
    client: TestClient, parties: dict[str, str], number: str, since: str
) -> None:
    r = client.get(
        "/platform/v1/reassignments/" + quote(number, safe=""),
        params={"since": since},
        headers=bearer(parties["JD"]),
    )
    if r.status_code == 200:
        assert r.json()["result"] in ("yes", "no", "no_data")
    else:
        assert_error_shape(r.status_code, r.content)


@fuzzing
@given(body=json_values | st.fixed_dictionaries({"phoneNumber": numbers, "specifiedDate": times | json_values}))
def test_any_camara_check_is_answered_or_refused_in_the_error_shape(
    client: TestClient, parties: dict[str, str], body: Any
) -> None:
    r = client.post(
        "/number-recycling/v0.2/check",
        content=dumps(body),
        headers={**bearer(parties["JD"]), "content-type": "application/json"},
    )
    if r.status_code == 200:
        assert isinstance(r.json()["phoneNumberRecycled"], bool)
    else:
        assert_error_shape(r.status_code, r.content)


@fuzzing
@given(
    rows=st.lists(st.tuples(numbers, times), max_size=6),
    junk=st.binary(max_size=40),
    media=st.sampled_from(["text/csv", "application/x-ndjson"]),
)
def test_any_batch_file_is_answered_row_by_row(
    client: TestClient, parties: dict[str, str], rows: list[tuple[str, str]], junk: bytes, media: str
) -> None:
    if media == "text/csv":
        content = b"number,since\n" + b"".join(f"{n},{s}\n".encode("utf-8", "replace") for n, s in rows)
    else:
        content = b"".join(orjson.dumps({"number": n, "since": s}) + b"\n" for n, s in rows)
    r = client.post(
        "/platform/v1/reassignments:batch",
        content=content + junk,
        headers={**bearer(parties["JD"]), "content-type": media},
    )
    if r.status_code != 200:
        assert_error_shape(r.status_code, r.content)
        return
    assert r.headers["content-type"].startswith(media)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=items,
    junk=st.lists(st.binary(max_size=30), max_size=3),
    name=st.sampled_from(["events.ndjson", "events.csv", "events"]),
    jobs=st.sampled_from([1, 2]),
)
def test_any_file_is_imported_event_by_event(
    settings: Settings,
    parties: dict[str, str],
    sessions: sessionmaker[Session],
    clock: FixedClock,
    tmp_path_factory: pytest.TempPathFactory,
    batch: list[Any],
    junk: list[bytes],
    name: str,
    jobs: int,
) -> None:
    path = tmp_path_factory.mktemp("import") / name
    if name.endswith(".csv"):
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(CSV_COLUMNS)
        for item in batch:
            event = item if isinstance(item, dict) else {"event_id": item}
            holder = event["holder"] if isinstance(event.get("holder"), dict) else {}
            fields = [*(event.get(k, "") for k in CSV_COLUMNS[:4]), holder.get("id_number", ""), holder.get("name", "")]
            writer.writerow([*(v if isinstance(v, str) else dumps(v).decode() for v in fields), ""])
        path.write_bytes(text.getvalue().encode("utf-8", "surrogatepass") + b"\n".join(junk))
    else:
        path.write_bytes(b"\n".join([dumps(item) for item in batch] + junk) + b"\n")
    rejects = path.with_suffix(".rejects")
    before = held_events(sessions)
    totals = importer.import_file(settings, path, "CMCC", clock=clock, jobs=jobs, rejects=rejects)
    assert held_events(sessions) == before + totals.accepted
    assert_no_identity(rejects.read_bytes())
    if "CSV header lacks" in " ".join(totals.by_rule):  # read as CSV, and refused whole
        assert (totals.accepted, totals.duplicates, totals.rejected) == (0, 0, 1)
    else:  # every item, and any line of junk, accounted for
        assert totals.accepted + totals.duplicates + totals.rejected >= len(batch)
