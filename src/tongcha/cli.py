"""The ``tongcha`` command."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit.clock import SystemClock
from tongcha.kit.settings import InsecureSettingsError, Settings, get_settings

if TYPE_CHECKING:
    from tongcha.ledger.importer import ImportTotals
    from tongcha.platforms.dispatch import FanoutWorker
    from tongcha.platforms.fanout import Progress as FanoutProgress

app = typer.Typer(help="Tongcha: an open clearing-house for phone-number account bindings.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
carrier_app = typer.Typer(help="Carriers: who may send number lifecycle events.", no_args_is_help=True)
platform_app = typer.Typer(
    help="Platforms: the enterprises the hub calls, and who may ask reassignment checks.", no_args_is_help=True
)
platform_key_app = typer.Typer(help="A platform's public keys for its signed callbacks.", no_args_is_help=True)
platform_app_app = typer.Typer(help="An enterprise's apps.", no_args_is_help=True)
hub_app = typer.Typer(help="The hub itself: its signing keys.", no_args_is_help=True)
hub_key_app = typer.Typer(help="The keys the hub signs its calls with (published as JWKS).", no_args_is_help=True)
operator_app = typer.Typer(help="The operator's own credentials.", no_args_is_help=True)
ledger_app = typer.Typer(help="The number ledger.", no_args_is_help=True)
requests_app = typer.Typer(help="Requests: what citizens and the operator asked platforms.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(carrier_app, name="carrier")
app.add_typer(platform_app, name="platform")
app.add_typer(ledger_app, name="ledger")
platform_app.add_typer(platform_key_app, name="key")
platform_app.add_typer(platform_app_app, name="app")
app.add_typer(hub_app, name="hub")
hub_app.add_typer(hub_key_app, name="key")
app.add_typer(operator_app, name="operator")
app.add_typer(requests_app, name="requests")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _settings(*, schema: bool = True) -> Settings:
    """The settings, once they are safe to run with and (``schema``) the database they
    name is at this program's schema."""
    try:
        settings = get_settings()
    except InsecureSettingsError as exc:
        err.print(f"[red]refusing to start:[/red] {exc}")
        raise typer.Exit(2) from None
    except ValidationError as exc:
        # Each setting by its variable's name; never the value given (it may be a secret).
        for problem in exc.errors(include_url=False, include_input=False):
            name = "TONGCHA_" + "_".join(str(part) for part in problem["loc"]).upper()
            said = problem["msg"].removeprefix("Value error, ")
            err.print(f"refusing to start: {name}: {said}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if schema:
        from sqlalchemy.engine import make_url

        from tongcha.kit.db import UNAVAILABLE, database_trouble
        from tongcha.kit.migrate import behind

        where = make_url(settings.database_url).render_as_string(hide_password=True)
        try:
            why = behind(settings.database_url)
        except UNAVAILABLE as exc:
            err.print(f"[red]cannot reach the database[/red] {where}: {database_trouble(exc)}")
            raise typer.Exit(2) from None
        if why is not None:
            err.print(f"[red]{why}[/red] ({where}); run [bold]tongcha db upgrade[/bold] first")
            raise typer.Exit(2)
    return settings


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
        "tongcha.web.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        # No "server: uvicorn" on every answer: one header less to check and write.
        server_header=False,
    )


@app.command()
def worker(once: Annotated[bool, typer.Option(help="run what is due, then stop")] = False) -> None:
    """Run durable jobs (platform calls, retries, notifications) as they come due."""
    import tongcha.requests.tasks  # noqa: F401 - registers the result-SMS job
    from tongcha.kit import jobs
    from tongcha.kit.correlator import configure_logging
    from tongcha.kit.db import make_engine, make_sessionmaker

    settings = _settings()
    configure_logging(settings.log_level)
    sessions = make_sessionmaker(make_engine(settings.database_url))
    clock = SystemClock()
    if once:
        ran = jobs.run_due(sessions, clock, limit=10_000)
        calls = asyncio.run(_fanout_once(settings, sessions))
        out.print(f"ran {ran} jobs and {calls} platform calls")
        return
    # Jobs are synchronous and few; platform calls are many and concurrent, so they get
    # the event loop and the jobs a thread.
    threading.Thread(target=jobs.work_forever, args=(sessions, clock), daemon=True).start()
    asyncio.run(_fanout_forever(settings, sessions))


