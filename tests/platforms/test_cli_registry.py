"""The operator's commands for the registry, the hub's keys and the worker, run as a user
would run them: the real `tongcha` command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.test_cli import TONGCHA, run_cli
from tongcha.kit import jobs
from tongcha.kit.clock import FixedClock
from tongcha.kit.keys import Keyring, live_keys
from tongcha.kit.settings import Settings
from tongcha.platforms import service
from tongcha.platforms.fanout import NOTIFY_JOB
from tongcha.requests.models import Request
from tongcha.sdk import protocol
from tongcha.sim.ledger import SynthConfig
from tongcha.sim.platforms import PlatformFleet, enterprise


def test_seed_then_show_a_unified_enterprise(db_url: str, engine: Engine) -> None:
    out = run_cli(db_url, "platform", "seed").stdout
    assert "seeded 12 enterprises" in out
    assert "seeded 0 enterprises" in run_cli(db_url, "platform", "seed").stdout
    shown = run_cli(db_url, "platform", "show", "BAIDU").stdout
    assert "unified" in shown
    assert "netdisk" in shown and "百度贴吧" in shown


def test_add_key_suspend_and_bad_input(
    db_url: str, engine: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    added = run_cli(
        db_url,
        "platform",
        "add",
        "ACME",
        "--name",
        "Acme",
        "--app",
        "acme:阿克米:Acme",
        "--base-url",
        "http://127.0.0.1:9/x",
    )
    assert added.stdout.strip().splitlines()[-1].startswith("tc_p_")
    jwk = tmp_path / "acme.pub.jwk"
    jwk.write_text(json.dumps(protocol.public_jwk(protocol.new_signing_key("acme-1"))))
    assert "key acme-1 registered" in run_cli(db_url, "platform", "key", "add", "ACME", "--jwk", str(jwk)).stdout
    run_cli(db_url, "platform", "suspend", "ACME")
    with sessions() as session:
        acme = service.get(session, "ACME")
        assert acme.status == "suspended"
        assert service.live_kids(session, acme.id) == ["acme-1"]
    bad = run_cli(db_url, "platform", "add", "BAD", "--name", "Bad", "--app", "nocolons", check=False)
    assert bad.returncode == 1
    assert "code:中文名:English name" in bad.stderr
    private = tmp_path / "private.jwk"
    private.write_text(json.dumps(dict(protocol.new_signing_key().as_dict(private=True))))
    refused = run_cli(db_url, "platform", "key", "add", "ACME", "--jwk", str(private), check=False)
    assert refused.returncode == 1
    assert "public key only" in refused.stderr


def test_hub_key_rotation_from_the_command_line(db_url: str, engine: Engine, sessions: sessionmaker[Session]) -> None:
    run_cli(db_url, "hub", "key", "rotate")
    run_cli(db_url, "hub", "key", "rotate")
    with sessions() as session:
        assert len(live_keys(session)) == 2
    assert "retired 1 key(s)" in run_cli(db_url, "hub", "key", "retire").stdout
    with sessions() as session:
        assert len(live_keys(session)) == 1


def test_probe_asks_a_platform_from_the_command_line(
    db_url: str, engine: Engine, sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    settings = Settings(env="dev", database_url=db_url)
    hub_keys = protocol.key_set(Keyring(sessions, settings, clock).jwks())
    with PlatformFleet(hub_url="http://127.0.0.1:9", hub_keys=hub_keys, ledger=SynthConfig(numbers=300)) as fleet:
        jd = fleet.add(enterprise("JD"))
        number = sorted(jd.accounts.numbers())[0]
        run_cli(db_url, "platform", "add", "JD", "--name", "JD", "--base-url", jd.base_url)
        with sessions() as session, session.begin():
            service.add_key(session, "JD", jd.public_jwk, clock.now())
        out = run_cli(db_url, "platform", "probe", number, "--platform", "JD").stdout
    count = len(jd.accounts.bound_to(number))
    assert "JD" in out and "done" in out
    assert f'"count": {count}' in out
    assert "pending: none" in out


def test_worker_once_sends_a_finished_requests_result_sms(
    db_url: str, engine: Engine, sessions: sessionmaker[Session], clock: FixedClock, tmp_path: Path
) -> None:
    with sessions() as session, session.begin():
        request = Request(
            public_id="r_test",
            kind="unbind",
            state="completed",
            params={},
            created_at=clock.now() - timedelta(hours=1),
            completed_at=clock.now() - timedelta(minutes=1),
            notify_number=13800000001,
        )
        session.add(request)
        session.flush()
        jobs.enqueue(session, NOTIFY_JOB, {"request_id": request.id}, clock.now() - timedelta(minutes=1))
    outbox = tmp_path / "sms.jsonl"
    env = {
        **os.environ,
        "TONGCHA_DATABASE_URL": db_url,
        "TONGCHA_ENV": "dev",
        "TONGCHA_SMS_BACKEND": "file",
        "TONGCHA_SMS_FILE": str(outbox),
    }
    done = subprocess.run([TONGCHA, "worker", "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ran 1 jobs" in done.stdout
    [line] = outbox.read_text(encoding="utf-8").splitlines()
    message = json.loads(line)
    assert message["to"] == "+8613800000001"
    assert "r_test" in message["text"]
    with sessions() as session:
        assert session.scalars(select(jobs.Job.state)).all() == ["done"]


def test_app_add_from_the_command_line(db_url: str, engine: Engine, sessions: sessionmaker[Session]) -> None:
    run_cli(db_url, "platform", "add", "ACME", "--name", "Acme")
    out = run_cli(db_url, "platform", "app", "add", "ACME", "shop", "--name-zh", "商城", "--name-en", "Shop").stdout
    assert "app shop added to ACME" in out
    with sessions() as session:
        assert [a.code for a in service.apps_of(session, service.get(session, "ACME").id)] == ["shop"]
    again = run_cli(
        db_url, "platform", "app", "add", "ACME", "shop", "--name-zh", "商城", "--name-en", "Shop", check=False
    )
    assert again.returncode == 1


def test_add_refuses_a_code_that_is_not_in_capitals(db_url: str, engine: Engine) -> None:
    # `platform add acme2` registered a second platform beside ACME2.
    for kind in ("carrier", "platform"):
        refused = run_cli(db_url, kind, "add", "acme2", "--name", "Acme", check=False)
        assert refused.returncode == 1, refused.stdout
        assert f"a {kind} code is 1 to 32 capital letters" in refused.stderr
        assert "added" not in refused.stdout
        run_cli(db_url, kind, "add", "ACME2", "--name", "Acme")


def test_platform_list_shows_each_platforms_status_and_base_url(db_url: str, engine: Engine) -> None:
    run_cli(db_url, "platform", "add", "ACME", "--name", "Acme", "--base-url", "http://127.0.0.1:9/acme")
    run_cli(db_url, "platform", "add", "QUIET", "--name", "Quiet")
    run_cli(db_url, "platform", "suspend", "QUIET")
    rows = {
        line.split()[1]: line for line in run_cli(db_url, "platform", "list").stdout.splitlines() if "tc_p_" in line
    }
    assert "active" in rows["ACME"] and "http://127.0.0.1:9/acme" in rows["ACME"]
    assert "suspended" in rows["QUIET"] and " - " in rows["QUIET"]
