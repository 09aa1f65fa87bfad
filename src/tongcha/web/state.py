"""What one running hub holds: settings, clock, database, the check index and log."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit.clock import Clock
from tongcha.kit.db import make_sessionmaker
from tongcha.kit.digests import Digester
from tongcha.kit.keys import Keyring
from tongcha.kit.settings import Settings
from tongcha.kit.workdays import calendar_from_settings
from tongcha.ledger import index as ledger_index
from tongcha.ledger.index import LedgerIndex
from tongcha.ledger.tasks import CheckLog
from tongcha.notify.sms import gateway_from_settings
from tongcha.platforms.dispatch import Dispatcher
from tongcha.platforms.service import PlatformDirectory
from tongcha.requests import tasks as request_tasks

if TYPE_CHECKING:
    from tongcha.web.deps import CredentialCache

log = logging.getLogger("tongcha.hub")


class HubState:
    def __init__(self, settings: Settings, clock: Clock, engine: Engine) -> None:
        from tongcha.web.deps import CredentialCache

        self.settings = settings
        self.clock = clock
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_sessionmaker(engine)
        self.digester = Digester.from_settings(settings)
        self.credentials: CredentialCache = CredentialCache()
        self._index: LedgerIndex | None = None
        self._index_lock = threading.Lock()
        self._checklog: CheckLog | None = None
        self.keyring = Keyring(self.sessions, settings, clock)
        self._dispatcher: Dispatcher | None = None
        self.platforms = PlatformDirectory(self.sessions)
        self.zone = ZoneInfo(settings.timezone)
        self.calendar = calendar_from_settings(settings)
        self.sms = gateway_from_settings(settings)
        request_tasks.configure(self.sms, self.zone)
        # Background dispatches of citizens' requests, kept so they are not collected.
        self.background: set[asyncio.Task[None]] = set()

    @property
    def dispatcher(self) -> Dispatcher:
        """Created on first use, inside the server's event loop (it owns a connection pool)."""
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(
                self.keyring,
                self.clock,
                breaker_threshold=self.settings.breaker_threshold,
                breaker_cooldown=self.settings.breaker_cooldown_seconds,
            )
        return self._dispatcher

    @property
    def checklog(self) -> CheckLog:
        if self._checklog is None:
            self._checklog = CheckLog(self.engine, self.digester)
        return self._checklog

    def index(self) -> LedgerIndex:
        if self._index is None:
            with self._index_lock:
                if self._index is None:
                    started = time.perf_counter()
                    self._index = ledger_index.load(self.engine)
                    log.info("check index loaded: %d numbers in %.2fs", len(self._index), time.perf_counter() - started)
        return self._index

    def ensure_fresh_index(self) -> LedgerIndex:
        """The index, refreshed from the ledger if the last refresh is older than the setting."""
        index = self.index()
        if time.monotonic() - index.refreshed_at >= self.settings.index_refresh_seconds:
            with self._index_lock, self.sessions() as session:
                if time.monotonic() - index.refreshed_at >= self.settings.index_refresh_seconds:
                    index.refresh(session)
        return index

    async def fresh_index(self) -> LedgerIndex:
        """``ensure_fresh_index`` for the event loop: a refresh is a database query, which
        runs on a worker thread, so the loop goes on answering the other checks meanwhile."""
        index = self.index()
        if time.monotonic() - index.refreshed_at >= self.settings.index_refresh_seconds:
            await asyncio.to_thread(self.ensure_fresh_index)
        return index

    async def aclose(self) -> None:
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        if self._dispatcher is not None:
            await self._dispatcher.aclose()
            self._dispatcher = None
        self.close()

    def close(self) -> None:
        closer = getattr(self.sms, "close", None)
        if callable(closer):  # an HTTP gateway holds a connection pool
            closer()
        if self._checklog is not None:
            self._checklog.close()
            self._checklog = None