def _fanout_worker(settings: Settings, sessions: sessionmaker[Session]) -> FanoutWorker:
    from tongcha.kit.keys import Keyring
    from tongcha.platforms.dispatch import Dispatcher, FanoutWorker

    clock = SystemClock()
    dispatcher = Dispatcher(
        Keyring(sessions, settings, clock),
        clock,
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown=settings.breaker_cooldown_seconds,
    )
    return FanoutWorker(sessions, dispatcher, clock)


async def _fanout_once(settings: Settings, sessions: sessionmaker[Session]) -> int:
    fw = _fanout_worker(settings, sessions)
    try:
        return await fw.run_once()
    finally:
        await fw.dispatcher.aclose()


async def _fanout_forever(settings: Settings, sessions: sessionmaker[Session]) -> None:
    fw = _fanout_worker(settings, sessions)
    try:
        await fw.work_forever()
    finally:
        await fw.dispatcher.aclose()


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the database to the latest schema."""
    from tongcha.kit.migrate import upgrade

    settings = _settings(schema=False)
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
def platform_add(
    code: str,
    name: Annotated[str, typer.Option(help="display name (English)")],
    name_zh: Annotated[str | None, typer.Option(help="display name (Chinese)")] = None,
    model: Annotated[str, typer.Option(help="account model: independent or unified")] = "independent",
    base_url: Annotated[str | None, typer.Option(help="where the hub calls it")] = None,
    app_: Annotated[
        list[str] | None, typer.Option("--app", help="an app, as code:中文名:English name (repeatable)")
    ] = None,
) -> None:
    """Register a platform and print its bearer credential (shown once, on the last line)."""
    from tongcha.kit.errors import InvalidArgument
    from tongcha.platforms import service
    from tongcha.platforms.catalogue import AccountModel

    def go(session: Session) -> str:
        if model not in AccountModel.__members__:
            raise InvalidArgument("--model is independent or unified")
        apps = []
        for item in app_ or []:
            parts = item.split(":")
            if len(parts) != 3:
                raise InvalidArgument(f"--app {item!r}: write code:中文名:English name")
            apps.append(service.AppSpec(*parts))
        spec = service.PlatformSpec(code, name, name_zh, AccountModel(model), base_url, apps)
        return service.add(session, spec, SystemClock().now())[1]

    secret = _in_session(go)
    out.print(f"platform {code} added; its credential (shown once, keep it secret):")
    print(secret)


T = TypeVar("T")


def _in_session(fn: Callable[[Session], T]) -> T:
    """Run ``fn`` in one transaction; an ApiError becomes a red message and exit 1."""
    from tongcha.kit.errors import ApiError

    with _session() as session, session.begin():
        try:
            return fn(session)
        except ApiError as exc:
            err.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(1) from None


@platform_app.command("seed")
def platform_seed() -> None:
    """Register the enterprises of 一证通查 2.0 and 一号通查 that are not registered yet."""
    from tongcha.platforms import service

    added = _in_session(lambda session: service.seed(session, SystemClock().now()))
    out.print(f"seeded {len(added)} enterprises: {', '.join(added) or 'none new'}")


@platform_app.command("update")
def platform_update(
    code: str,
    base_url: Annotated[str | None, typer.Option(help="where the hub calls it")] = None,
    timeout_ms: Annotated[int | None, typer.Option(help="per-call timeout")] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="calls in flight at once")] = None,
    sla: Annotated[list[str] | None, typer.Option(help="kind=working days, e.g. unbind=3 (repeatable)")] = None,
) -> None:
    """Change where and how the hub calls a platform."""
    from tongcha.kit.errors import InvalidArgument
    from tongcha.platforms import service

    def go(session: Session) -> None:
        overrides = None
        if sla:
            overrides = {}
            for item in sla:
                kind, _, days = item.partition("=")
                if not days.isdigit():
                    raise InvalidArgument(f"--sla {item!r}: write kind=days")
                overrides[kind] = int(days)
        change = service.PlatformUpdate(
            base_url=base_url, timeout_ms=timeout_ms, max_concurrency=max_concurrency, sla_overrides=overrides
        )
        service.update(session, code, change)

    _in_session(go)
    out.print(f"platform {code} updated")


def _set_status(code: str, status: str) -> None:
    from tongcha.platforms import service
    from tongcha.platforms.models import PlatformStatus

    _in_session(lambda s: service.update(s, code, service.PlatformUpdate(status=PlatformStatus(status))))
    out.print(f"platform {code} {status}")


@platform_app.command("suspend")
def platform_suspend(code: str) -> None:
    """Stop calling a platform; what it owes is kept and goes out when it is resumed."""
    _set_status(code, "suspended")


@platform_app.command("resume")
def platform_resume(code: str) -> None:
    """Call a suspended platform again."""
    _set_status(code, "active")


@platform_app.command("show")
def platform_show(code: str) -> None:
    """Everything the registry holds about one platform."""
    from tongcha.platforms import service

    def go(session: Session) -> None:
        p = service.get(session, code)
        out.print(f"[bold]{p.code}[/bold] {p.name} {p.name_zh or ''}  ({p.account_model}, {p.status})")
        out.print(f"  base URL: {p.base_url or '-'}   timeout {p.timeout_ms} ms   concurrency {p.max_concurrency}")
        out.print(f"  SLA overrides: {p.sla_overrides or '-'}")
        for a in service.apps_of(session, p.id):
            out.print(f"  app {a.code}: {a.name_zh} / {a.name_en}")
        out.print(f"  callback keys: {', '.join(service.live_kids(session, p.id)) or '-'}")

    _in_session(go)


@platform_app_app.command("add")
def platform_app_add(
    code: str,
    app_code: str,
    name_zh: Annotated[str, typer.Option(help="the app's Chinese name")],
    name_en: Annotated[str, typer.Option(help="the app's English name")],
) -> None:
    """Add an app to an enterprise (its accounts are counted per app if independent)."""
    from tongcha.platforms import service

    _in_session(lambda s: service.add_app(s, service.get(s, code), service.AppSpec(app_code, name_zh, name_en)))
    out.print(f"app {app_code} added to {code}")


@platform_key_app.command("add")
def platform_key_add(
    code: str, jwk: Annotated[Path, typer.Option(help="a file holding the public JWK ('-' for stdin)")]
) -> None:
    """Register a platform's public key; its callbacks may be signed with it."""
    from tongcha.kit.errors import InvalidArgument
    from tongcha.platforms import service

    text = sys.stdin.read() if str(jwk) == "-" else jwk.read_text()

    def go(session: Session) -> str:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise InvalidArgument("the JWK file is not JSON") from None
        return service.add_key(session, code, value, SystemClock().now())

    kid = _in_session(go)
    out.print(f"key {kid} registered for {code}")


