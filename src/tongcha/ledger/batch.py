"""Batch reassignment checks: CSV or NDJSON of ``number,since`` in, the same rows with
``result`` out, any size, block by block.

The clean common case is parsed, validated, looked up and written by Arrow and NumPy
without a Python loop per row; a block with anything odd in it (a malformed row, a
number in an unusual format) takes a row-by-row path for just that block's odd rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from tongcha.kit import jsonio
from tongcha.kit.errors import ApiError, InvalidArgument
from tongcha.kit.phone import mobile_prefix_table, parse_mobile
from tongcha.ledger.index import EPOCH, NONE_DAY, LedgerIndex

BLOCK_BYTES = 8 << 20
INVALID = 3
RESULTS = pa.array(["no_data", "no", "yes", "invalid"])
ERRORS = pa.array(
    [
        "",
        "number is not a mainland China mobile number",
        "since is not a date",
        "since is in the future",
        "row is malformed",
    ]
)
ERR_NONE, ERR_NUMBER, ERR_DATE, ERR_FUTURE, ERR_ROW = range(5)
CSV_HEADER = b"number,since,result,last_change_on,error\n"
_SAFE_JSON = r"^[0-9+ ()\-]*$"
_PLAIN_CSV = r"^[0-9A-Za-z+ ()\-:./_]*$"
# A line whose first character is not "{": Arrow's JSON reader crashes the process (a
# segfault, pyarrow 26) on a block that starts with a bare `null`, so any block with a
# line that is not an object takes the row-by-row path instead.
_NOT_AN_OBJECT_LINE = re.compile(rb"^[ \t\r]*[^{\n]", re.MULTILINE)


@dataclass
class BatchStats:
    rows: int = 0
    invalid: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"yes": 0, "no": 0, "no_data": 0})


@dataclass
class CheckedBlock:
    """What a block contributes to the audit log (valid rows only)."""

    numbers: npt.NDArray[np.int64]
    since_days: npt.NDArray[np.int32]
    results: npt.NDArray[np.uint8]


def split_blocks(chunks: Iterable[bytes], size: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Re-cut a byte stream into blocks of whole lines of about ``size`` bytes, the first
    without a byte order mark: Excel and Windows tools start UTF-8 files with one, and
    left on it hid a CSV header or spoilt the first JSON line."""
    for i, block in enumerate(whole_lines(chunks, size)):
        yield block.removeprefix(codecs.BOM_UTF8) if i == 0 else block


