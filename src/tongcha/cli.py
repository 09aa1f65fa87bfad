"""The ``tongcha`` command."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from tongcha.kit.clock import SystemClock
from tongcha.kit.settings import InsecureSettingsError, Settings, get_settings

app = typer.Typer(help="Tongcha: an open clearing-house for phone-number account bindings.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
carrier_app = typer.Typer(help="Carriers: who may send number lifecycle events.", no_args_is_help=True)
platform_app = typer.Typer(help="Platforms: who may ask reassignment checks.", no_args_is_help=True)
ledger_app = typer.Typer(help="The number ledger.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(carrier_app, name="carrier")
app.add_typer(platform_app, name="platform")
app.add_typer(ledger_app, name="ledger")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except InsecureSettingsError as exc:
        err.print(f"[red]refusing to start:[/red] {exc}")
        raise typer.Exit(2) from None


# ----- serving ----------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="processes (each keeps its own check index)")] = 1,
) -> None:
    """Run the hub's HTTP API and pages."""
    import uvicorn

    settings = _settings()
    from tongcha.kit.correlator import configure_logging

    configure_logging(settings.log_level)
    uvicorn.run(
        "tongcha.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


@app.command()
def worker(once: Annotated[bool, typer.Option(help="run what is due, then stop")] = False) -> None:
    """Run durable jobs (platform calls, retries, notifications) as they come due."""
    from tongcha.kit import jobs
    from tongcha.kit.correlator import configure_logging
    from tongcha.kit.db import make_engine, make_sessionmaker

    settings = _settings()
    configure_logging(settings.log_level)
    sessions = make_sessionmaker(make_engine(settings.database_url))
    if once:
        ran = jobs.run_due(sessions, SystemClock(), limit=10_000)
        out.print(f"ran {ran} jobs")
        return
    jobs.work_forever(sessions, SystemClock())


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the database to the latest schema."""
    from tongcha.kit.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    out.print(f"database at {revision}")


# ----- parties ----------------------------------------------------------------------


def _session() -> Session:
    from tongcha.kit.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(_settings().database_url))()


@carrier_app.command("add")
def carrier_add(
    code: str,
    name: Annotated[str, typer.Option(help="display name")],
    quarantine_days: Annotated[int, typer.Option(help="days a cancelled number rests before re-issue")] = 90,
) -> None:
    """Register a carrier and print its bearer credential (shown once, on the last line)."""
    from tongcha.kit.errors import ApiError
    from tongcha.parties import add_carrier

    with _session() as session, session.begin():
        try:
            secret = add_carrier(session, code, name, quarantine_days, SystemClock().now())
        except ApiError as exc:
            err.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(1) from None
    out.print(f"carrier {code} added; its credential (shown once, keep it secret):")
    print(secret)


@platform_app.command("add")
def platform_add(code: str, name: Annotated[str, typer.Option(help="display name")]) -> None:
    """Register a platform and print its bearer credential (shown once, on the last line)."""
    from tongcha.kit.errors import ApiError
    from tongcha.parties import add_platform

    with _session() as session, session.begin():
        try:
            secret = add_platform(session, code, name, SystemClock().now())
        except ApiError as exc:
            err.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(1) from None
    out.print(f"platform {code} added; its credential (shown once, keep it secret):")
    print(secret)


def _credential_commands(group: typer.Typer, kind: str) -> None:
    @group.command("credential")
    def credential(code: str) -> None:
        """Issue another credential (for rotation); printed once, on the last line."""
        from tongcha.kit.errors import ApiError
        from tongcha.parties import issue_credential

        with _session() as session, session.begin():
            try:
                secret = issue_credential(session, kind, code, SystemClock().now())
            except ApiError as exc:
                err.print(f"[red]{exc.message}[/red]")
                raise typer.Exit(1) from None
        out.print(f"new credential for {kind} {code} (shown once):")
        print(secret)

    @group.command("revoke")
    def revoke(
        code: str, prefix: Annotated[str | None, typer.Option(help="revoke only the credential starting so")] = None
    ) -> None:
        """Revoke a party's credentials (all, or the one with this prefix)."""
        from tongcha.kit.errors import ApiError
        from tongcha.parties import revoke_credentials

        with _session() as session, session.begin():
            try:
                count = revoke_credentials(session, kind, code, prefix, SystemClock().now())
            except ApiError as exc:
                err.print(f"[red]{exc.message}[/red]")
                raise typer.Exit(1) from None
        out.print(f"revoked {count} credential(s) of {kind} {code}")

    @group.command("list")
    def list_() -> None:
        """List registered parties and their live credentials."""
        from tongcha.parties import list_parties

        with _session() as session:
            rows = list_parties(session, kind)
        table = Table("code", "name", "live credentials")
        for code, name, creds in rows:
            table.add_row(code, name, ", ".join(f"{p}…" for p in creds) or "-")
        out.print(table)


_credential_commands(carrier_app, "carrier")
_credential_commands(platform_app, "platform")


# ----- the ledger -------------------------------------------------------------------


@ledger_app.command("import")
def ledger_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or NDJSON of lifecycle events")],
    carrier: Annotated[str, typer.Option(help="the carrier code the events come from")],
    rejects: Annotated[Path | None, typer.Option(help="write rejected events here (NDJSON)")] = None,
) -> None:
    """Load lifecycle events from a file; safe to re-run (duplicates are skipped)."""
    from tongcha.ledger.importer import import_file

    settings = _settings()
    size = file.stat().st_size
    started = time.perf_counter()
    with Progress(
        TextColumn("importing"), BarColumn(), TransferSpeedColumn(), TimeElapsedColumn(), console=err
    ) as progress:
        task = progress.add_task("import", total=size)
        try:
            totals = import_file(settings, file, carrier, lambda done: progress.update(task, completed=done), rejects)
        except LookupError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
    elapsed = time.perf_counter() - started
    out.print(
        f"accepted {totals.accepted:,}, duplicates {totals.duplicates:,}, rejected {totals.rejected:,} "
        f"in {elapsed:.1f}s ({(totals.accepted + totals.duplicates + totals.rejected) / max(elapsed, 1e-9):,.0f} events/s)"
    )
    for reason, count in sorted(totals.by_rule.items(), key=lambda kv: -kv[1])[:10]:
        out.print(f"  rejected {count:,}: {reason}")


@ledger_app.command("check")
def ledger_check(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or NDJSON of number,since rows")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="where to write results (default: stdout)")
    ] = None,
    platform: Annotated[str | None, typer.Option(help="record the checks in the log as this platform's")] = None,
) -> None:
    """Answer a batch of reassignment checks from the command line."""
    from tongcha.ledger.importer import check_file

    settings = _settings()
    sink = output.open("wb") if output else sys.stdout.buffer
    try:
        stats = check_file(settings, file, sink, platform)
    except LookupError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        if output:
            sink.close()
    err.print(
        f"{stats.rows:,} rows: yes {stats.counts['yes']:,}, no {stats.counts['no']:,}, "
        f"no_data {stats.counts['no_data']:,}, invalid {stats.invalid:,}"
    )


@app.command()
def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    numbers: Annotated[int, typer.Option(help="numbers in the simulated ledger")] = 5_000,
    database: Annotated[Path, typer.Option(help="SQLite file for the demo")] = Path("tongcha-demo.db"),
) -> None:
    """Start the hub on SQLite with simulated carriers feeding it over HTTP."""
    from tongcha.sim.demo import run_demo

    run_demo(host=host, port=port, numbers=numbers, database=database, console=out)


def main() -> None:
    app()
