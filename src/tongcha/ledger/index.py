"""The compact in-memory index behind every reassignment check.

Per number it keeps three days (first known, open since, last change) as 16-bit day
counts and the number itself as 32 low bits under a bucket directory: about 10 to 12
bytes a number. Lookups are vectorised with NumPy, so a million checks cost one pass of
array operations rather than a million Python calls. The index follows the ledger by
revision: changes since the last load sit in a small overlay until they are merged.
"""

from __future__ import annotations

import bisect
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from tongcha.kit.db import is_postgres
from tongcha.ledger import repository as repo

EPOCH = date(1970, 1, 1)
NONE_DAY = 0  # 1970-01-01 can never be a tenure day (events before 1980 are refused)
NUMBER_BASE = 10_000_000_000  # every mainland mobile number is 1xxxxxxxxxx

RESULT_NO_DATA, RESULT_NO, RESULT_YES = 0, 1, 2
RESULT_NAMES = ("no_data", "no", "yes")

I64 = npt.NDArray[np.int64]
U16 = npt.NDArray[np.uint16]


def to_day(value: date | None) -> int:
    return NONE_DAY if value is None else (value - EPOCH).days


def from_day(value: int) -> date | None:
    return None if value == NONE_DAY else EPOCH + timedelta(days=int(value))


@dataclass(frozen=True)
class Snapshot:
    """An immutable sorted index of numbers with their three days."""

    base: int
    shift: int
    directory: npt.NDArray[np.uint32]
    low: npt.NDArray[np.uint32]
    first: U16
    open_since: U16
    last: U16
    steps: int

    @classmethod
    def build(cls, numbers: I64, first: U16, open_since: U16, last: U16) -> Snapshot:
        """Build from parallel arrays; ``numbers`` need not be sorted but must be unique."""
        if len(numbers) > 1 and not bool(np.all(numbers[1:] > numbers[:-1])):
            order = np.argsort(numbers, kind="stable")
            numbers, first, open_since, last = numbers[order], first[order], open_since[order], last[order]
        keys = numbers.astype(np.int64) - NUMBER_BASE
        base = int(keys[0]) if len(keys) else 0
        span = int(keys[-1]) - base + 1 if len(keys) else 1
        # About two numbers a bucket: the directory costs 2 bytes a number and a lookup
        # needs a couple of steps of binary search inside its bucket.
        target_buckets = max(1, len(keys) // 2)
        shift = max(0, int(np.ceil(np.log2(max(1, span / target_buckets)))))
        shift = min(shift, 31)
        buckets = (keys - base) >> shift
        nbuckets = int(buckets[-1]) + 1 if len(keys) else 1
        directory = np.searchsorted(buckets, np.arange(nbuckets + 1, dtype=np.int64)).astype(np.uint32)
        sizes = np.diff(directory)
        biggest = int(sizes.max()) if len(sizes) else 0
        steps = int(np.ceil(np.log2(biggest + 1))) if biggest else 0
        return cls(
            base=base,
            shift=shift,
            directory=directory,
            # Buckets are aligned to 2**shift <= 2**31, so inside one bucket the low 32
            # bits of the offset from ``base`` order the numbers exactly.
            low=((keys - base) & 0xFFFFFFFF).astype(np.uint32),
            first=np.ascontiguousarray(first, dtype=np.uint16),
            open_since=np.ascontiguousarray(open_since, dtype=np.uint16),
            last=np.ascontiguousarray(last, dtype=np.uint16),
            steps=steps,
        )

    @classmethod
    def empty(cls) -> Snapshot:
        z64 = np.zeros(0, dtype=np.int64)
        z16 = np.zeros(0, dtype=np.uint16)
        return cls.build(z64, z16, z16, z16)

    def __len__(self) -> int:
        return len(self.low)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.directory, self.low, self.first, self.open_since, self.last))

    def numbers(self) -> I64:
        bucket = np.repeat(np.arange(len(self.directory) - 1, dtype=np.int64), np.diff(self.directory).astype(np.int64))
        high = ((bucket << self.shift) >> 32) << 32
        return high + self.low.astype(np.int64) + self.base + NUMBER_BASE

    def position(self, number: int) -> int:
        """Row of one number, or -1: the single-check path, without array set-up."""
        key = number - NUMBER_BASE - self.base
        if key < 0 or not len(self.low):
            return -1
        bucket = key >> self.shift
        if bucket >= len(self.directory) - 1:
            return -1
        lo, hi = int(self.directory[bucket]), int(self.directory[bucket + 1])
        want = key & 0xFFFFFFFF
        at = lo + bisect.bisect_left(self.low[lo:hi], want)
        return at if at < hi and int(self.low[at]) == want else -1

    def positions(self, numbers: I64) -> I64:
        """Row of each number in the index, or -1."""
        if len(self.low) == 0:
            return np.full(len(numbers), -1, dtype=np.int64)
        keys = numbers.astype(np.int64) - NUMBER_BASE - self.base
        nb = len(self.directory) - 1
        bucket = keys >> self.shift
        inside = (keys >= 0) & (bucket < nb)
        bucket = np.where(inside, bucket, 0)
        lo = self.directory[bucket].astype(np.int64)
        end = np.where(inside, self.directory[bucket + 1].astype(np.int64), lo)
        hi = end.copy()
        want = (keys & 0xFFFFFFFF).astype(np.uint32)
        top = len(self.low) - 1
        for _ in range(self.steps):
            mid = (lo + hi) >> 1
            below = self.low[np.minimum(mid, top)] < want
            active = lo < hi
            lo = np.where(active & below, mid + 1, lo)
            hi = np.where(active & ~below, mid, hi)
        found = (lo < end) & (self.low[np.minimum(lo, top)] == want)
        return np.where(found, lo, -1)


