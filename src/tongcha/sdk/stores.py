"""Where the platform SDK remembers tasks and token ids.

Two memories make the hub's calls safe to retry and impossible to replay:

- **tasks**: the first answer to each ``task_id`` (status and body), so the same task
  sent again gets the same answer without the handler acting twice;
- **token ids** (``jti``): every signature seen, until it expires, so a captured request
  cannot be sent again.

``MemoryTaskStore`` keeps them in the process (fine for one process that may forget on
restart); ``SqliteTaskStore`` keeps them in a SQLite file, so they survive a restart and
can be shared by several worker processes on one machine. Anything else (Redis,
PostgreSQL) only has to follow the ``TaskStore`` protocol.
"""

from __future__ import annotations

import heapq
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

# A finished task is kept this long: the hub retries a task for days (its due time is
# counted in working days), never for a month.
DEFAULT_TASK_RETENTION_SECONDS = 30 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The HTTP answer given to a task: repeated as is when the task comes again."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """What a store knows of a task someone else claimed first."""

    fingerprint: str
    # None while the task is still running (in this process or another).
    answer: StoredAnswer | None


@runtime_checkable
class TaskStore(Protocol):
    """The SDK's memory of tasks and token ids. Methods are async so that a store may
    talk to a server; the stores here answer from local memory or a local file."""

    async def claim(self, task_id: str, fingerprint: str, *, now: float, lease_seconds: float) -> TaskRecord | None:
        """Take ``task_id`` for running and return None, or return the record in the way:
        a finished task (with its answer) or one still running. A running claim older
        than ``lease_seconds`` was left by a process that died, and is taken over when
        its fingerprint matches."""
        ...

    async def finish(self, task_id: str, answer: StoredAnswer) -> None:
        """Record the answer of a task this caller claimed."""
        ...

    async def release(self, task_id: str) -> None:
        """Forget an unfinished claim (the handler failed), so a retry runs it again."""
        ...

    async def first_use_of_jti(self, jti: str, *, expires_at: float, now: float) -> bool:
        """True the first time a token id is seen before it expires; False for a replay."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Task:
    fingerprint: str
    claimed_at: float
    answer: StoredAnswer | None


class MemoryTaskStore:
    """Tasks and token ids in this process's memory; forgotten on restart.

    At most ``max_tasks`` tasks are kept, the oldest forgotten first.
    """

    def __init__(
        self, *, max_tasks: int = 1_000_000, task_retention_seconds: float = DEFAULT_TASK_RETENTION_SECONDS
    ) -> None:
        self._tasks: OrderedDict[str, _Task] = OrderedDict()
        self._max_tasks = max_tasks
        self._retention = task_retention_seconds
        self._jtis: dict[str, float] = {}
        # Token ids by expiry, so expired ones are dropped in order as time passes.
        self._expiries: list[tuple[float, str]] = []

    async def claim(self, task_id: str, fingerprint: str, *, now: float, lease_seconds: float) -> TaskRecord | None:
        task = self._tasks.get(task_id)
        if task is not None and task.claimed_at + self._retention < now:
            task = None
        stale = task is not None and task.answer is None and task.claimed_at + lease_seconds < now
        if task is None or (stale and task.fingerprint == fingerprint):
            self._tasks[task_id] = _Task(fingerprint, now, None)
            self._tasks.move_to_end(task_id)
            while len(self._tasks) > self._max_tasks:
                self._tasks.popitem(last=False)
            return None
        return TaskRecord(task.fingerprint, task.answer)

    async def finish(self, task_id: str, answer: StoredAnswer) -> None:
        task = self._tasks.get(task_id)
        if task is not None:
            task.answer = answer

    async def release(self, task_id: str) -> None:
        task = self._tasks.get(task_id)
        if task is not None and task.answer is None:
            del self._tasks[task_id]

    async def first_use_of_jti(self, jti: str, *, expires_at: float, now: float) -> bool:
        while self._expiries and self._expiries[0][0] < now:
            expired_at, old = heapq.heappop(self._expiries)
            if self._jtis.get(old) == expired_at:
                del self._jtis[old]
        # Whatever is left has not expired.
        if jti in self._jtis:
            return False
        self._jtis[jti] = expires_at
        heapq.heappush(self._expiries, (expires_at, jti))
        return True

    def close(self) -> None:
        self._tasks.clear()
        self._jtis.clear()
        self._expiries.clear()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tongcha_tasks (
    task_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    status INTEGER,
    body BLOB
);
CREATE TABLE IF NOT EXISTS tongcha_jtis (
    jti TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tongcha_jtis_expires_at ON tongcha_jtis (expires_at);
CREATE INDEX IF NOT EXISTS tongcha_tasks_claimed_at ON tongcha_tasks (claimed_at);
"""


class SqliteTaskStore:
    """Tasks and token ids in a SQLite file: they survive a restart, and several worker
    processes on one machine may share the file.

    Calls run on the caller's thread: each is one short local transaction (WAL, no
    fsync per commit), cheaper than handing it to another thread. A power cut may lose
    the last moments; a process crash loses nothing.
    """

    # Expired token ids and old tasks are swept after this many new token ids.
    _SWEEP_EVERY = 1000

    def __init__(self, path: str | Path, *, task_retention_seconds: float = DEFAULT_TASK_RETENTION_SECONDS) -> None:
        self.path = Path(path)
        self._retention = task_retention_seconds
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._since_sweep = 0

    async def claim(self, task_id: str, fingerprint: str, *, now: float, lease_seconds: float) -> TaskRecord | None:
        with self._lock:
            # IMMEDIATE: the read and the insert below are one step for every process.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT fingerprint, claimed_at, status, body FROM tongcha_tasks WHERE task_id = ?", (task_id,)
                ).fetchone()
                if row is not None and row[1] + self._retention < now:
                    row = None
                if row is None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO tongcha_tasks (task_id, fingerprint, claimed_at) VALUES (?, ?, ?)",
                        (task_id, fingerprint, now),
                    )
                    record = None
                elif row[2] is None and row[1] + lease_seconds < now and row[0] == fingerprint:
                    self._db.execute("UPDATE tongcha_tasks SET claimed_at = ? WHERE task_id = ?", (now, task_id))
                    record = None
                else:
                    answer = None if row[2] is None else StoredAnswer(int(row[2]), bytes(row[3]))
                    record = TaskRecord(str(row[0]), answer)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return record

    async def finish(self, task_id: str, answer: StoredAnswer) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE tongcha_tasks SET status = ?, body = ? WHERE task_id = ?", (answer.status, answer.body, task_id)
            )

    async def release(self, task_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tongcha_tasks WHERE task_id = ? AND status IS NULL", (task_id,))

    async def first_use_of_jti(self, jti: str, *, expires_at: float, now: float) -> bool:
        with self._lock:
            # A row that has expired may be reused; a live one makes this a replay.
            cursor = self._db.execute(
                "INSERT INTO tongcha_jtis (jti, expires_at) VALUES (?, ?) "
                "ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE tongcha_jtis.expires_at < ?",
                (jti, expires_at, now),
            )
            fresh = cursor.rowcount == 1
            self._since_sweep += 1
            if self._since_sweep >= self._SWEEP_EVERY:
                self._since_sweep = 0
                self._db.execute("DELETE FROM tongcha_jtis WHERE expires_at < ?", (now,))
                self._db.execute("DELETE FROM tongcha_tasks WHERE claimed_at < ?", (now - self._retention,))
        return fresh

    def close(self) -> None:
        with self._lock:
            self._db.close()
