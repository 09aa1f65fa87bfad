"""The app factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.types import ASGIApp

from tongcha.identity.api import router as identity_router
from tongcha.kit.clock import Clock, SystemClock
from tongcha.kit.correlator import CorrelatorMiddleware
from tongcha.kit.db import make_engine
from tongcha.kit.settings import Settings, get_settings
from tongcha.ledger.api import router as ledger_router
from tongcha.ledger.fastpath import FastCheck
from tongcha.platforms.api import operator as operator_router
from tongcha.platforms.api import router as platforms_router
from tongcha.requests.api import router as requests_router
from tongcha.web import devinbox, errors, health
from tongcha.web.head import HeadAsGet
from tongcha.web.pages import router as pages_router
from tongcha.web.state import HubState


class HubApp(FastAPI):
    """The hub's app: the single-check fast path answers in front of all middleware, and
    a ``HEAD`` is routed as a ``GET`` in front of that."""

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        hub: HubState = self.state.hub
        return HeadAsGet(FastCheck(stack, hub) if hub.settings.check_fast_path else stack)


def create_app(
    settings: Settings | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
    *,
    freeze_heap: bool = False,
) -> FastAPI:
    """The hub's app. ``freeze_heap``: once started, move everything the process holds
    so far out of the collector's reach (``gc.freeze``); for a process that runs one app
    for its lifetime (``tongcha serve``), not for tests that build many."""
    settings = settings or get_settings()
    state = HubState(settings, clock or SystemClock(), engine or make_engine(settings.database_url))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.index()  # load before the first request, not during it
        if freeze_heap:
            # What start-up loaded lives as long as the process. A full collection over
            # it took about 100 ms here and fell on whatever checks were in flight
            # (docs/benchmarks.md §3); frozen, a full collection looks only at what
            # came after.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await state.aclose()

    app = HubApp(
        title="Tongcha",
        version="0.1.0",
        summary="An open clearing-house for phone-number account bindings",
        lifespan=lifespan,
        telemetry=None if settings.telemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.hub = state
    errors.install(app)
    app.add_middleware(CorrelatorMiddleware)
    app.include_router(ledger_router)
    app.include_router(platforms_router)
    app.include_router(operator_router)
    app.include_router(identity_router)
    app.include_router(requests_router)
    app.include_router(pages_router)
    app.include_router(health.router)
    if devinbox.inbox_enabled(state):
        app.include_router(devinbox.router)
    return app


def create_served_app() -> FastAPI:
    """The app as ``tongcha serve`` runs it, one per process."""
    return create_app(freeze_heap=True)
