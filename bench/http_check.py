"""Single reassignment checks over HTTP at a fixed open-loop rate.

Sets up a fresh database (SQLite file by default, or a fresh PostgreSQL database with
--pg), imports a generated ledger with ``tongcha ledger import``, adds a platform with
``tongcha platform add``, starts ``tongcha serve`` in a subprocess, and drives
``GET /platform/v1/reassignments/{number}?since=`` from a SEPARATE load-generator process
(this script re-run with --loadgen): an asyncio raw-socket HTTP/1.1 client over
keep-alive loopback connections that sends on a fixed schedule (open loop) and measures
each latency from the request's intended send time, so a stalled server shows up as
latency rather than as a lower send rate.

    .venv/bin/python bench/http_check.py [--rate 3000] [--seconds 10] [--numbers 100000] [--pg] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parent.parent
TONGCHA = str(ROOT / ".venv" / "bin" / "tongcha")


# ----- the load generator (runs in its own process) -----------------------------------


async def _conn_worker(
    host: str,
    port: int,
    queue: asyncio.Queue[tuple[float, bytes] | None],
    lat: list[float],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    while True:
        item = await queue.get()
        if item is None:
            writer.close()
            return
        intended, request = item
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            lat.append(time.perf_counter() - intended)
            if status != 200:
                errors.append(f"HTTP {status}")
        except Exception as exc:
            errors.append(type(exc).__name__)
            lat.append(time.perf_counter() - intended)
            reader, writer = await asyncio.open_connection(host, port)


async def _loadgen(args: argparse.Namespace) -> dict[str, object]:
    numbers = json.loads(Path(args.numbers_file).read_text())
    rng = random.Random(5)
    total = int(args.rate * args.seconds)
    requests = []
    for _ in range(total):
        n = rng.choice(numbers)
        since = f"20{rng.randrange(8, 26):02d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        requests.append(
            (
                f"GET /platform/v1/reassignments/%2B86{n}?since={since} HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nAuthorization: Bearer {args.secret}\r\n\r\n"
            ).encode()
        )
    lat: list[float] = []
    errors: list[str] = []
    # One queue per connection, filled round-robin: each connection is a keep-alive
    # HTTP/1.1 pipe; requests wait in it when the server is slow (counted as latency).
    queues: list[asyncio.Queue[tuple[float, bytes] | None]] = [asyncio.Queue() for _ in range(args.connections)]
    workers = [asyncio.create_task(_conn_worker(args.host, args.port, q, lat, errors)) for q in queues]
    await asyncio.sleep(0.2)
    interval = 1.0 / args.rate
    start = time.perf_counter() + 0.05
    for i, req in enumerate(requests):
        intended = start + i * interval
        delay = intended - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        queues[i % len(queues)].put_nowait((intended, req))
        if i % 64 == 0:
            await asyncio.sleep(0)
    sent_done = time.perf_counter()
    for q in queues:
        q.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), timeout=60)
    end = time.perf_counter()
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "requests": total,
        "completed": len(lat),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "send_s": sent_done - start,
        "achieved_rps": len(lat) / (end - start),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": lat[-1] * 1000 if lat else float("nan"),
    }


# ----- the driver -------------------------------------------------------------------------


def _run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=3000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--numbers", type=int, default=100_000, help="numbers in the generated ledger")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL instead of a SQLite file")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--workers", type=int, default=1, help="hub processes (tongcha serve --workers)")
    ap.add_argument("--no-fast-path", action="store_true", help="answer through the FastAPI route only")
    ap.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--secret", help=argparse.SUPPRESS)
    ap.add_argument("--numbers-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loadgen:
        print(json.dumps(asyncio.run(_loadgen(args))))
        return
    if args.quick:
        args.numbers, args.seconds, args.runs = 20_000, 4, 2

    import orjson

    from _common import drop_db, fresh_db, machine, median, table
    from tongcha.sim.ledger import SynthConfig, by_carrier, generate

    print(machine())
    tmp = Path(tempfile.mkdtemp(prefix="tongcha_bench_http_"))
    url = fresh_db("http") if args.pg else f"sqlite:///{tmp}/hub.db"
    env = {**os.environ, "TONGCHA_DATABASE_URL": url, "TONGCHA_ENV": "dev"}
    if args.no_fast_path:
        env["TONGCHA_CHECK_FAST_PATH"] = "false"
    server = None
    try:
        _run([TONGCHA, "db", "upgrade"], env)
        events = by_carrier(generate(SynthConfig(numbers=args.numbers, today=__import__("datetime").date(2026, 11, 1))))
        numbers = sorted({int(str(e["number"])[3:]) for evs in events.values() for e in evs})
        for code in events:
            _run([TONGCHA, "carrier", "add", code, "--name", code], env)
        for code, evs in events.items():
            path = tmp / f"{code}.ndjson"
            path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs))
            print(_run([TONGCHA, "ledger", "import", str(path), "--carrier", code], env).strip())
        secret = _run([TONGCHA, "platform", "add", "BENCH", "--name", "BENCH"], env).strip().splitlines()[-1]
        numbers_file = tmp / "numbers.json"
        # A tenth of the asks are for numbers the ledger has never seen.
        rng = random.Random(1)
        asked = numbers + [13000000000 + rng.randrange(100_000_000) for _ in range(len(numbers) // 9)]
        numbers_file.write_text(json.dumps(asked))
        server = subprocess.Popen(
            [TONGCHA, "serve", "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "serve.log", "w"),  # noqa: SIM115 - lives as long as the server
        )
        deadline = time.time() + 30
        import urllib.request

        while True:
            try:
                req = urllib.request.Request(
                    f"http://{args.host}:{args.port}/platform/v1/reassignments/%2B86{numbers[0]}?since=2020-01-01",
                    headers={"Authorization": f"Bearer {secret}"},
                )
                with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310 - loopback http only
                    print("warm-up answer:", resp.read().decode()[:200])
                break
            except Exception:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("server did not start: " + (tmp / "serve.log").read_text()[-2000:]) from None
                time.sleep(0.3)
        results = []
        for _ in range(args.runs):
            out = _run(
                [
                    sys.executable,
                    __file__,
                    "--loadgen",
                    "--rate",
                    str(args.rate),
                    "--seconds",
                    str(args.seconds),
                    "--connections",
                    str(args.connections),
                    "--host",
                    args.host,
                    "--port",
                    str(args.port),
                    "--secret",
                    secret,
                    "--numbers-file",
                    str(numbers_file),
                ],
                env,
            )
            results.append(json.loads(out.strip().splitlines()[-1]))
            time.sleep(1)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        if args.pg:
            drop_db(url)
    rows: list[tuple[object, ...]] = [
        (
            i + 1,
            f"{r['requests']:,}",
            f"{r['achieved_rps']:,.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p90_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['max_ms']:.1f}",
            f"{r['errors']} {' '.join(r['error_kinds'])}".strip(),
        )
        for i, r in enumerate(results)
    ]
    rows.append(
        (
            "median",
            "",
            f"{median([r['achieved_rps'] for r in results]):,.0f}",
            f"{median([r['p50_ms'] for r in results]):.2f}",
            f"{median([r['p90_ms'] for r in results]):.2f}",
            f"{median([r['p99_ms'] for r in results]):.2f}",
            f"{median([r['max_ms'] for r in results]):.1f}",
            "",
        )
    )
    db = "PostgreSQL" if args.pg else "SQLite"
    print(
        f"\n{db}, {len(numbers):,} numbers, target {args.rate:,.0f} req/s for {args.seconds:g} s, "
        f"{args.connections} keep-alive connections\n"
    )
    print(table(("run", "requests", "achieved req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"), rows))
    p99 = median([r["p99_ms"] for r in results])
    print(f"\ngoal p99 <= 10 ms at {args.rate:,.0f} req/s: {'met' if p99 <= 10 else 'MISSED'}")


if __name__ == "__main__":
    main()