@platform_key_app.command("retire")
def platform_key_retire(code: str, kid: str) -> None:
    """Refuse callbacks signed with this key from now on."""
    from tongcha.platforms import service

    _in_session(lambda session: service.retire_key(session, code, kid, SystemClock().now()))
    out.print(f"key {kid} of {code} retired")


@platform_app.command("probe")
def platform_probe(
    number: str,
    platform: Annotated[list[str] | None, typer.Option(help="only these platform codes (repeatable)")] = None,
    since: Annotated[str, typer.Option(help="bindings made on or after this day")] = "2000-01-01",
    operation: Annotated[str, typer.Option(help="count or list")] = "count",
) -> None:
    """Ask platforms about a number now, as a citizen's request would, and show each answer."""
    from tongcha.kit.errors import ApiError

    settings = _settings()
    try:
        progress = asyncio.run(_probe(settings, number, platform, since, operation))
    except ApiError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    table = Table("platform", "state", "attempts", "answer / error")
    for task in progress.tasks:
        detail = json.dumps(task.answer, ensure_ascii=False) if task.answer else f"{task.error_code}: {task.error}"
        table.add_row(task.platform, task.state, str(task.attempts), detail)
    out.print(table)
    out.print(f"request {progress.request_id}: {progress.state}; pending: {', '.join(progress.pending) or 'none'}")


async def _probe(settings: Settings, number: str, only: list[str] | None, since: str, operation: str) -> FanoutProgress:
    from zoneinfo import ZoneInfo

    from tongcha.kit.db import make_engine, make_sessionmaker
    from tongcha.kit.errors import InvalidArgument
    from tongcha.platforms.dispatch import probe

    try:
        day = date.fromisoformat(since)
    except ValueError:
        raise InvalidArgument("--since is a date like 2024-01-31") from None
    sessions = make_sessionmaker(make_engine(settings.database_url))
    fw = _fanout_worker(settings, sessions)
    try:
        return await probe(
            sessions,
            fw.dispatcher,
            fw.clock,
            number=number,
            operation=operation,
            since=day,
            only=only,
            zone=ZoneInfo(settings.timezone),
            wait_s=settings.fanout_wait_ms / 1000,
        )
    finally:
        await fw.dispatcher.aclose()


