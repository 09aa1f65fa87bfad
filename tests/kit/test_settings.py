"""Settings refuse to run production on the public development secret, or with values out of range."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tongcha.kit.settings import DEV_SECRET, InsecureSettingsError, Settings


def test_production_with_the_dev_secret_is_refused() -> None:
    with pytest.raises(InsecureSettingsError, match="development secret"):
        Settings(env="production", secret_key=DEV_SECRET)


def test_production_with_a_short_secret_is_refused() -> None:
    with pytest.raises(InsecureSettingsError, match="at least 32"):
        Settings(env="production", secret_key="short")


def test_production_with_a_real_secret_is_accepted() -> None:
    settings = Settings(env="production", secret_key="x" * 40)
    assert settings.env == "production"


def test_dev_may_use_the_dev_secret() -> None:
    assert Settings(env="dev").secret_key.get_secret_value() == DEV_SECRET


def test_production_env_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGCHA_ENV", "production")
    monkeypatch.delenv("TONGCHA_SECRET_KEY", raising=False)
    with pytest.raises(InsecureSettingsError):
        Settings(_env_file=None)


def run_with(settings: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The ``tongcha`` command with these ``TONGCHA_*`` variables and no others."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGCHA_")}
    env.update({**settings, "COLUMNS": "200"})
    tongcha = str(Path(sys.executable).with_name("tongcha"))
    return subprocess.run([tongcha, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_serve_in_production_with_the_dev_secret_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    proc = run_with({"TONGCHA_ENV": "production"}, "serve", "--port", "0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and "TONGCHA_SECRET_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("secret_key_version", 0),
        ("default_quarantine_days", -1),
        ("clock_skew_seconds", -1),
        ("ingest_chunk_size", 0),
        ("import_commit_events", 0),
        ("index_refresh_seconds", -1.0),
        ("check_log_flush_ms", -1.0),
        ("fanout_wait_ms", -1),
        ("fanout_give_up_hours", -1.0),
        ("breaker_threshold", 0),
        ("breaker_cooldown_seconds", -1.0),
        ("sms_timeout_seconds", 0.0),
    ],
)
def test_a_setting_out_of_its_range_is_refused_by_name(name: str, value: float) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings.model_validate({"env": "dev", name: value})


def test_a_command_with_a_setting_out_of_range_exits_2_naming_the_variable_alone(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_bytes(b"")
    settings = {"TONGCHA_INGEST_CHUNK_SIZE": "0", "TONGCHA_SECRET_KEY": "x" * 40}
    proc = run_with(settings, "ledger", "import", str(events), "--carrier", "CMCC", cwd=tmp_path)
    assert proc.returncode == 2
    assert "refusing to start: TONGCHA_INGEST_CHUNK_SIZE: Input should be greater than or equal to 1" in proc.stderr
    assert "Traceback" not in proc.stderr and "x" * 40 not in proc.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("nonsense", "is not a database URL"),
        ("mysql://hub:pa55word@db.example/tongcha", "names a mysql database"),
        ("postgres://hub:pa55word@db.example/tongcha", "names a postgres database"),
    ],
)
def test_a_database_url_the_hub_cannot_run_on_is_refused_without_repeating_it(url: str, said: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(env="dev", database_url=url)
    [problem] = refused.value.errors(include_url=False, include_input=False)
    assert problem["loc"] == ("database_url",)
    assert said in problem["msg"] and "sqlite:///FILE or postgresql://" in problem["msg"]
    assert "pa55word" not in problem["msg"]
