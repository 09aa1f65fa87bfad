"""Settings from the environment (``TONGCHA_*``), checked before anything starts."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The development secret is public (it is in this file): it keys the identity digests,
# so a hub that uses it outside development would hand out guessable digests.
DEV_SECRET = "tongcha-development-secret-do-not-use-in-production"  # noqa: S105 - public on purpose


_DATABASES = "the hub runs on sqlite:///FILE or postgresql://USER@HOST/DATABASE"


class InsecureSettingsError(RuntimeError):
    """Raised when settings are unsafe for the environment they run in."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TONGCHA_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"
    database_url: str = Field(default="sqlite:///tongcha.db")
    # Keys the holder/kyc/tail/number digests (HMAC-SHA-256). Rotating means adding a
    # new version: digests carry the version they were made with.
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    secret_key_version: int = Field(default=1, ge=1)
    timezone: str = "Asia/Shanghai"
    default_quarantine_days: int = Field(default=90, ge=0)
    # How far ahead of the hub's clock an event may be stamped (carriers' clocks drift).
    clock_skew_seconds: int = Field(default=300, ge=0)
    ingest_chunk_size: int = Field(default=20_000, ge=1)
    # Events per commit of `tongcha ledger import`: what an interrupted import leaves to
    # do again. Fewer a commit cost more commits; more keep a transaction open longer.
    import_commit_events: int = Field(default=100_000, ge=1)
    # How often an API process pulls ledger changes into its in-memory index.
    index_refresh_seconds: float = Field(default=1.0, ge=0)
    check_log_flush_ms: float = Field(default=2.0, ge=0)
    # Answer well-formed single checks below FastAPI's routing (ledger/fastpath.py).
    check_fast_path: bool = True
    # FastAPI's own OpenTelemetry (traces, metrics and logs to the providers configured
    # globally, by the OpenTelemetry SDK). Off unless asked for: FastAPI asks on every
    # request whether a provider is configured, about 5 µs, a few per cent of a check.
    telemetry: bool = False
    log_level: str = "INFO"
    # Fan-out: how long a request waits for quick platforms before leaving the rest to
    # the workers, and how long the workers keep retrying a platform before giving up.
    fanout_wait_ms: int = Field(default=1500, ge=0)
    fanout_give_up_hours: float = Field(default=48.0, ge=0)
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=10.0, ge=0)
    data_dir: Path = Path(".")
    # Working days: the `holidays` package knows a year once the State Council's notice
    # is out (usually November); this CSV/JSON file adds or corrects days before then.
    workdays_file: Path | None = None
    # SMS: `console` keeps messages in memory for the demo's on-screen phone (refused in
    # production), `file` appends JSON lines, `http` posts to a provider.
    sms_backend: Literal["console", "file", "http"] = "console"
    sms_file: Path | None = None
    sms_url: str | None = None
    sms_api_key: SecretStr | None = None
    sms_sender: str = "TONGCHA"
    sms_timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _a_database_the_hub_runs_on(cls, url: str) -> str:
        # The message never repeats the URL: it may hold a password.
        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError:
            raise ValueError(f"is not a database URL; {_DATABASES}") from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"names a {backend} database; {_DATABASES}")
        return url

    @model_validator(mode="after")
    def _refuse_dev_secret(self) -> Settings:
        if self.env != "dev" and self.secret_key.get_secret_value() == DEV_SECRET:
            raise InsecureSettingsError(
                f"TONGCHA_SECRET_KEY is the built-in development secret; set a real one "
                f"before running with TONGCHA_ENV={self.env}"
            )
        if self.env != "dev" and len(self.secret_key.get_secret_value()) < 32:
            raise InsecureSettingsError("TONGCHA_SECRET_KEY must be at least 32 characters")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
