"""The check log writer: every reassignment check lands in the append-only log.

Single checks wait for their record to be written (group commit: whatever arrived while
the previous write ran goes in the next one, and its waiters on one event loop are woken
by one callback). Batch checks hand their rows over in blocks and do not wait; their
digests are computed here, off the answering path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Engine

from tongcha.kit.db import UNAVAILABLE, database_trouble
from tongcha.kit.digests import Digester
from tongcha.ledger import repository as repo
from tongcha.ledger._native import number_digests
from tongcha.ledger.batch import CheckedBlock
from tongcha.ledger.index import EPOCH, RESULT_NAMES

log = logging.getLogger("tongcha.ledger.checklog")


@dataclass(slots=True)
class CheckRecord:
    platform_id: int | None
    number: int
    since: date
    result: str
    channel: str
    checked_at: datetime
    batch_id: int | None = None
    correlator: str | None = None


@dataclass(slots=True)
class BatchBlock:
    platform_id: int | None
    batch_id: int
    checked_at: datetime
    numbers: npt.NDArray[np.int64]
    since_days: npt.NDArray[np.int32]
    results: npt.NDArray[np.uint8]
    correlator: str | None = None


class _Barrier:
    pass


Waiter: TypeAlias = Future[None] | asyncio.Future[None] | None
Item = tuple[CheckRecord | BatchBlock | _Barrier, Waiter]


class CheckLog:
    """A writer thread with a queue; ``close`` drains it."""

    def __init__(self, engine: Engine, digester: Digester) -> None:
        self._engine = engine
        self._digester = digester
        # PostgreSQL: the writer's own connection, kept open (see ``_append``).
        self._conn: Connection | None = None
        # SimpleQueue: a put is one C call, where Queue's lock and condition took about
        # 1 µs of every single check on the event loop.
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tongcha-checklog", daemon=True)
        self._thread.start()

    def record(self, rec: CheckRecord) -> asyncio.Future[None]:
        """Hand one record over; await the result to know it is written."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((rec, done))
        return done

    def record_block(self, block: BatchBlock, done: Future[None] | None = None) -> None:
        self._queue.put((block, done))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def flush(self) -> None:
        """Wait until everything handed over so far is written."""
        done: Future[None] = Future()
        self._queue.put((_Barrier(), done))
        done.result()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            items: list[Item] = []
            if first is None:
                stop = True
            else:
                items.append(first)
            while len(items) < 5000:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            if items:
                self._write(items)
        self._let_go()

    def _write(self, items: list[Item]) -> None:
        rows: list[tuple[Any, ...]] = []
        digest = self._digester.number
        for item, _ in items:
            if isinstance(item, CheckRecord):
                rows.append(
                    (
                        item.platform_id,
                        digest(item.number),
                        item.since,
                        item.result,
                        item.channel,
                        item.checked_at,
                        item.batch_id,
                        item.correlator,
                    )
                )
            elif isinstance(item, BatchBlock):
                rows.extend(_block_rows(item, self._digester))
        error: BaseException | None = None
        try:
            if rows:
                self._append(rows)
        except UNAVAILABLE as exc:  # the database is away: one line, not a traceback
            log.warning("could not write %d check records: %s", len(rows), database_trouble(exc))
            error = exc
        except Exception as exc:  # reported to every waiter; the writer keeps running
            log.exception("could not write %d check records", len(rows))
            error = exc
        on_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, done in items:
            if isinstance(done, asyncio.Future):
                on_loop.setdefault(done.get_loop(), []).append(done)
            elif done is not None:
                _settle(done, error)
        for loop, waiters in on_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                loop.call_soon_threadsafe(_settle_all, waiters, error)

    def _append(self, rows: list[tuple[Any, ...]]) -> None:
        """One write of the log, in a transaction of its own.

        On PostgreSQL the writer keeps a connection of its own in autocommit, where one
        COPY is one transaction: a single round trip, where taking a pooled connection
        (with its ping), BEGIN, the commit setting, the COPY and COMMIT were five, each
        paid in this thread beside the event loop for every few single checks. Its commits
        do not wait for the disk (``repository.add_checks``)."""
        if self._engine.dialect.name != "postgresql":
            with self._engine.begin() as conn:
                repo.add_checks(conn, rows)
            return
        while True:
            kept = self._conn is not None
            try:
                if self._conn is None:
                    conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                    self._conn = conn
                    conn.exec_driver_sql("SET synchronous_commit = off")
                repo.add_checks(self._conn, rows, in_transaction=False)
                return
            except UNAVAILABLE:
                self._let_go()
                if not kept:
                    raise
                # The server closed the kept connection meanwhile (a restart, an idle
                # timeout): once more on a new one, as the pool's ping would have done.
            except BaseException:
                self._let_go()  # a connection that failed is not trusted again
                raise

    def _let_go(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None


class CheckLogLost(Exception):
    """Rows of a batch were answered but could not be written to the check log."""


class Receipts:
    """The blocks of one batch handed to the check log, so that its answer is only given
    whole once every block is written: ``check`` raises ``CheckLogLost`` as soon as one
    write is known to have failed, and with ``wait`` waits for all of them first."""

    def __init__(self, log: CheckLog) -> None:
        self._log = log
        self._pending: list[Future[None]] = []

    def record(self, block: BatchBlock) -> None:
        done: Future[None] = Future()
        self._log.record_block(block, done)
        self._pending.append(done)

    def record_checked(
        self,
        checked: list[CheckedBlock],
        platform_id: int | None,
        batch_id: int,
        checked_at: datetime,
        correlator: str | None = None,
    ) -> None:
        """Hand a batch's newly checked blocks to the log, emptying ``checked``, and
        ``check``: called before their answers go out, so that an answer given is on record."""
        for block in checked:
            self.record(
                BatchBlock(
                    platform_id, batch_id, checked_at, block.numbers, block.since_days, block.results, correlator
                )
            )
        checked.clear()
        self.check()

    def check(self, *, wait: bool = False) -> None:
        still: list[Future[None]] = []
        for done in self._pending:
            if not wait and not done.done():
                still.append(done)
                continue
            error = done.exception()
            if error is not None:
                reason = database_trouble(error)
                raise CheckLogLost(f"answered rows could not be written to the check log ({reason})") from error
        self._pending = still


def _settle(done: Future[None] | asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # a waiter that gave up (cancelled) needs nothing
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _settle_all(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for done in waiters:
        _settle(done, error)


def _block_rows(block: BatchBlock, digester: Digester) -> list[tuple[Any, ...]]:
    # A block's number digests at once, in C: one at a time they were most of the log's
    # work for a batch (docs/benchmarks.md §2).
    digests = number_digests(digester.key, digester.prefix.encode(), np.ascontiguousarray(block.numbers, np.int64))
    days = block.since_days.tolist()
    results = block.results.tolist()
    # A block asks about a few thousand distinct days at most: each is made a date once.
    epoch = EPOCH.toordinal()
    as_date = {d: EPOCH.fromordinal(epoch + d) for d in set(days)}
    pid, at, batch_id, correlator = block.platform_id, block.checked_at, block.batch_id, block.correlator
    return [
        (pid, digest, as_date[d], RESULT_NAMES[r], "batch", at, batch_id, correlator)
        for digest, d, r in zip(digests, days, results, strict=True)
    ]