@hub_key_app.command("rotate")
def hub_key_rotate() -> None:
    """Sign with a new key from now on; the old ones stay published until retired."""
    from tongcha.kit import keys

    settings = _settings()
    kid = _in_session(lambda session: keys.rotate(session, settings, SystemClock().now()))
    out.print(f"the hub now signs with key {kid}; run `tongcha hub key retire` once platforms have re-fetched the JWKS")


@hub_key_app.command("retire")
def hub_key_retire() -> None:
    """Unpublish every hub key but the newest."""
    from tongcha.kit import keys

    gone = _in_session(lambda session: keys.retire(session, SystemClock().now()))
    out.print(f"retired {len(gone)} key(s): {', '.join(gone) or 'none'}")


@hub_key_app.command("list")
def hub_key_list() -> None:
    """The hub's keys: the newest live one signs."""
    from tongcha.kit import keys

    with _session() as session:
        rows = keys.live_keys(session)
    for row in rows:
        out.print(f"{row.kid}  created {row.created_at:%Y-%m-%d %H:%M}")


@operator_app.command("credential")
def operator_credential() -> None:
    """Issue an operator credential for the operator API (shown once, on the last line)."""
    from tongcha.kit import credentials

    secret = _in_session(
        lambda session: credentials.issue(session, credentials.PartyKind.operator, 0, SystemClock().now())
    )
    out.print("operator credential (shown once, keep it secret):")
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
        from tongcha.platforms import repository as platforms_repo

        with _session() as session:
            rows = list_parties(session, kind)
            # Whether the hub calls a platform, and where: what a platform's operator asks first.
            platforms = {p.code: p for p in platforms_repo.platforms(session)} if kind == "platform" else {}
        if kind == "platform":
            table = Table("code", "name", "status", "base URL", "live credentials")
            for code, name, creds in rows:
                platform = platforms[code]
                table.add_row(
                    code, name, platform.status, platform.base_url or "-", ", ".join(f"{p}…" for p in creds) or "-"
                )
        else:
            table = Table("code", "name", "live credentials")
            for code, name, creds in rows:
                table.add_row(code, name, ", ".join(f"{p}…" for p in creds) or "-")
        out.print(table)


_credential_commands(carrier_app, "carrier")
_credential_commands(platform_app, "platform")


# ----- requests ---------------------------------------------------------------------


@requests_app.command("list")
def requests_list(
    state: Annotated[str | None, typer.Option(help="open or completed")] = None,
    kind: Annotated[
        str | None, typer.Option(help="inquiry, detail, unbind, dispute, history, label_clearance, probe")
    ] = None,
    overdue: Annotated[bool, typer.Option(help="only requests with a platform still open past its due time")] = False,
    platform: Annotated[str | None, typer.Option(help="only requests that asked this platform (code)")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, 1 to 500")] = 50,
    before: Annotated[str | None, typer.Option(help="only requests older than this request id (the next page)")] = None,
) -> None:
    """The latest requests, newest first, with the platforms pending and overdue on each."""
    from tongcha.kit.errors import InvalidArgument
    from tongcha.requests import service
    from tongcha.requests.models import RequestKind, RequestState

    def go(session: Session) -> service.RequestPage:
        if state is not None and state not in RequestState.__members__:
            raise InvalidArgument("--state is open or completed")
        if kind is not None and kind not in RequestKind.__members__:
            raise InvalidArgument("--kind is one of " + ", ".join(RequestKind.__members__))
        return service.operator_requests(
            session,
            limit=limit,
            before=before,
            state=RequestState(state) if state is not None else None,
            kind=RequestKind(kind) if kind is not None else None,
            overdue=overdue,
            platform=platform,
        )

    page = _in_session(go)
    table = Table("request", "kind", "state", "created (UTC)", "due (UTC)", "platforms", "pending", "overdue")
    for r in page.requests:
        table.add_row(
            r.request_id,
            r.kind,
            r.state,
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.due_by:%Y-%m-%d %H:%M}" if r.due_by else "-",
            str(r.platforms),
            ", ".join(r.pending) or "-",
            f"[red]{', '.join(r.overdue)}[/red]" if r.overdue else "-",
        )
    out.print(table)
    if page.next_before:
        out.print(f"more: --before {page.next_before}")