def whole_lines(chunks: Iterable[bytes], size: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Re-cut a byte stream into blocks of whole lines of about ``size`` bytes, each
    ending in a newline (one is put after the last line when it has none)."""
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        if len(pending) >= size:
            cut = pending.rfind(b"\n") + 1
            if cut:
                yield bytes(pending[:cut])
                del pending[:cut]
    if pending.strip():
        if not pending.endswith(b"\n"):
            pending += b"\n"
        yield bytes(pending)


class BatchChecker:
    def __init__(self, index: LedgerIndex, today: date, fmt: str) -> None:
        if fmt not in ("csv", "ndjson"):
            raise InvalidArgument("batch format must be csv or ndjson")
        self.index = index
        self.today_days = (today - EPOCH).days
        self.fmt = fmt
        self.stats = BatchStats()
        self.blocks: list[CheckedBlock] = []
        self._columns: list[str] | None = None

    # ----- public ---------------------------------------------------------------------

    def run(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for block in split_blocks(chunks):
            yield self.check_block(block)
        if self.fmt == "csv" and self._columns is None:
            # Nothing was sent (or blank lines only): the answer is still a CSV table,
            # with its header and no rows, as for a file that is a header alone.
            yield CSV_HEADER

    def check_block(self, block: bytes) -> bytes:
        if self.fmt == "csv":
            header, table = self._read_csv(block)
        else:
            header, table = b"", self._read_ndjson(block)
        number_raw = table.column("number")
        since_raw = table.column("since")
        numbers, err = self._numbers(number_raw)
        since_days, err = self._dates(since_raw, err)
        valid = err == ERR_NONE
        codes = np.full(len(numbers), INVALID, dtype=np.uint8)
        last = np.zeros(len(numbers), dtype=np.uint16)
        if valid.any():
            res, lc = self.index.answer_days(numbers[valid], since_days[valid])
            codes[valid] = res
            last[valid] = lc
            self.blocks.append(CheckedBlock(numbers[valid], since_days[valid], res))
        self._count(codes)
        if self.fmt == "csv":
            return header + self._write_csv(table, codes, last, err)
        return self._write_ndjson(number_raw, since_raw, codes, last, err)

    # ----- parsing --------------------------------------------------------------------

    def _read_csv(self, block: bytes) -> tuple[bytes, pa.Table]:
        header = b""
        if self._columns is None:
            first_line, _, rest = block.partition(b"\n")
            header_text = first_line.decode("utf-8", "replace").strip("\r")
            names = [c.strip().strip('"').strip().lower() for c in header_text.split(",")]
            if "number" in names and "since" in names:
                self._columns = _column_names(names)
                header = first_line.rstrip(b"\r") + b",result,last_change_on,error\n"
                block = rest
            else:
                self._columns = ["number", "since"]
                header = CSV_HEADER
        columns = self._columns
        try:
            return header, pacsv.read_csv(
                io.BytesIO(block),
                read_options=pacsv.ReadOptions(column_names=columns, use_threads=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in columns},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid:
            return header, self._read_csv_rows(block, columns)

    def _read_csv_rows(self, block: bytes, columns: list[str]) -> pa.Table:
        """The slow path for a block Arrow refused: keep every row, mark the bad ones."""
        values: dict[str, list[str | None]] = {c: [] for c in columns}
        # newline="": a bare CR ends a row, as it does for Arrow, instead of stopping the reader.
        reader = csv.reader(io.StringIO(block.decode("utf-8", "replace"), newline=""))
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                # A field over the csv module's limit (an unclosed quote runs on until it
                # is one) broke the answer off mid-stream; the reader skips the rest of
                # that line, which is one malformed row.
                row = []
                good = False
            else:
                if not row:
                    continue
                good = len(row) == len(columns)
            for i, c in enumerate(columns):
                values[c].append(row[i] if good else None)
        return pa.table({c: pa.array(v, type=pa.string()) for c, v in values.items()})

    def _read_ndjson(self, block: bytes) -> pa.Table:
        schema = pa.schema([("number", pa.string()), ("since", pa.string())])
        if _NOT_AN_OBJECT_LINE.search(block) is None:
            try:
                return pajson.read_json(
                    io.BytesIO(block),
                    parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
                )
            except pa.ArrowInvalid:
                pass
        numbers: list[str | None] = []
        since: list[str | None] = []
        for line in block.splitlines():
            if not line.strip():
                continue
            try:
                obj = jsonio.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict) and isinstance(obj.get("since"), str):
                n = obj.get("number")
                # A lone surrogate ("\ud800") is no UTF-8 that Arrow can hold: read as
                # U+FFFD, as a CSV's bytes that are not UTF-8 are, and refused as such.
                numbers.append(
                    jsonio.replace_lone_surrogates(str(n))
                    if isinstance(n, str | int) and not isinstance(n, bool)
                    else None
                )
                since.append(jsonio.replace_lone_surrogates(obj["since"]))
            else:
                numbers.append(None)
                since.append(None)
        return pa.table({"number": pa.array(numbers, pa.string()), "since": pa.array(since, pa.string())})

    # ----- validating -----------------------------------------------------------------

    def _numbers(self, raw: pa.ChunkedArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        n = len(raw)
        err = np.where(raw.is_null().to_numpy(zero_copy_only=False), ERR_ROW, ERR_NONE).astype(np.uint8)
        # Fast path: 11 digits, or +86 and 11 digits; checked and converted by Arrow.
        length = pc.fill_null(pc.binary_length(raw), 0).to_numpy(zero_copy_only=False)
        tail = pc.utf8_slice_codeunits(raw, -11)
        shaped = pc.fill_null(pc.ascii_is_decimal(tail), False).to_numpy(zero_copy_only=False)
        plus86 = pc.fill_null(pc.starts_with(raw, "+86"), False).to_numpy(zero_copy_only=False)
        fast = shaped & ((length == 11) | ((length == 14) & plus86))
        numbers = np.zeros(n, dtype=np.int64)
        if fast.any():
            numbers[fast] = pc.cast(pc.filter(tail, pa.array(fast)), pa.int64()).to_numpy(zero_copy_only=False)
            prefix = np.clip(numbers // 100_000, 0, 199_999)
            err = np.where(fast & ~mobile_prefix_table()[prefix], ERR_NUMBER, err).astype(np.uint8)
        slow = np.flatnonzero(~fast & (err == ERR_NONE))
        if len(slow):
            values = raw.take(pa.array(slow)).to_pylist()
            for i, value in zip(slow.tolist(), values, strict=True):
                try:
                    # As sent, not stripped: a tab or a newline is refused here as in a single check.
                    numbers[i] = parse_mobile(value)
                except ApiError:
                    err[i] = ERR_NUMBER
        return numbers, err

    def _dates(
        self, raw: pa.ChunkedArray, err: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
        try:
            days_arr = pc.cast(raw, pa.date32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed = pc.strptime(pc.utf8_trim_whitespace(raw), format="%Y-%m-%d", unit="s", error_is_null=True)
            days_arr = pc.cast(parsed, pa.date32())
        missing = days_arr.is_null().to_numpy(zero_copy_only=False)
        days = pc.fill_null(pc.cast(days_arr, pa.int32()), 0).to_numpy(zero_copy_only=False).astype(np.int32)
        err = np.where((err == ERR_NONE) & missing, ERR_DATE, err).astype(np.uint8)
        err = np.where((err == ERR_NONE) & (days > self.today_days), ERR_FUTURE, err).astype(np.uint8)
        # Days before the index's epoch can never fall inside a tenure: clamp them.
        return np.maximum(days, NONE_DAY).astype(np.int32), err

    def _count(self, codes: npt.NDArray[np.uint8]) -> None:
        tally = np.bincount(codes, minlength=4)
        self.stats.rows += int(tally.sum())
        self.stats.invalid += int(tally[INVALID])
        for code, name in enumerate(("no_data", "no", "yes")):
            self.stats.counts[name] += int(tally[code])

    # ----- writing --------------------------------------------------------------------

    @staticmethod
    def _last_change(last: npt.NDArray[np.uint16]) -> pa.Array:
        return pa.array(last.astype(np.int32), mask=last == NONE_DAY).cast(pa.date32())

    def _write_csv(
        self, table: pa.Table, codes: npt.NDArray[np.uint8], last: npt.NDArray[np.uint16], err: npt.NDArray[np.uint8]
    ) -> bytes:
        out = table.append_column("result", RESULTS.take(pa.array(codes)))
        out = out.append_column("last_change_on", self._last_change(last))
        out = out.append_column("error", ERRORS.take(pa.array(err)))
        sink = io.BytesIO()
        # Echoed input is the only free text; quote only when some of it needs quoting.
        plain = all(
            pc.all(pc.fill_null(pc.match_substring_regex(table.column(c), _PLAIN_CSV), True)).as_py()
            for c in table.column_names
        )
        style = "none" if plain else "needed"
        pacsv.write_csv(out, sink, write_options=pacsv.WriteOptions(include_header=False, quoting_style=style))
        return sink.getvalue()

    def _write_ndjson(
        self,
        number_raw: pa.ChunkedArray,
        since_raw: pa.ChunkedArray,
        codes: npt.NDArray[np.uint8],
        last: npt.NDArray[np.uint16],
        err: npt.NDArray[np.uint8],
    ) -> bytes:
        number_json = _json_strings(number_raw)
        since_json = _json_strings(since_raw)
        last_text = pc.fill_null(
            pc.binary_join_element_wise('"', pc.cast(self._last_change(last), pa.string()), '"', ""), "null"
        )
        error_text = pc.if_else(
            pa.array(err == ERR_NONE),
            "",
            pc.binary_join_element_wise(',"error":"', ERRORS.take(pa.array(err)), '"', ""),
        )
        lines = pc.binary_join_element_wise(
            '{"number":',
            number_json,
            ',"since":',
            since_json,
            ',"result":"',
            RESULTS.take(pa.array(codes)),
            '","last_change_on":',
            last_text,
            error_text,
            "}\n",
            "",
        )
        return b"".join(buf.to_pybytes() for buf in _string_data(lines))


def _column_names(header: list[str]) -> list[str]:
    """Unique names for the header's columns: the first ``number`` and ``since`` keep
    theirs, every other column is named by its position (only the two are read, and
    the header line itself is echoed as sent), so a repeated name cannot clash."""
    names: list[str] = []
    for i, name in enumerate(header):
        names.append(name if name in ("number", "since") and name not in names else str(i))
    return names


def _json_strings(values: pa.ChunkedArray) -> pa.Array:
    """Each value as a JSON string literal (or null), vectorised for the safe common case."""
    combined = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    safe = pc.fill_null(pc.match_substring_regex(combined, _SAFE_JSON), False)
    quoted = pc.binary_join_element_wise('"', combined, '"', "")
    if pc.all(safe).as_py():
        return pc.fill_null(quoted, "null")
    slow = [orjson.dumps(v).decode() for v in combined.to_pylist()]
    return pa.array(slow, pa.string())


def _string_data(lines: pa.Array | pa.ChunkedArray) -> Iterator[pa.Buffer]:
    chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        offsets = chunk.buffers()[1]
        data = chunk.buffers()[2]
        start = np.frombuffer(offsets, dtype=np.int32)[chunk.offset]
        end = np.frombuffer(offsets, dtype=np.int32)[chunk.offset + len(chunk)]
        yield data.slice(int(start), int(end - start))