class LedgerIndex:
    """A snapshot plus an overlay of changes, kept fresh from the ledger by revision."""

    def __init__(self, snapshot: Snapshot | None = None, revision: int = 0, merge_at: int = 1_000_000) -> None:
        self.snapshot = snapshot or Snapshot.empty()
        self.revision = revision
        self._overlay: dict[int, tuple[int, int, int]] = {}
        self._overlay_arrays: tuple[I64, U16, U16, U16] | None = None
        self._lock = threading.Lock()
        # One refresh at a time: one that read the ledger before another must not apply
        # what it read after the other's newer rows, under the other's revision.
        self._refreshing = threading.Lock()
        self._merge_at = merge_at
        self.refreshed_at = 0.0

    def __len__(self) -> int:
        """How many numbers the index knows (a number in both snapshot and overlay counts once)."""
        with self._lock:
            snap = self.snapshot
            overlay = self._overlay_view() if self._overlay else None
        if overlay is None:
            return len(snap)
        return len(snap) + int(np.count_nonzero(snap.positions(overlay[0]) < 0))

    # ----- keeping fresh --------------------------------------------------------------

    def apply(self, rows: Sequence[tuple[int, date, date | None, date]], revision: int) -> None:
        with self._lock:
            for number, first, open_since, last in rows:
                self._overlay[number] = (to_day(first), to_day(open_since), to_day(last))
            self._overlay_arrays = None
            self.revision = max(self.revision, revision)
            if len(self._overlay) >= self._merge_at:
                self._merge()

    def refresh(self, session: Session, settled: int | None = None) -> int:
        """Pull what changed since our revision; returns how many numbers changed.

        Stamped before the query: checks arriving meanwhile answer from the index as it is
        instead of each starting (or queueing behind) a refresh of their own.

        ``settled`` is a revision every revision below which has committed: one a writer
        of the whole ledger committed (no other writer was in flight while it held it).
        The index then reads up to it without waiting for the writers in flight since."""
        self.refreshed_at = time.monotonic()
        with self._refreshing:
            if settled is None:
                # Nothing newer has committed: no need to wait for the writers in flight,
                # whose revisions are all above ours (ours was settled).
                if repo.latest_revision(session) <= self.revision:
                    return 0
                settled = repo.settled_revision(session)
            elif settled <= self.revision:
                return 0
            rows = repo.number_summaries_since(session, self.revision)
            self.apply(rows, settled)
            return len(rows)

    def _merge(self) -> None:
        numbers, first, open_since, last = self._overlay_view()
        snap = self.snapshot
        old = snap.numbers()
        keep = ~np.isin(old, numbers, assume_unique=True)
        self.snapshot = Snapshot.build(
            np.concatenate([old[keep], numbers]),
            np.concatenate([snap.first[keep], first]),
            np.concatenate([snap.open_since[keep], open_since]),
            np.concatenate([snap.last[keep], last]),
        )
        self._overlay = {}
        self._overlay_arrays = None

    def _overlay_view(self) -> tuple[I64, U16, U16, U16]:
        arrays = self._overlay_arrays
        if arrays is None:
            items = sorted(self._overlay.items())
            numbers = np.fromiter((k for k, _ in items), dtype=np.int64, count=len(items))
            days = np.array([v for _, v in items], dtype=np.uint16).reshape(-1, 3)
            arrays = (numbers, days[:, 0].copy(), days[:, 1].copy(), days[:, 2].copy())
            self._overlay_arrays = arrays
        return arrays

    # ----- answering ----------------------------------------------------------------

    def days(self, numbers: I64) -> tuple[U16, U16, U16]:
        """(first known, open since, last change) day counts per number; 0 where unknown."""
        with self._lock:
            snap = self.snapshot
            overlay = self._overlay_view() if self._overlay else None
        pos = snap.positions(numbers)
        hit = pos >= 0
        safe = np.where(hit, pos, 0)
        if len(snap):
            first = np.where(hit, snap.first[safe], 0).astype(np.uint16)
            open_since = np.where(hit, snap.open_since[safe], 0).astype(np.uint16)
            last = np.where(hit, snap.last[safe], 0).astype(np.uint16)
        else:
            first = np.zeros(len(numbers), np.uint16)
            open_since, last = first.copy(), first.copy()
        if overlay is not None:
            o_numbers, o_first, o_open, o_last = overlay
            at = np.searchsorted(o_numbers, numbers)
            at_safe = np.minimum(at, len(o_numbers) - 1)
            in_overlay = o_numbers[at_safe] == numbers
            first = np.where(in_overlay, o_first[at_safe], first)
            open_since = np.where(in_overlay, o_open[at_safe], open_since)
            last = np.where(in_overlay, o_last[at_safe], last)
        return first, open_since, last

    def answer_days(self, numbers: I64, since: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.uint8], U16]:
        """Vectorised ``service.answer``: result codes (RESULT_*) and last-change days."""
        first, open_since, last = self.days(numbers)
        known = (first != NONE_DAY) & (since >= first)
        current = known & (open_since != NONE_DAY) & (open_since <= since)
        result = np.where(known, np.where(current, RESULT_NO, RESULT_YES), RESULT_NO_DATA).astype(np.uint8)
        return result, np.where(known, last, NONE_DAY).astype(np.uint16)

    def lookup(self, number: int) -> tuple[date | None, date | None, date | None]:
        with self._lock:
            hit = self._overlay.get(number)
        if hit is None:
            pos = self.snapshot.position(number)
            if pos < 0:
                return (None, None, None)
            snap = self.snapshot
            hit = (int(snap.first[pos]), int(snap.open_since[pos]), int(snap.last[pos]))
        return (from_day(hit[0]), from_day(hit[1]), from_day(hit[2]))


