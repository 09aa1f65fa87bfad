"""Batch reassignment checks end to end (CSV in, CSV out) with ``BatchChecker`` over an
in-memory index, beside the same question asked of PostgreSQL as one set-based query.

The index is built directly from NumPy arrays: N sorted unique mobile numbers from the
prefixes 130-139, 150-159 and 180-189 with first known / open since / last change days.
PostgreSQL gets the same summary (number primary key) by COPY; its timed part is COPY of
the query rows into a temp table, one LEFT JOIN computing yes/no/no_data, and COPY out.

    .venv/bin/python bench/batch_check.py [--numbers 100000000] [--pg-numbers 10000000]
        [--queries 1000000] [--runs 5] [--quick]

Loading 100M rows into PostgreSQL takes many minutes, so PostgreSQL runs at --pg-numbers
(default 10M); the batch path is timed at both --numbers and --pg-numbers, so the ratio
is at equal N.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).parent))
from _common import drop_db, fresh_db, machine, median, table
from tongcha.kit.phone import mobile_prefix_table
from tongcha.ledger.batch import BatchChecker
from tongcha.ledger.index import EPOCH, LedgerIndex, Snapshot

TODAY = date(2026, 11, 23)
TODAY_DAY = (TODAY - EPOCH).days
START_DAY = (date(2008, 1, 1) - EPOCH).days
_ALL = [*range(130, 140), *range(150, 160), *range(180, 190)]
# Only the three-digit prefixes that are wholly mobile (154 is not).
PREFIXES = np.array([p for p in _ALL if mobile_prefix_table()[p * 1000 : (p + 1) * 1000].all()], dtype=np.int64)


def make_ledger(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique numbers and their (first, open_since, last) day counts."""
    rng = np.random.default_rng(seed)
    per = -(-n // len(PREFIXES))
    parts = []
    for p in PREFIXES:
        suffix = np.unique(rng.integers(0, 100_000_000, int(per * 1.08), dtype=np.int64))
        while len(suffix) < per:
            suffix = np.unique(np.concatenate([suffix, rng.integers(0, 100_000_000, per, dtype=np.int64)]))
        keep = np.sort(rng.choice(len(suffix), per, replace=False))
        parts.append(p * 100_000_000 + suffix[keep])
    numbers = (
        np.concatenate(parts)[:n]
        if per * len(PREFIXES) == n
        else np.sort(rng.choice(np.concatenate(parts), n, replace=False))
    )
    span = TODAY_DAY - START_DAY
    first = (START_DAY + (rng.random(n) ** 1.5 * span)).astype(np.int64)
    # Two in three numbers are held now by someone whose tenure began on or after first.
    open_since = first + (rng.random(n) * (TODAY_DAY - first)).astype(np.int64) * (rng.random(n) < 0.5)
    held = rng.random(n) < 0.67
    last = np.where(held, open_since, first + (rng.random(n) * (TODAY_DAY - first)).astype(np.int64))
    open_since = np.where(held, open_since, 0)
    return numbers, first.astype(np.uint16), open_since.astype(np.uint16), last.astype(np.uint16)


def make_queries(numbers: np.ndarray, q: int, seed: int) -> bytes:
    """``number,since`` CSV with a header: 80% numbers in the ledger, 20% random others."""
    rng = np.random.default_rng(seed)
    pick = numbers[rng.integers(0, len(numbers), q)]
    other = PREFIXES[rng.integers(0, len(PREFIXES), q)] * 100_000_000 + rng.integers(0, 100_000_000, q)
    nums = np.where(rng.random(q) < 0.8, pick, other)
    since = rng.integers((date(2005, 1, 1) - EPOCH).days, TODAY_DAY + 1, q).astype(np.int32)
    t = pa.table({"number": pa.array(nums), "since": pa.array(since).cast(pa.date32())})
    sink = io.BytesIO()
    pacsv.write_csv(t, sink, write_options=pacsv.WriteOptions(include_header=True, quoting_style="none"))
    return sink.getvalue()


def run_batch(index: LedgerIndex, data: bytes) -> tuple[float, bytes, dict[str, int]]:
    started = time.perf_counter()
    checker = BatchChecker(index, TODAY, "csv")
    out = b"".join(checker.run(iter([data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)])))
    elapsed = time.perf_counter() - started
    return elapsed, out, dict(checker.stats.counts)


PG_QUERY = """COPY (
  SELECT q.number, q.since,
         CASE WHEN s.first_known_on IS NULL OR q.since < s.first_known_on THEN 'no_data'
              WHEN s.open_since IS NOT NULL AND s.open_since <= q.since THEN 'no'
              ELSE 'yes' END,
         CASE WHEN s.first_known_on IS NULL OR q.since < s.first_known_on THEN NULL
              ELSE s.last_change_on END
  FROM q LEFT JOIN summary s ON s.number = q.number
) TO STDOUT (FORMAT csv)"""


