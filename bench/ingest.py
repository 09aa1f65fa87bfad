"""Ingest throughput into PostgreSQL through the bulk path, beside a raw COPY baseline.

Each run: a fresh, migrated database with one carrier; ``importer.import_file`` streams an
NDJSON file (a CSV file with ``--format csv``) made by the synthetic generator (one carrier,
so no cross-carrier ordering).
In the same run the accepted event rows (the ledger_events columns) are COPYed into a bare
table with no indexes or constraints, from Python tuples through psycopg ``write_row``:
the rate the bulk path is measured against. Then the rows the ingest left in its three
tables (events, tenures, number summaries) are COPYed the same way into empty copies of
those tables with all their indexes: what the writes alone cost, with no parsing,
checking or replay, which bounds how close to the bare COPY an ingest can come.

Each run imports the file once with each ``--jobs`` count (one job, then as many as the
machine has cores, by default), into databases of their own, one after the other.

    .venv/bin/python bench/ingest.py [--numbers 120000] [--runs 3] [--jobs 1,2] [--format csv] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import os
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from _common import drop_db, fresh_db, machine, median, table
from tongcha.kit.clock import FixedClock
from tongcha.kit.db import make_engine, make_sessionmaker
from tongcha.kit.migrate import upgrade
from tongcha.kit.settings import Settings
from tongcha.ledger.importer import import_file
from tongcha.ledger.parse import CSV_COLUMNS
from tongcha.ledger.repository import EVENT_INSERT_COLUMNS
from tongcha.parties import add_carrier
from tongcha.sim.ledger import SynthConfig, generate

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
COLUMNS = EVENT_INSERT_COLUMNS
BARE = """CREATE TABLE bare_events (
    carrier_id bigint, event_id varchar(128), type varchar(16), number bigint,
    occurred_at timestamptz, day date, holder_digest varchar(64), kyc_digest varchar(64),
    tail_digest varchar(64), to_carrier_id bigint, revision bigint, position bigint)"""


def make_file(numbers: int, path: Path) -> int:
    """The synthetic ledger's events as NDJSON, or as CSV when ``path`` ends in .csv."""
    if path.exists():
        return sum(1 for _ in path.open("rb")) - (path.suffix == ".csv")
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        rows = csv.writer(out) if path.suffix == ".csv" else None
        if rows is not None:
            rows.writerow(CSV_COLUMNS)
        for ev in generate(SynthConfig(numbers=numbers, carriers=("CMCC",), seed=11)):
            ev.pop("carrier")
            if rows is None:
                out.write(orjson.dumps(ev).decode() + "\n")
            else:
                holder: dict[str, str] = ev.get("holder") or {}  # type: ignore[assignment]
                rows.writerow(
                    [ev["event_id"], ev["type"], ev["number"], ev["occurred_at"], holder.get("id_number", ""),
                     holder.get("name", ""), ev.get("to_carrier", "")]
                )  # fmt: skip
            count += 1
    return count


LEDGER_TABLES = ("ledger_events", "tenures", "ledger_numbers")


def _copy_rows(
    conn: psycopg.Connection[tuple[object, ...]], table: str, columns: list[str], rows: list[tuple[object, ...]]
) -> float:
    started = time.perf_counter()
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.commit()
    return time.perf_counter() - started


def writes_alone(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    """COPY the ingest's rows into indexed, empty copies of its tables; seconds taken."""
    took = 0.0
    for name in LEDGER_TABLES:
        columns = [
            str(r[0])
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                (name,),
            )
        ]
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM {name}").fetchall()
        conn.execute(f"CREATE TABLE copy_{name} (LIKE {name} INCLUDING ALL)")
        conn.commit()
        took += _copy_rows(conn, f"copy_{name}", columns, rows)
    return took


def ready_for_import(url: str) -> Settings:
    """The database at ``url`` migrated, with the carrier CMCC; settings for importing into it."""
    upgrade(url)
    settings = Settings(env="dev", database_url=url)
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session, session.begin():
        add_carrier(session, "CMCC", "China Mobile", 90, NOW)
    engine.dispose()
    return settings


