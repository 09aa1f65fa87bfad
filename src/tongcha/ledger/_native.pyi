from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tongcha.ledger.replay import Event, EventType

def kind_names() -> tuple[str, ...]: ...

class FastLine:
    def __init__(
        self,
        *,
        event_type: type[Event],
        kinds: tuple[EventType, ...],
        carrier_id: int,
        key: bytes,
        prefix: bytes,
        mobile: bytes,
        earliest_us: int,
        latest_us: int,
        steady_since_us: int,
        offset_us: int,
        today: tuple[int, int, int],
    ) -> None: ...
    def __call__(self, line: bytes, arrival: int, /) -> Event | None: ...
    def fields(self, event: dict[str, Any], arrival: int, /) -> Event | None: ...
    def csv(self, line: bytes, shape: tuple[dict[str, int], int, tuple[int, ...]], arrival: int, /) -> Event | None: ...
    def many(
        self, items: list[Any], start: int, arrival: int, seen: set[str], events: list[Event], /
    ) -> tuple[int, int]: ...

def number_digests(key: bytes, prefix: bytes, numbers: npt.NDArray[np.int64] | bytes, /) -> list[str]: ...
def copy_rows(rows: Sequence[object], columns: Sequence[tuple[str, object]], /) -> bytes: ...
def line_jobs(
    block: bytes,
    jobs: int,
    partitions: int,
    job: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    /,
) -> int: ...
def csv_line_jobs(
    block: bytes,
    column: int,
    width: int,
    jobs: int,
    partitions: int,
    job: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    /,
) -> int: ...
def csv_simple(block: bytes, /) -> bool: ...
