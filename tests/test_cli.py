"""The real ``tongcha`` command, run as an operator would, on SQLite and on PostgreSQL.

Starting the command costs a second or two, so each backend gets one database, set up
once by the command itself (``db upgrade``, ``carrier add``); each test then runs the
commands it is about and checks their effect in the database and through the app.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import PG_ADMIN, bearer, fresh_pg_database, refusing_rows, until, waiting_for_the_ledger
from tests.factories import ev, id_number
from tongcha.kit.db import make_engine, wait_for_ledger_writers
from tongcha.kit.settings import Settings
from tongcha.sim.ledger import SynthConfig, generate
from tongcha.web.app import create_app

TONGCHA = str(Path(sys.executable).with_name("tongcha"))


@dataclass
class Scenario:
    url: str
    work: Path
    outputs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    before_revoke: int = 0
    rejects: Path = Path()
    check_out: Path = Path()

    def scalar(self, sql: str) -> object:
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(sql)).scalar()
        finally:
            engine.dispose()

    def client(self) -> TestClient:
        """A freshly built app (so no credential cache carries over) on this database."""
        settings = Settings(env="dev", database_url=self.url, index_refresh_seconds=0.0)
        return TestClient(create_app(settings), raise_server_exceptions=False)


def run_cli(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TONGCHA_DATABASE_URL": url, "TONGCHA_ENV": "dev", "COLUMNS": "200"}
    env.pop("TONGCHA_SECRET_KEY", None)
    proc = subprocess.run([TONGCHA, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


def _scenario(url: str, work: Path) -> Scenario:
    """Every command the tests look at, run once, in order, on one database."""
    sc = Scenario(url, work)
    sc.outputs["upgrade"] = run_cli(url, "db", "upgrade")
    for code, label in (("CMCC", "China Mobile"), ("CUCC", "China Unicom")):
        sc.outputs[f"add {code}"] = proc = run_cli(url, "carrier", "add", code, "--name", label)
        sc.secrets[code] = proc.stdout.strip().splitlines()[-1]
    with sc.client() as client:
        sc.before_revoke = client.post("/carrier/v1/events", json=[], headers=bearer(sc.secrets["CUCC"])).status_code
    sc.outputs["revoke"] = run_cli(url, "carrier", "revoke", "CUCC")
    csv_events_file = _csv_history(work)
    sc.outputs["import csv"] = run_cli(url, "ledger", "import", str(csv_events_file), "--carrier", "CMCC")
    sc.counts["after first import"] = _counts(sc, 13800138001)
    sc.outputs["import csv again"] = run_cli(url, "ledger", "import", str(csv_events_file), "--carrier", "CMCC")
    sc.counts["after second import"] = _counts(sc, 13800138001)
    sc.outputs["import ndjson"] = run_cli(
        url, "ledger", "import", str(_ndjson_history(work)), "--carrier", "CMCC", "--jobs", "3"
    )
    bad, sc.rejects = _bad_rows(work), work / "rejects.ndjson"
    sc.outputs["import bad"] = run_cli(
        url, "ledger", "import", str(bad), "--carrier", "CMCC", "--rejects", str(sc.rejects)
    )
    sc.outputs["import unknown carrier"] = run_cli(url, "ledger", "import", str(bad), "--carrier", "NOPE", check=False)
    # Alice's events again, for another number, as Excel saves CSV on Chinese Windows.
    gb = work / "events-gb.csv"
    gb.write_bytes(
        csv_file(
            work / "events-utf8.csv",
            [["gb-1", "activated", "+8613700137001", "2020-03-01T10:00:00+08:00", *holder(11), ""]],
        )
        .read_text(encoding="utf-8")
        .encode("gb18030")
    )
    sc.outputs["import gb18030 as utf-8"] = run_cli(url, "ledger", "import", str(gb), "--carrier", "CMCC")
    sc.outputs["import gb18030"] = run_cli(
        url, "ledger", "import", str(gb), "--carrier", "CMCC", "--encoding", "gb18030"
    )
    sc.outputs["import unknown encoding"] = run_cli(
        url, "ledger", "import", str(gb), "--carrier", "CMCC", "--encoding", "klingon", check=False
    )
    garbage = work / "garbage.ndjson"  # each line refused with a reason naming it
    garbage.write_text("".join(f"not json {i}\n" for i in range(1_200)), encoding="utf-8")
    sc.outputs["import garbage"] = run_cli(url, "ledger", "import", str(garbage), "--carrier", "CMCC")
    asks = work / "asks.csv"
    asks.write_text(
        "number,since\n+8613800138001,2019-06-01\n13800138001,2022-01-01\n+8615000150008,2019-06-01\n12,2019-06-01\n",
        encoding="utf-8",
    )
    sc.check_out = work / "out.csv"
    sc.outputs["check"] = run_cli(url, "ledger", "check", str(asks), "-o", str(sc.check_out))
    for name, content in (("empty", b""), ("header-only", b"number,since\r\n")):
        (work / f"{name}.csv").write_bytes(content)
        sc.outputs[f"check {name}"] = run_cli(url, "ledger", "check", str(work / f"{name}.csv"))
    return sc


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Scenario]]:
    name = f"tongcha_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    urls = {
        "sqlite": f"sqlite:///{tmp_path_factory.mktemp('cli') / 'tongcha.db'}",
        "postgresql": PG_ADMIN.rsplit("/", 1)[0] + "/" + name,
    }
    try:
        # the two databases are independent: run their command sequences side by side
        with ThreadPoolExecutor(2) as pool:
            futures = {k: pool.submit(_scenario, url, tmp_path_factory.mktemp(k)) for k, url in urls.items()}
            yield {k: f.result() for k, f in futures.items()}
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def sc(request: pytest.FixtureRequest, scenarios: dict[str, Scenario]) -> Scenario:
    return scenarios[request.param]


def holder(serial: int) -> tuple[str, str]:
    return id_number(serial=serial), f"用户{serial}"


def csv_file(path: Path, rows: list[list[str]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["event_id", "type", "number", "occurred_at", "id_number", "name", "to_carrier"])
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _csv_history(work: Path) -> Path:
    alice, bob = holder(11), holder(12)
    return csv_file(
        work / "events.csv",
        [
            ["csv-1", "activated", "+8613800138001", "2018-01-10T10:00:00+08:00", *alice, ""],
            ["csv-2", "cancelled", "+8613800138001", "2021-05-01T10:00:00+08:00", "", "", ""],
            ["csv-3", "activated", "13800138001", "2021-08-15T10:00:00+08:00", *bob, ""],
        ],
    )


def _ndjson_history(work: Path) -> Path:
    idn, name = holder(21)
    events = [
        {
            "event_id": "nd-1",
            "type": "activated",
            "number": "+8613900139002",
            "occurred_at": "2019-03-01T10:00:00+08:00",
            "holder": {"id_number": idn, "name": name},
        },
        {
            "event_id": "nd-2",
            "type": "suspended",
            "number": "+8613900139002",
            "occurred_at": "2020-03-01T10:00:00+08:00",
        },
    ]
    path = work / "events.ndjson"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


BAD_HOLDER = holder(31)


def _bad_rows(work: Path) -> Path:
    path = csv_file(
        work / "bad.csv",
        [
            ["bad-1", "activated", "+8613700137003", "2019-01-01T10:00:00+08:00", *BAD_HOLDER, ""],
            ["bad-2", "activated", "+8612345678901", "2019-01-01T10:00:00+08:00", *BAD_HOLDER, ""],
            ["bad-3", "exploded", "+8613700137004", "2019-01-01T10:00:00+08:00", "", "", ""],
        ],
    )
    with path.open("a", encoding="utf-8") as f:
        f.write("bad-4,activated,+8613700137005\n")
    return path


def _counts(sc: Scenario, number: int) -> tuple[int, int]:
    events = sc.scalar(f"SELECT COUNT(*) FROM ledger_events WHERE number = {number}")
    tenures = sc.scalar(f"SELECT COUNT(*) FROM tenures WHERE number = {number}")
    return int(events), int(tenures)  # type: ignore[call-overload]


# ----- setting up ------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema(sc: Scenario) -> None:
    assert "database at head" in sc.outputs["upgrade"].stdout
    assert sc.scalar("SELECT COUNT(*) FROM carriers") == 2


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but was never upgraded."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'never-upgraded.db'}"
        return
    with fresh_pg_database(migrated=False) as url:
        yield url


def test_a_command_on_a_database_never_upgraded_says_to_upgrade_it(empty_db: str) -> None:
    proc = run_cli(empty_db, "carrier", "add", "CMCC", "--name", "China Mobile", check=False)
    assert proc.returncode == 2
    assert "no schema yet" in proc.stderr and "tongcha db upgrade" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    run_cli(empty_db, "db", "upgrade")  # and once upgraded, the same command works
    assert run_cli(empty_db, "carrier", "add", "CMCC", "--name", "China Mobile").stdout.strip()


def test_a_command_on_a_database_it_cannot_reach_says_so_without_the_password() -> None:
    proc = run_cli("postgresql://tongcha:s3cret-pw@127.0.0.1:1/tongcha", "platform", "list", check=False)
    assert proc.returncode == 2
    assert "cannot reach the database" in proc.stderr and "127.0.0.1" in proc.stderr
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout


def test_carrier_add_prints_the_credential_alone_on_the_last_line(sc: Scenario) -> None:
    last = sc.outputs["add CMCC"].stdout.rstrip("\n").splitlines()[-1]
    assert last == sc.secrets["CMCC"] and last.startswith("tc_") and " " not in last


def test_added_carrier_credential_works_as_bearer(sc: Scenario) -> None:
    with sc.client() as client:
        r = client.post("/carrier/v1/events", json=[], headers=bearer(sc.secrets["CMCC"]))
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 0


def test_carrier_revoke_stops_the_credential_working(sc: Scenario) -> None:
    assert sc.before_revoke == 200
    assert "revoked 1 credential" in sc.outputs["revoke"].stdout
    with sc.client() as client:
        r = client.post("/carrier/v1/events", json=[], headers=bearer(sc.secrets["CUCC"]))
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"


# ----- importing -------------------------------------------------------------------------


def test_csv_import_loads_events_into_tenures(sc: Scenario) -> None:
    assert "accepted 3, duplicates 0, rejected 0" in sc.outputs["import csv"].stdout
    assert sc.counts["after first import"] == (3, 2)


def test_rerunning_an_import_reports_duplicates_and_changes_nothing(sc: Scenario) -> None:
    assert "accepted 0, duplicates 3, rejected 0" in sc.outputs["import csv again"].stdout
    assert sc.counts["after second import"] == sc.counts["after first import"]


def test_ndjson_import_loads_events(sc: Scenario) -> None:
    assert "accepted 2, duplicates 0, rejected 0" in sc.outputs["import ndjson"].stdout
    # Asked for three jobs: PostgreSQL runs them; SQLite takes one writer at a time.
    assert ("3 jobs)" if sc.url.startswith("postgresql") else "1 job)") in sc.outputs["import ndjson"].stdout
    assert str(sc.scalar("SELECT open_since FROM ledger_numbers WHERE number = 13900139002")) == "2019-03-01"


def test_malformed_rows_are_reported_as_rejected(sc: Scenario) -> None:
    out = sc.outputs["import bad"].stdout
    assert "accepted 1, duplicates 0, rejected 3" in out
    assert "bad_type" in out and "malformed" in out
    assert f"every rejected event, with its reason: {sc.rejects}" in out
    written = [orjson.loads(line) for line in sc.rejects.read_text(encoding="utf-8").splitlines()]
    assert {r["event_id"] for r in written} == {"bad-2", "bad-3", "bad-4"}
    assert BAD_HOLDER[0] not in sc.rejects.read_text(encoding="utf-8")


def test_a_file_of_garbage_is_summed_up_without_keeping_a_reason_for_every_line(sc: Scenario) -> None:
    out = sc.outputs["import garbage"].stdout
    assert "accepted 0, duplicates 0, rejected 1,200" in out
    # A thousand reasons of a rule are kept (each names its line), and the rest counted.
    assert "rejected 1,200: malformed: line 1 is not JSON, and more than 999 other reasons like it" in out


def test_a_file_in_gb18030_is_refused_as_not_utf8_and_read_with_its_encoding_named(sc: Scenario) -> None:
    as_utf8 = sc.outputs["import gb18030 as utf-8"].stdout
    assert "accepted 0, duplicates 0, rejected 1" in as_utf8
    assert "not UTF-8" in as_utf8 and "--encoding gb18030" in as_utf8
    assert "accepted 1, duplicates 0, rejected 0" in sc.outputs["import gb18030"].stdout
    # The name read from GB18030 is the name the UTF-8 file gave: the same holder.
    first = "SELECT holder_digest FROM tenures WHERE number = 13800138001 AND started_on = '2018-01-10'"
    digest = sc.scalar("SELECT holder_digest FROM tenures WHERE number = 13700137001")
    assert digest is not None and digest == sc.scalar(first)
    unknown = sc.outputs["import unknown encoding"]
    assert unknown.returncode == 2 and "unknown encoding: klingon" in unknown.stderr


def test_import_for_an_unknown_carrier_fails_with_a_clear_message(sc: Scenario) -> None:
    proc = sc.outputs["import unknown carrier"]
    assert proc.returncode != 0
    assert "no carrier with code 'NOPE'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ----- checking --------------------------------------------------------------------------


def test_ledger_check_writes_results_to_the_output_file(sc: Scenario) -> None:
    rows = list(csv.DictReader(io.StringIO(sc.check_out.read_text(encoding="utf-8"))))
    assert [(r["number"], r["since"], r["result"]) for r in rows] == [
        ("+8613800138001", "2019-06-01", "yes"),
        ("13800138001", "2022-01-01", "no"),
        ("+8615000150008", "2019-06-01", "no_data"),
        ("12", "2019-06-01", "invalid"),
    ]
    assert rows[0]["last_change_on"] == "2021-08-15"
    stderr = sc.outputs["check"].stderr
    assert "4 rows" in stderr and "invalid 1" in stderr


def test_ledger_check_records_every_valid_check(sc: Scenario) -> None:
    assert sc.scalar("SELECT COUNT(*) FROM reassignment_checks WHERE channel = 'batch'") == 3


@pytest.mark.parametrize("name", ["empty", "header-only"])
def test_ledger_check_of_an_empty_file_prints_the_header_of_an_empty_table(sc: Scenario, name: str) -> None:
    # An empty file was answered with nothing at all, not even the header line.
    out = sc.outputs[f"check {name}"]
    assert out.stdout == "number,since,result,last_change_on,error\n"
    assert "0 rows" in out.stderr


def test_an_import_the_database_refuses_stops_in_one_line_and_keeps_nothing_half_written(sc: Scenario) -> None:
    events = sc.work / "refused.ndjson"
    events.write_bytes(
        b"".join(
            orjson.dumps(
                ev("activated", f"+861370013{i:04d}", "2022-01-01", {"id_number": id_number(serial=i), "name": "王芳"})
            )
            + b"\n"
            for i in range(40)
        )
    )
    engine = make_engine(sc.url)
    try:
        counts = "SELECT (SELECT COUNT(*) FROM ledger_events) || ' ' || (SELECT COUNT(*) FROM tenures)"
        before = sc.scalar(counts)
        with refusing_rows(engine, "ledger_events"):
            proc = run_cli(sc.url, "ledger", "import", str(events), "--carrier", "CMCC", "--jobs", "2", check=False)
        assert sc.scalar(counts) == before
    finally:
        engine.dispose()
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    said = " ".join(proc.stderr.split())  # as wrapped to the terminal's width
    assert said.count("the import stopped") == 1
    assert re.search(r"the import stopped: \w+: the ledger_events table refuses rows;", said)
    assert "what was committed is kept, and running it again goes on" in said


def test_ctrl_c_stops_every_job_of_an_import_and_says_what_its_commits_kept(tmp_path: Path) -> None:
    events = tmp_path / "ledger.ndjson"
    with events.open("wb") as out:
        for event in generate(SynthConfig(numbers=1_000, carriers=("CMCC",), seed=5)):
            event.pop("carrier")
            out.write(orjson.dumps(event) + b"\n")
    total = sum(1 for _ in events.open("rb"))
    with fresh_pg_database() as url:
        run_cli(url, "carrier", "add", "CMCC", "--name", "China Mobile")
        engine = make_engine(url)
        env = {**os.environ, "TONGCHA_DATABASE_URL": url, "TONGCHA_ENV": "dev", "COLUMNS": "200"}
        env |= {"TONGCHA_INGEST_CHUNK_SIZE": "50", "TONGCHA_IMPORT_COMMIT_EVENTS": "100"}

        def scalar(sql: str) -> int:
            with engine.connect() as conn:
                return int(conn.execute(text(sql)).scalar_one())

        try:
            command = [TONGCHA, "ledger", "import", str(events), "--carrier", "CMCC", "--jobs", "2"]
            # A session of its own, as a terminal's foreground group: Ctrl+C reaches every job.
            proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
            try:
                until(lambda: scalar("SELECT COUNT(*) FROM ledger_revisions") > 0)
                # The ledger is held from here: the import stops at its next commit, mid-file.
                with engine.connect() as holder, holder.begin():
                    wait_for_ledger_writers(holder)
                    # Both jobs wait at their next commit: each has reported the ones before.
                    until(lambda: waiting_for_the_ledger(engine) == 2)
                    os.killpg(proc.pid, signal.SIGINT)
                    _, stderr = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
            assert proc.returncode == 130
            assert "Traceback" not in stderr
            said = " ".join(stderr.split())
            assert "the import was interrupted; running it again goes on" in said
            told = re.search(
                r"committed before it stopped, and kept: accepted ([\d,]+), duplicates 0, rejected (\d+)", said
            )
            assert told is not None, said
            kept = scalar("SELECT COUNT(*) FROM ledger_events")
            assert 0 < kept < total
            assert int(told.group(1).replace(",", "")) == kept == scalar("SELECT SUM(accepted) FROM ledger_revisions")
            with pytest.raises(ProcessLookupError):  # no job is left running
                os.killpg(proc.pid, 0)
            again = run_cli(url, "ledger", "import", str(events), "--carrier", "CMCC", "--jobs", "2")
            assert f"duplicates {kept:,}," in again.stdout
            assert scalar("SELECT COUNT(*) FROM ledger_revisions WHERE accepted > 0") > 1
        finally:
            engine.dispose()


def test_ledger_check_whose_rows_cannot_be_logged_fails_and_says_so(sc: Scenario) -> None:
    asks = sc.work / "refused.csv"
    asks.write_text("number,since\n+8613800138001,2019-06-01\n", encoding="utf-8")
    engine = make_engine(sc.url)
    try:
        with refusing_rows(engine):
            proc = run_cli(sc.url, "ledger", "check", str(asks), check=False)
    finally:
        engine.dispose()
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "could not be written to the check log" in last and "do not rely on them" in last