def one_run(path: Path, profile: bool, jobs: int = 1) -> tuple[float, int, float, float]:
    url = fresh_db("ingest")
    try:
        settings = ready_for_import(url)
        prof = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if prof:
            prof.enable()
        totals = import_file(settings, path, "CMCC", clock=FixedClock(NOW), jobs=jobs)
        if prof:
            prof.disable()
        ingest_s = time.perf_counter() - started
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        # The baseline: the same accepted rows, COPYed raw into a bare table.
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM ledger_events ORDER BY revision, position"
            ).fetchall()
            conn.execute(BARE)
            conn.commit()
            copy_s = _copy_rows(conn, "bare_events", list(COLUMNS), rows)
            tables_s = writes_alone(conn)
        assert len(rows) == totals.accepted, (len(rows), totals.accepted)
        return ingest_s, totals.events, copy_s, tables_s
    finally:
        drop_db(url)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--numbers", type=int, default=60_000, help="numbers in the generated ledger (about 4.9 events each)"
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--jobs", default=f"1,{os.cpu_count() or 1}", help="job counts to compare, comma-separated (default: 1,cores)"
    )
    ap.add_argument("--format", choices=("ndjson", "csv"), default="ndjson", help="the file's format")
    ap.add_argument("--quick", action="store_true", help="small and fast (about 30 s)")
    ap.add_argument("--profile", action="store_true", help="cProfile one ingest run, with one job")
    args = ap.parse_args()
    if args.quick:
        args.numbers, args.runs = 15_000, 2
    job_counts = [int(j) for j in args.jobs.split(",")]
    path = Path(f"/tmp/tongcha_bench_ingest_{args.numbers}.{args.format}")
    events = make_file(args.numbers, path)
    print(f"{machine()}\nfile {path}: {events:,} events, {path.stat().st_size / 1e6:.0f} MB\n")
    if args.profile:
        one_run(path, True)
        return
    results: dict[int, list[tuple[float, int, float, float]]] = {jobs: [] for jobs in job_counts}
    for _ in range(args.runs):
        for jobs in job_counts:  # alternating, so a slow minute of the machine falls on both
            results[jobs].append(one_run(path, False, jobs))
    rows: list[tuple[object, ...]] = []
    summary: dict[int, tuple[float, float]] = {}
    for jobs, runs in results.items():
        for i, (s, n, c, w) in enumerate(runs):
            rows.append(
                (
                    i + 1,
                    jobs,
                    f"{n:,}",
                    f"{s:.2f}",
                    f"{n / s:,.0f}",
                    f"{c:.2f}",
                    f"{n / c:,.0f}",
                    f"{c / s:.2f}",
                    f"{w:.2f}",
                    f"{c / w:.2f}",
                )
            )
        rate = median([n / s for s, n, _, _ in runs])
        ratio = median([c / s for s, _, c, _ in runs])
        summary[jobs] = (rate, ratio)
        rows.append(
            (
                "median",
                jobs,
                "",
                "",
                f"**{rate:,.0f}**",
                "",
                f"{median([n / c for _, n, c, _ in runs]):,.0f}",
                f"**{ratio:.2f}**",
                "",
                f"{median([c / w for _, _, c, w in runs]):.2f}",
            )
        )
    print(
        table(
            (
                "run",
                "jobs",
                "events",
                "ingest s",
                "ingest events/s",
                "raw COPY s",
                "raw COPY rows/s",
                "ingest/COPY",
                "writes alone s",
                "COPY/writes alone",
            ),
            rows,
        )
    )
    print(
        "\n'writes alone': the ingest's rows COPYed into indexed copies of its three tables by one connection, "
        "no parsing or replay; 'COPY/writes alone' is the most a one-job ingest/COPY could be with these tables."
    )
    best = max(summary, key=lambda j: summary[j][0])
    rate, ratio = summary[best]
    print(
        f"\nbest: {best} {'job' if best == 1 else 'jobs'}, {rate:,.0f} events/s; "
        f"goal >= 100,000 events/s: {'met' if rate >= 100_000 else 'MISSED'}; "
        f"goal >= 0.5 of COPY: {'met' if ratio >= 0.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