def pg_load(url: str, ledger: tuple[np.ndarray, ...]) -> float:
    numbers, first, open_since, last = ledger
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE summary (number bigint PRIMARY KEY, first_known_on date NOT NULL, "
            "open_since date, last_change_on date NOT NULL)"
        )
        step = 2_000_000
        with conn.cursor() as cur, cur.copy("COPY summary FROM STDIN (FORMAT csv)") as copy:
            for i in range(0, len(numbers), step):
                sl = slice(i, i + step)
                o = open_since[sl].astype(np.int32)
                t = pa.table(
                    {
                        "n": pa.array(numbers[sl]),
                        "f": pa.array(first[sl].astype(np.int32)).cast(pa.date32()),
                        "o": pa.array(o, mask=o == 0).cast(pa.date32()),
                        "l": pa.array(last[sl].astype(np.int32)).cast(pa.date32()),
                    }
                )
                sink = io.BytesIO()
                pacsv.write_csv(t, sink, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
                copy.write(sink.getvalue())
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE summary")
    return time.perf_counter() - started


def run_pg(url: str, data: bytes) -> tuple[float, bytes, dict[str, int]]:
    body = data.split(b"\n", 1)[1]
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        conn.execute("CREATE TEMP TABLE q (number bigint, since date) ON COMMIT DROP")
        with conn.cursor() as cur:
            with cur.copy("COPY q FROM STDIN (FORMAT csv)") as copy:
                copy.write(body)
            cur.execute("ANALYZE q")
            out = bytearray()
            with cur.copy(PG_QUERY) as copy:
                for block in copy:
                    out += block
        elapsed = time.perf_counter() - started
        conn.rollback()
    counts = {k: out.count(f",{k},".encode()) + out.count(f",{k}\n".encode()) for k in ("yes", "no", "no_data")}
    return elapsed, bytes(out), counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--numbers", type=int, default=100_000_000, help="numbers in the batch index")
    ap.add_argument("--pg-numbers", type=int, default=10_000_000, help="numbers in PostgreSQL (and a 2nd index)")
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="10M index, 1M PostgreSQL rows, 200k queries")
    args = ap.parse_args()
    if args.quick:
        args.numbers, args.pg_numbers, args.queries, args.runs = 10_000_000, 1_000_000, 200_000, 3
    print(machine())
    rows = []

    def bench_index(n: int) -> tuple[tuple[np.ndarray, ...], bytes, float, dict[str, int]]:
        t0 = time.perf_counter()
        ledger = make_ledger(n, seed=n % 1000 + 1)
        t1 = time.perf_counter()
        snap = Snapshot.build(*ledger)
        t2 = time.perf_counter()
        index = LedgerIndex(snap, 1)
        data = make_queries(ledger[0], args.queries, seed=3)
        times = []
        counts: dict[str, int] = {}
        for _ in range(args.runs):
            s, _out, counts = run_batch(index, data)
            times.append(s)
        print(
            f"index N={n:,}: generate {t1 - t0:.1f}s, Snapshot.build {t2 - t1:.1f}s, "
            f"{snap.nbytes / n:.2f} bytes/number ({snap.nbytes / 2**20:,.0f} MiB), "
            f"batch runs {', '.join(f'{t:.3f}' for t in times)} s; counts {counts}"
        )
        rows.append(
            (
                "BatchChecker (in-memory index)",
                f"{n:,}",
                f"{args.queries:,}",
                f"{median(times):.3f}",
                f"{args.queries / median(times):,.0f}",
                f"{snap.nbytes / n:.2f}",
            )
        )
        return ledger, data, median(times), counts

    if args.numbers != args.pg_numbers:
        bench_index(args.numbers)
    ledger, data, batch_s, batch_counts = bench_index(args.pg_numbers)
    url = fresh_db("batch")
    try:
        load_s = pg_load(url, ledger)
        print(f"PostgreSQL N={args.pg_numbers:,}: COPY + primary key + VACUUM ANALYZE {load_s:.1f}s")
        times = []
        pg_counts: dict[str, int] = {}
        for _ in range(args.runs):
            s, _out, pg_counts = run_pg(url, data)
            times.append(s)
        print(f"PostgreSQL runs {', '.join(f'{t:.3f}' for t in times)} s; counts {pg_counts}")
        print("answers agree:", pg_counts == batch_counts)
        rows.append(
            (
                "PostgreSQL COPY in + JOIN + COPY out",
                f"{args.pg_numbers:,}",
                f"{args.queries:,}",
                f"{median(times):.3f}",
                f"{args.queries / median(times):,.0f}",
                "",
            )
        )
        pg_s = median(times)
    finally:
        drop_db(url)
    print()
    print(table(("path", "numbers N", "query rows", "median s", "rows/s", "bytes/number"), rows))
    print(f"\nPostgreSQL / BatchChecker at N={args.pg_numbers:,}: {pg_s / batch_s:.1f}x")


if __name__ == "__main__":
    main()