# ----- the ledger -------------------------------------------------------------------


@ledger_app.command("import")
def ledger_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or NDJSON of lifecycle events")],
    carrier: Annotated[str, typer.Option(help="the carrier code the events come from")],
    rejects: Annotated[Path | None, typer.Option(help="write rejected events here (NDJSON)")] = None,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="processes importing side by side (PostgreSQL; default: one per core, up to 8)"),
    ] = None,
    encoding: Annotated[
        str,
        typer.Option(help="the file's text encoding, as Python names it (gb18030 for Excel's CSV on Chinese Windows)"),
    ] = "utf-8",
) -> None:
    """Load lifecycle events from a file; safe to re-run (duplicates are skipped)."""
    from tongcha.ledger.importer import (
        ImportFailed,
        ImportTotals,
        import_file,
        import_jobs,
        is_utf8,
        looks_utf8,
        utf8_copy,
    )

    try:
        utf8 = is_utf8(encoding)
    except LookupError:
        err.print(f"unknown encoding: {encoding} (try gb18030 or utf-8)", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    settings = _settings()
    jobs = import_jobs(settings, jobs)
    started = time.perf_counter()
    totals = ImportTotals()
    stopped: tuple[str, int] | None = None  # why, and the exit code
    if not utf8:
        err.print(f"reading {file.name} as {encoding}", markup=False, highlight=False)
    with (
        utf8_copy(file, encoding) as readable,
        Progress(
            TextColumn("importing"), BarColumn(), TransferSpeedColumn(), TimeElapsedColumn(), console=err
        ) as progress,
    ):
        task = progress.add_task("import", total=readable.stat().st_size)
        try:
            import_file(
                settings,
                readable,
                carrier,
                lambda done: progress.update(task, completed=done),
                rejects,
                jobs=jobs,
                totals=totals,
            )
        except LookupError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        except ImportFailed as exc:
            stopped = (str(exc), 1)
        except KeyboardInterrupt:
            stopped = ("the import was interrupted; running it again goes on", 130)
    if stopped is not None:
        # Said once the progress bar is done with, so that it comes last.
        err.print(stopped[0], style="red", markup=False, highlight=False)
        err.print(_kept(totals), markup=False, highlight=False)
        raise typer.Exit(stopped[1])
    elapsed = time.perf_counter() - started
    rate = totals.events / max(elapsed, 1e-9)
    out.print(
        f"accepted {totals.accepted:,}, duplicates {totals.duplicates:,}, rejected {totals.rejected:,} "
        f"in {elapsed:.1f}s ({rate:,.0f} events/s, {jobs} {'job' if jobs == 1 else 'jobs'})"
    )
    rules = totals.rules()
    for rule, count, reasons in rules[:10]:
        others = len(reasons) - 1
        more = "more than " if totals.unkept[rule] else ""
        said = reasons[0] + (
            f", and {more}{others:,} other {'reason' if others == 1 else 'reasons'} like it" if others else ""
        )
        out.print(f"  rejected {count:,}: {rule}: {said}", markup=False, highlight=False)
    if len(rules) > 10:
        out.print(f"  and {len(rules) - 10:,} more rules")
    if totals.rejected:
        out.print(
            f"every rejected event, with its reason: {rejects}"
            if rejects is not None
            else "to list every rejected event with its reason, run it again with --rejects FILE",
            markup=False,
            highlight=False,
        )
        if utf8 and not looks_utf8(file):
            out.print(
                "the file is not UTF-8 text: if it was saved as GB18030 (as Excel saves CSV on Chinese Windows), "
                "run it again with --encoding gb18030",
                markup=False,
                highlight=False,
            )


def _kept(totals: ImportTotals) -> str:
    """What the commits of an import that stopped early hold."""
    if not totals.events:
        return "nothing was committed"
    return (
        f"committed before it stopped, and kept: accepted {totals.accepted:,}, "
        f"duplicates {totals.duplicates:,}, rejected {totals.rejected:,}"
    )


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
    from tongcha.ledger.tasks import CheckLogLost

    settings = _settings()
    sink = output.open("wb") if output else sys.stdout.buffer
    try:
        stats = check_file(settings, file, sink, platform)
    except LookupError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except CheckLogLost as exc:
        err.print(f"[red]{exc}[/red]; the results written are not on record: do not rely on them")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("the check was interrupted; every result written is on record in the check log", style="red")
        raise typer.Exit(130) from None
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