# ----- loading from the ledger -------------------------------------------------------

_RANGES = 16


def load(engine: Engine) -> LedgerIndex:
    """Build the index from the ledger's number summaries, in number ranges."""
    with Session(engine) as session:
        # Everything up to this revision is in what is read next (and perhaps more, which
        # the next refresh reads again).
        revision = repo.settled_revision(session)
        if is_postgres(session):
            arrays = _load_postgres(session)
        else:
            arrays = _load_generic(session)
    numbers, first, open_since, last = arrays
    return LedgerIndex(Snapshot.build(numbers, first, open_since, last), revision)


_PG_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l1", ">i4"),
        ("number", ">i8"),
        ("l2", ">i4"),
        ("first", ">i4"),
        ("l3", ">i4"),
        ("open", ">i4"),
        ("l4", ">i4"),
        ("last", ">i4"),
    ]
)
_PG_HEADER = 11 + 4 + 4


def _load_postgres(session: Session) -> tuple[I64, U16, U16, U16]:
    raw = session.connection().connection.driver_connection
    parts: list[tuple[I64, U16, U16, U16]] = []
    step = (2 * NUMBER_BASE - NUMBER_BASE) // _RANGES
    for i in range(_RANGES):
        lo, hi = NUMBER_BASE + i * step, NUMBER_BASE + (i + 1) * step
        sql = (
            "COPY (SELECT number, first_known_on - DATE '1970-01-01', "
            "COALESCE(open_since - DATE '1970-01-01', 0), last_change_on - DATE '1970-01-01' "
            f"FROM ledger_numbers WHERE number >= {lo} AND number < {hi}) TO STDOUT (FORMAT binary)"
        )
        buf = bytearray()
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
            for block in copy:
                buf += block
        (ext,) = struct.unpack(">i", buf[15:19])
        body = memoryview(buf)[_PG_HEADER + ext : len(buf) - 2]
        rows = np.frombuffer(body, dtype=_PG_ROW)
        order = np.argsort(rows["number"], kind="stable")
        rows = rows[order]
        parts.append(
            (
                rows["number"].astype(np.int64),
                rows["first"].astype(np.uint16),
                rows["open"].astype(np.uint16),
                rows["last"].astype(np.uint16),
            )
        )
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))  # type: ignore[return-value]


def _load_generic(session: Session) -> tuple[I64, U16, U16, U16]:
    result = session.execute(
        text("SELECT number, first_known_on, open_since, last_change_on FROM ledger_numbers ORDER BY number")
    )
    numbers: list[int] = []
    first: list[int] = []
    open_since: list[int] = []
    last: list[int] = []
    for number, f, o, lc in result:
        numbers.append(number)
        first.append(to_day(_as_date(f)))
        open_since.append(to_day(_as_date(o)))
        last.append(to_day(_as_date(lc)))
    return (
        np.array(numbers, dtype=np.int64),
        np.array(first, dtype=np.uint16),
        np.array(open_since, dtype=np.uint16),
        np.array(last, dtype=np.uint16),
    )


def _as_date(value: object) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
