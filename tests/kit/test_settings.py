"""Settings refuse to run production on the public development secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_serve_in_production_with_the_dev_secret_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGCHA_")}
    env.update({"TONGCHA_ENV": "production", "COLUMNS": "200"})
    tongcha = str(Path(sys.executable).with_name("tongcha"))
    proc = subprocess.run(
        [tongcha, "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and "TONGCHA_SECRET_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
