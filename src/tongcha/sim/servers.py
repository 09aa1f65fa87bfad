"""Many small HTTP servers on loopback, all on one event loop in one background thread.

One loop rather than a thread per server: the simulated peers spend their time waiting,
a loop starts a server in milliseconds, and one thread is one thing to stop. Each server
listens on a socket bound here (port 0 picks a free one), so its port is known before
it starts, and it can be stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STARTUP_SECONDS = 5.0
# A stopped server lets requests in flight finish for this long, then cuts them off.
_GRACE_SECONDS = 1


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class ServerHost:
    """The background loop. ``call`` runs a coroutine on it and waits for the result."""

    def __init__(self, name: str = "tongcha-sim") -> None:
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.servers: list[LoopbackServer] = []

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("ServerHost.call() from the host's own loop would wait for itself")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def serve(self, app: ASGIApp, *, port: int = 0, address: str = "127.0.0.1") -> LoopbackServer:
        """Start serving ``app`` and return once it accepts connections."""
        server = LoopbackServer(self, app, address=address, port=port)
        server.start()
        self.servers.append(server)
        return server

    def close(self) -> None:
        """Stop every server, cancel what still runs on the loop, end the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(TimeoutError):
            self.call(self._shutdown(), timeout=30.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()

    async def _shutdown(self) -> None:
        await asyncio.gather(*(server.stop_here() for server in self.servers), return_exceptions=True)
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


class LoopbackServer:
    """One uvicorn server on the host's loop; ``stop`` and ``start`` keep its port."""

    def __init__(self, owner: ServerHost, app: ASGIApp, *, address: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.address = address
        self.port = port
        self._owner = owner
        self._config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=_GRACE_SECONDS,
        )
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._server is not None and self._server.started and not self._server.should_exit

    def start(self) -> None:
        """Listen again (on the same port once it has one); returns when accepting."""
        self._owner.call(self.start_here())

    def stop(self) -> None:
        """Stop listening and close connections; requests in flight get a short grace."""
        self._owner.call(self.stop_here())

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def start_here(self) -> None:
        """``start`` for code already running on the host's loop."""
        async with self._guard():
            if self._serving is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # Connections of the previous run may linger in TIME_WAIT on this port.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((self.address, self.port))
            except OSError:
                listener.close()
                raise
            self.port = listener.getsockname()[1]
            server = uvicorn.Server(self._config)
            serving = asyncio.create_task(server.serve(sockets=[listener]), name=f"serve {self.base_url}")
            deadline = asyncio.get_running_loop().time() + _STARTUP_SECONDS
            while not server.started:
                if serving.done():
                    listener.close()
                    serving.result()
                    raise RuntimeError(f"the server for {self.base_url} stopped while starting")
                if asyncio.get_running_loop().time() > deadline:
                    server.should_exit = True
                    raise RuntimeError(f"the server for {self.base_url} did not start")
                await asyncio.sleep(0.001)
            self._server, self._serving = server, serving

    async def stop_here(self) -> None:
        """``stop`` for code already running on the host's loop."""
        async with self._guard():
            if self._server is None or self._serving is None:
                return
            server, serving = self._server, self._serving
            self._server = self._serving = None
            server.should_exit = True
            await asyncio.wait({serving})
            if not serving.cancelled() and serving.exception() is not None:
                raise RuntimeError(f"the server for {self.base_url} failed") from serving.exception()
