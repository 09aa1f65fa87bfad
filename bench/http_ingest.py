"""Carrier events over HTTP: `POST /carrier/v1/events` at several batch sizes, beside the
bulk import of the same events in the same run.

Each run, for each batch size in turn: a fresh, migrated PostgreSQL database (a SQLite
file with --sqlite) with one carrier, ``tongcha serve`` in a process of its own, and
this script as the carrier, posting the first ``--events`` events of the synthetic
ledger (the file of ``bench/ingest.py``) as NDJSON, one batch after another over one
keep-alive connection, as a carrier's feed would. Then the same events through
``importer.import_file`` with one job, into a database of their own: the bulk path
the API is measured against.

    .venv/bin/python bench/http_ingest.py [--events 100000] [--batches 100,1000,10000] [--runs 2] [--sqlite] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _common import drop_db, fresh_db, machine, median, table
from ingest import NOW, make_file, ready_for_import
from tongcha.kit.clock import FixedClock
from tongcha.ledger.importer import import_file

ROOT = Path(__file__).resolve().parent.parent
TONGCHA = str(ROOT / ".venv" / "bin" / "tongcha")


def _database(sqlite: bool, tmp: Path, name: str) -> str:
    return f"sqlite:///{tmp / name}.db" if sqlite else fresh_db("http_ingest")


def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        drop_db(url)


def over_http(url: str, lines: list[bytes], batch: int, port: int, tmp: Path) -> tuple[float, list[float], int]:
    """Post ``lines`` in batches to a hub of their own; seconds, each post's ms, events answered."""
    env = {**os.environ, "TONGCHA_DATABASE_URL": url, "TONGCHA_ENV": "dev"}
    subprocess.run([TONGCHA, "db", "upgrade"], env=env, check=True, capture_output=True)
    added = subprocess.run(
        [TONGCHA, "carrier", "add", "CMCC", "--name", "China Mobile"], env=env, check=True, capture_output=True
    )
    secret = added.stdout.decode().strip().splitlines()[-1]
    log = (tmp / "serve.log").open("w")
    server = subprocess.Popen(
        [TONGCHA, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/x-ndjson"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/healthz").raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError(
                            "the hub did not start: " + (tmp / "serve.log").read_text()[-2000:]
                        ) from None
                    time.sleep(0.2)
            bodies = [b"".join(lines[i : i + batch]) for i in range(0, len(lines), batch)]
            took: list[float] = []
            answered = 0
            started = time.perf_counter()
            for body in bodies:
                sent = time.perf_counter()
                r = client.post("/carrier/v1/events", content=body)
                took.append((time.perf_counter() - sent) * 1000)
                r.raise_for_status()
                out = r.json()
                answered += out["accepted"] + out["duplicates"] + len(out["rejected"])
            return time.perf_counter() - started, took, answered
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def in_bulk(url: str, path: Path) -> float:
    settings = ready_for_import(url)
    started = time.perf_counter()
    import_file(settings, path, "CMCC", clock=FixedClock(NOW), jobs=1)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000, help="how many of the file's events to send")
    ap.add_argument("--batches", default="100,1000,10000", help="events per POST, comma-separated")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--quick", action="store_true", help="small and fast (about 30 s)")
    args = ap.parse_args()
    if args.quick:
        args.events, args.runs, args.batches = 20_000, 1, "100,1000"
    sizes = [int(b) for b in args.batches.split(",")]
    source = Path("/tmp/tongcha_bench_ingest_60000.ndjson")
    make_file(60_000, source)
    with source.open("rb") as f:
        lines = [line for _, line in zip(range(args.events), f, strict=False)]
    tmp = Path(tempfile.mkdtemp(prefix="tongcha_bench_http_ingest_"))
    sample = tmp / "events.ndjson"
    sample.write_bytes(b"".join(lines))
    store = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{machine()}\n{store}; {len(lines):,} events of {source.name}\n")

    http: dict[int, list[tuple[float, list[float]]]] = {size: [] for size in sizes}
    bulk: list[float] = []
    for run in range(args.runs):
        for size in sizes:  # alternating, so a slow minute of the machine falls on all of them
            url = _database(args.sqlite, tmp, f"http-{run}-{size}")
            try:
                seconds, took, answered = over_http(url, lines, size, args.port, tmp)
            finally:
                _drop(url)
            assert answered == len(lines), (answered, len(lines))
            http[size].append((seconds, took))
        url = _database(args.sqlite, tmp, f"bulk-{run}")
        try:
            bulk.append(in_bulk(url, sample))
        finally:
            _drop(url)

    bulk_rate = median([len(lines) / s for s in bulk])
    rows: list[tuple[object, ...]] = []
    for size, runs in http.items():
        rate = median([len(lines) / s for s, _ in runs])
        posts = sorted(ms for _, took in runs for ms in took)
        rows.append(
            (
                f"{size:,}",
                f"{len(runs[0][1]):,}",
                ", ".join(f"{s:.2f}" for s, _ in runs),
                f"**{rate:,.0f}**",
                f"{posts[len(posts) // 2]:.1f}",
                f"{posts[min(len(posts) - 1, int(len(posts) * 0.99))]:.1f}",
                f"{rate / bulk_rate:.2f}",
            )
        )
    rows.append(
        (
            "bulk import, 1 job",
            "",
            ", ".join(f"{s:.2f}" for s in bulk),
            f"**{bulk_rate:,.0f}**",
            "",
            "",
            "1.00",
        )
    )
    print(table(("events a POST", "POSTs", "runs (s)", "events/s", "POST p50 ms", "POST p99 ms", "of bulk"), rows))


if __name__ == "__main__":
    main()
