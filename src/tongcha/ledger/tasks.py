"""The check log writer: every reassignment check lands in the append-only log.

Single checks wait for their record to be written (group commit: whatever arrived while
the previous write ran goes in the next one). Batch checks hand their rows over in
blocks and do not wait; their digests are computed here, off the answering path.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit.digests import Digester
from tongcha.ledger import repository as repo
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


@dataclass(slots=True)
class BatchBlock:
    platform_id: int | None
    batch_id: int
    checked_at: datetime
    numbers: npt.NDArray[np.int64]
    since_days: npt.NDArray[np.int32]
    results: npt.NDArray[np.uint8]


Item = tuple[CheckRecord | BatchBlock, "Future[None] | None"]


class CheckLog:
    """A writer thread with a queue; ``close`` drains it."""

    def __init__(self, sessions: sessionmaker[Session], digester: Digester) -> None:
        self._sessions = sessions
        self._digester = digester
        self._queue: queue.Queue[Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tongcha-checklog", daemon=True)
        self._thread.start()

    def record(self, rec: CheckRecord) -> Future[None]:
        done: Future[None] = Future()
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
        self._queue.put((_Barrier(), done))  # type: ignore[arg-type]
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
                    )
                )
            elif isinstance(item, BatchBlock):
                rows.extend(_block_rows(item, digest))
        error: BaseException | None = None
        try:
            if rows:
                with self._sessions() as session, session.begin():
                    repo.add_checks(session, rows)
        except Exception as exc:  # reported to every waiter; the writer keeps running
            log.exception("could not write %d check records", len(rows))
            error = exc
        for _, done in items:
            if done is not None and not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)


class _Barrier:
    pass


def _block_rows(block: BatchBlock, digest: Callable[[int], str]) -> list[tuple[Any, ...]]:
    numbers = block.numbers.tolist()
    days = block.since_days.tolist()
    results = block.results.tolist()
    return [
        (
            block.platform_id,
            digest(n),
            EPOCH.fromordinal(EPOCH.toordinal() + d),
            RESULT_NAMES[r],
            "batch",
            block.checked_at,
            block.batch_id,
        )
        for n, d, r in zip(numbers, days, results, strict=True)
    ]
