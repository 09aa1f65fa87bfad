"""Count fan-out to N simulated platforms, end to end, beside a bare httpx + gather script.

Sets up a fresh PostgreSQL database, starts ``tongcha serve`` in a subprocess, starts N
simulated platforms (built on our SDK, each answering after ``--latency-ms``) in another
subprocess, registers them through the operator API, and then measures, each from its
own load-generator process:

- the hub: ``POST /operator/v1/probes`` (a count inquiry: one durable request and one
  task per platform written to PostgreSQL, N signed calls, N answers checked and
  recorded), first closed-loop at ``--concurrency`` for the throughput, then open-loop
  at ``--rate`` for the latency (measured from each request's intended send time);
- the baseline: the same N signed calls per inquiry with bare ``httpx`` +
  ``asyncio.gather`` and nothing else (no database, no retries), same loads.

    .venv/bin/python bench/fanout.py [--platforms 20] [--latency-ms 50] [--rate 200] [--seconds 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import drop_db, fresh_db, machine, table

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
TONGCHA = str(ROOT / ".venv" / "bin" / "tongcha")


def _numbers(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    return [f"+86138{rng.randrange(10**8):08d}" for _ in range(n)]


# ----- the simulated platforms (their own process) -------------------------------------


def run_sims(args: argparse.Namespace) -> None:
    from tongcha.sim.accounts import synthetic_enterprises
    from tongcha.sim.ledger import SynthConfig
    from tongcha.sim.platforms import Knobs, PlatformFleet

    fleet = PlatformFleet(hub_url=args.hub_url, ledger=SynthConfig(numbers=2_000, seed=3))
    for entry in synthetic_enterprises(args.platforms):
        sim = fleet.add(entry, Knobs(latency_ms=args.latency_ms))
        print(json.dumps({"code": sim.code, "base_url": sim.base_url, "jwk": sim.public_jwk}), flush=True)
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    fleet.stop()


# ----- load generators (their own process) ---------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.incomplete = 0

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

        return {
            "done": len(lat),
            "rate": len(lat) / seconds,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "errors": len(self.errors),
            "first_error": self.errors[0] if self.errors else "",
            "incomplete": self.incomplete,
        }


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by these processes and their live children (Linux /proc)."""
    ticks = 0
    wanted = set(pids)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[1] is the parent's pid; [11] and [12] are user and system ticks.
        if int(entry) in wanted or int(fields[1]) in wanted:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def _drive(one: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Closed loop at --concurrency, then open loop at --rate; ``one(number)`` is an inquiry."""
    numbers = _numbers(50_000)
    results: dict[str, Any] = {}
    for _ in range(20):  # warm up connections and code paths
        await one(numbers[0])

    closed = Stats()
    watched = {name: int(pid) for name, pid in (w.split("=") for w in args.watch)}
    cpu_before = {name: _cpu_seconds([pid]) for name, pid in watched.items()}
    own_before = time.process_time()
    stop_at = time.perf_counter() + args.seconds

    async def loop(i: int) -> None:
        k = i
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                complete = await one(numbers[k % len(numbers)])
            except Exception as exc:
                closed.errors.append(repr(exc)[:200])
                continue
            closed.latencies.append(time.perf_counter() - started)
            closed.incomplete += 0 if complete else 1
            k += args.concurrency

    began = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(args.concurrency)))
    results["closed"] = closed.summary(time.perf_counter() - began)
    # CPU per inquiry of the closed loop: this process, and each process watched.
    done = max(1, len(closed.latencies))
    cpu = {name: _cpu_seconds([pid]) - cpu_before[name] for name, pid in watched.items()}
    cpu["load generator"] = time.process_time() - own_before
    results["cpu_ms"] = {name: 1000 * used / done for name, used in cpu.items()}

    opened = Stats()
    total = int(args.rate * args.seconds)
    began = time.perf_counter()

    async def at(i: int) -> None:
        intended = began + i / args.rate
        await asyncio.sleep(max(0.0, intended - time.perf_counter()))
        try:
            complete = await one(numbers[i % len(numbers)])
        except Exception as exc:
            opened.errors.append(repr(exc)[:200])
            return
        opened.latencies.append(time.perf_counter() - intended)
        opened.incomplete += 0 if complete else 1

    # A hub that cannot keep up would take forever to drain its backlog: what has not
    # finished by a grace period after the last send counts as not done.
    jobs = [asyncio.create_task(at(i)) for i in range(total)]
    _, late = await asyncio.wait(jobs, timeout=args.seconds + 5)
    for job in late:
        job.cancel()
    results["open"] = opened.summary(args.seconds)
    results["open"]["unfinished"] = len(late)
    return results


async def _hub_loadgen(args: argparse.Namespace) -> dict[str, Any]:
    # aiohttp: the load generator should spend as little of the machine as it can.
    import aiohttp

    headers = {"Authorization": f"Bearer {args.operator}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(args.hub_url, headers=headers, connector=connector) as client:

        async def one(number: str) -> bool:
            async with client.post("/operator/v1/probes", json={"number": number}) as r:
                text = await r.text()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {text[:120]}")
            body = json.loads(text)
            return bool(body["state"] == "completed" and all(t["state"] == "done" for t in body["tasks"]))

        return await _drive(one, args)


def _signer(args: argparse.Namespace) -> Any:
    """Signs like the hub (with the hub's own key), so the platforms accept the calls."""
    from tongcha.kit.clock import SystemClock
    from tongcha.kit.db import make_engine, make_sessionmaker
    from tongcha.kit.keys import Keyring
    from tongcha.kit.settings import Settings
    from tongcha.sdk import protocol

    settings = Settings(env="dev", database_url=args.db)
    key = Keyring(make_sessionmaker(make_engine(args.db)), settings, SystemClock()).signing_key()
    path = protocol.Operation.bindings_count.path

    def signed(code: str, number: str) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(
            {"task_id": f"b_{random.getrandbits(64):x}", "number": number, "bound_from": "2000-01-01T00:00:00+08:00"}
        ).encode()
        token = protocol.sign(key, issuer=protocol.HUB_ISSUER, audience=code, path=path, body=body)
        return body, {protocol.SIGNATURE_HEADER: token, "content-type": "application/json"}

    return signed, path


async def _baseline_loadgen(args: argparse.Namespace) -> dict[str, Any]:
    """The issue's baseline: the same signed calls with bare httpx + asyncio.gather."""
    import httpx

    signed, path = _signer(args)
    platforms = json.loads(args.platforms_json)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=512)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def call(platform: dict[str, str], number: str) -> bool:
            body, headers = signed(platform["code"], number)
            r = await client.post(platform["base_url"] + path, content=body, headers=headers)
            return r.status_code == 200

        async def one(number: str) -> bool:
            return all(await asyncio.gather(*(call(p, number) for p in platforms)))

        return await _drive(one, args)


async def _aiohttp_baseline_loadgen(args: argparse.Namespace) -> dict[str, Any]:
    """A stronger baseline: the same signed calls with bare aiohttp + asyncio.gather."""
    import aiohttp

    signed, path = _signer(args)
    platforms = json.loads(args.platforms_json)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

        async def call(platform: dict[str, str], number: str) -> bool:
            body, headers = signed(platform["code"], number)
            async with client.post(platform["base_url"] + path, data=body, headers=headers) as r:
                await r.read()
                return r.status == 200

        async def one(number: str) -> bool:
            return all(await asyncio.gather(*(call(p, number) for p in platforms)))

        return await _drive(one, args)


async def _dispatcher_loadgen(args: argparse.Namespace) -> dict[str, Any]:
    """The hub's own calls without the hub: its ``Dispatcher`` (signing, per-platform
    limits, circuit breakers, answer checks) making the same calls, with no database and
    no HTTP in front; the difference to the hub is what the durable request costs."""
    from datetime import UTC, datetime, timedelta

    from tongcha.kit.clock import SystemClock
    from tongcha.kit.db import make_engine, make_sessionmaker
    from tongcha.kit.keys import Keyring
    from tongcha.kit.settings import Settings
    from tongcha.platforms.dispatch import Dispatcher
    from tongcha.platforms.fanout import TaskCall
    from tongcha.sdk.protocol import Operation

    settings = Settings(env="dev", database_url=args.db)
    clock = SystemClock()
    dispatcher = Dispatcher(Keyring(make_sessionmaker(make_engine(args.db)), settings, clock), clock)
    platforms = json.loads(args.platforms_json)
    give_up_at = datetime.now(UTC) + timedelta(days=2)

    async def one(number: str) -> bool:
        calls = [
            TaskCall(
                task_id=f"d_{random.getrandbits(64):x}",
                request_pk=0,
                platform_id=i,
                platform_code=p["code"],
                platform_name=p["code"],
                base_url=p["base_url"],
                operation=Operation.bindings_count,
                body=json.dumps(
                    {
                        "task_id": f"d_{random.getrandbits(64):x}",
                        "number": number,
                        "bound_from": "2000-01-01T00:00:00+08:00",
                    }
                ).encode(),
                timeout_s=1.5,
                max_concurrency=1_000,
                attempt=1,
                give_up_at=give_up_at,
            )
            for i, p in enumerate(platforms)
        ]
        outcomes = await dispatcher.call_all(calls, timeout_s=1.5)
        return all(o.kind == "answered" for o in outcomes)

    try:
        return await _drive(one, args)
    finally:
        await dispatcher.aclose()


def run_loadgen(args: argparse.Namespace) -> None:
    go = {
        "hub": _hub_loadgen,
        "baseline": _baseline_loadgen,
        "aiohttp": _aiohttp_baseline_loadgen,
        "dispatcher": _dispatcher_loadgen,
    }[args.loadgen]
    print(json.dumps(asyncio.run(go(args))), flush=True)


# ----- the orchestrator ------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postmaster_pid(db: str) -> int:
    """PostgreSQL's postmaster, whose children are the backends (when it runs here)."""
    import psycopg

    with psycopg.connect(db) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert backend is not None
    with open(f"/proc/{backend[0]}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@contextlib.contextmanager
def federation(
    n_platforms: int, latency_ms: float, *, hub_workers: int = 1
) -> Iterator[tuple[dict[str, str], str, str, str, list[dict[str, Any]], dict[str, int]]]:
    """A hub on a fresh PostgreSQL database and N simulated platforms registered with it."""
    import httpx

    db = fresh_db("fanout")
    env = {**os.environ, "TONGCHA_DATABASE_URL": db, "TONGCHA_ENV": "dev", "TONGCHA_LOG_LEVEL": "WARNING"}
    procs: list[subprocess.Popen[str]] = []
    try:
        subprocess.run([TONGCHA, "db", "upgrade"], env=env, check=True, capture_output=True)
        operator = (
            subprocess.run([TONGCHA, "operator", "credential"], env=env, check=True, capture_output=True, text=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        port = _free_port()
        hub_url = f"http://127.0.0.1:{port}"
        procs.append(
            subprocess.Popen([TONGCHA, "serve", "--port", str(port), "--workers", str(hub_workers)], env=env, text=True)
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(hub_url + "/.well-known/jwks.json").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the hub did not start")
            time.sleep(0.1)
        sims = subprocess.Popen(
            [
                PY,
                __file__,
                "--sims",
                "--hub-url",
                hub_url,
                "--platforms",
                str(n_platforms),
                "--latency-ms",
                str(latency_ms),
            ],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(sims)
        assert sims.stdout is not None
        platforms = []
        for line in sims.stdout:
            if line.strip() == "ready":
                break
            platforms.append(json.loads(line))
        headers = {"Authorization": f"Bearer {operator}"}
        for p in platforms:
            httpx.post(
                hub_url + "/operator/v1/platforms",
                json={"code": p["code"], "name": p["code"], "base_url": p["base_url"]},
                headers=headers,
            ).raise_for_status()
            httpx.post(
                hub_url + f"/operator/v1/platforms/{p['code']}/keys", json={"jwk": p["jwk"]}, headers=headers
            ).raise_for_status()
        pids = {"hub": procs[0].pid, "platforms": sims.pid, "PostgreSQL": _postmaster_pid(db)}
        yield env, db, hub_url, operator, platforms, pids
        assert sims.stdin is not None
        sims.stdin.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop_db(db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platforms", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--hub-workers", type=int, default=1, help="hub processes (tongcha serve --workers)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--skip-httpx", action="store_true", help="leave out the httpx baseline (slow to run: it collapses under load)"
    )
    parser.add_argument("--sims", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loadgen", choices=["hub", "baseline", "aiohttp", "dispatcher"], help=argparse.SUPPRESS)
    parser.add_argument("--watch", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--hub-url", help=argparse.SUPPRESS)
    parser.add_argument("--operator", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--platforms-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sims:
        return run_sims(args)
    if args.loadgen:
        return run_loadgen(args)
    if args.quick:
        args.seconds, args.rate, args.concurrency = 2.0, 50.0, 16

    common = ["--seconds", str(args.seconds), "--rate", str(args.rate), "--concurrency", str(args.concurrency)]
    with federation(args.platforms, args.latency_ms, hub_workers=args.hub_workers) as (
        env,
        db,
        hub_url,
        operator,
        platforms,
        pids,
    ):
        watch = [arg for name, pid in pids.items() for arg in ("--watch", f"{name}={pid}")]

        def loadgen(kind: str, *extra: str) -> dict[str, Any]:
            done = subprocess.run(
                [PY, __file__, "--loadgen", kind, *common, *watch, *extra],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            return result

        baseline = (
            None if args.skip_httpx else loadgen("baseline", "--db", db, "--platforms-json", json.dumps(platforms))
        )
        strong = loadgen("aiohttp", "--db", db, "--platforms-json", json.dumps(platforms))
        calls_alone = loadgen("dispatcher", "--db", db, "--platforms-json", json.dumps(platforms))
        ours = loadgen("hub", "--hub-url", hub_url, "--operator", operator)

    runs = (
        (f"hub ({args.hub_workers} process(es)): POST /operator/v1/probes", ours),
        ("the hub's Dispatcher alone: no database, no HTTP in front", calls_alone),
        ("baseline: bare httpx + gather", baseline),
        ("stronger baseline: bare aiohttp + gather", strong),
    )
    rows = []
    cpu_rows = []
    for name, res in runs:
        if res is None:
            continue
        cpu = res["cpu_ms"]
        cpu_rows.append([name, *(f"{cpu[k]:.1f}" for k in ("hub", "platforms", "PostgreSQL", "load generator"))])
        c, o = res["closed"], res["open"]
        rows.append(
            [
                name,
                f"{c['rate']:.0f}/s (p50 {c['p50_ms']:.0f} ms, p99 {c['p99_ms']:.0f} ms)",
                f"{o['rate']:.0f}/s: p50 {o['p50_ms']:.0f} ms, p99 {o['p99_ms']:.0f} ms",
                f"{c['errors'] + o['errors']} errors, {c['incomplete'] + o['incomplete']} incomplete, "
                f"{o['unfinished']} unfinished",
            ]
        )

    def ratio(other: dict[str, Any] | None) -> float:
        if other is None or not other["closed"]["rate"]:
            return float("nan")
        return float(ours["closed"]["rate"] / other["closed"]["rate"])

    print(machine())
    print(
        f"{args.platforms} platforms answering in {args.latency_ms:.0f} ms; closed loop at {args.concurrency} "
        f"in flight, open loop at {args.rate:.0f}/s; {args.seconds:.0f} s each"
    )
    print(
        table(
            ["", f"throughput, closed loop ({args.concurrency} in flight)", f"open loop at {args.rate:.0f}/s", ""],
            rows,
        )
    )
    print(f"hub / httpx baseline throughput: {ratio(baseline):.2f}; hub / aiohttp baseline: {ratio(strong):.2f}")
    print()
    print("CPU per inquiry in the closed loop, ms, by process:")
    print(table(["", "hub", "platforms", "PostgreSQL", "load generator"], cpu_rows))
    for res in (ours, calls_alone, baseline, strong):
        if res is None:
            continue
        for part in ("closed", "open"):
            if res[part]["first_error"]:
                print("first error:", res[part]["first_error"])


if __name__ == "__main__":
    main()
