"""Read units of input into checked blocks: the good rows' ids, kept columns and texts, and the bad rows.

A unit is read in one pass: parquet row groups stream through ``iter_batches`` with a bounded buffer (a
1M-row group never sits in memory whole) and are cut into blocks at their planned rows; a .jsonl/.txt block is
its planned byte range. Bad rows are found here, before a block travels to a worker, so that what travels is
always valid UTF-8 text with a usable id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedrt.corpus import records
from embedrt.corpus.records import MISSING, RecordError
from embedrt.corpus.sources import Block, ReadUnit, SourceKind
from embedrt.corpus.spec import JobSpec, OnBadRow
from embedrt.corpus.storage import import_pyarrow
from embedrt.tokenizers import check_texts

if TYPE_CHECKING:
    import pyarrow as pa

# Bytes per read of a parquet column chunk: pages stream through this buffer instead of a whole chunk (hundreds
# of MB for a 1M-row group of long texts) being read at once; on S3 each read is one ranged GET.
STREAM_BUFFER = 1 << 23
MAX_BATCH_ROWS = 8192  # rows per decoded parquet batch; blocks are cut from batches, whatever their size
_SKIP_HINT = "fix the input or pass --on-bad-row skip to skip such rows and list them in the manifest"


@dataclass(frozen=True)
class SkippedRow:
    """A row left out under ``--on-bad-row skip``: its id (None when unknown), file row and .jsonl/.txt line."""

    id: Any
    reason: str
    row: int | None = None  # 0-based row of the input file
    line: int | None = None  # 1-based line, for .jsonl and .txt inputs

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SkippedRow:
        """Inverse of ``dataclasses.asdict`` (records of older parts have no row or line)."""
        return cls(data["id"], data["reason"], data.get("row"), data.get("line"))


@dataclass(frozen=True)
class BlockRows:
    """One block, read and checked: what its part will hold and which rows it leaves out."""

    block: Block
    columns: pa.Table  # the id column, then the kept columns: good rows only, in input order
    texts: list[str]  # the good rows' texts
    skipped: tuple[SkippedRow, ...]


@dataclass(frozen=True)
class _Problem:
    index: int  # row in the block
    reason: str  # as listed in the manifest
    message: str  # as raised under --on-bad-row fail
    error: type[Exception]


def read_unit(unit: ReadUnit, spec: JobSpec, fs: Any) -> Iterator[BlockRows]:
    """The unit's blocks, in order, read from ``fs`` (the input's pyarrow filesystem).

    Raises:
        ValueError, TypeError: a bad row under ``on_bad_row`` fail (the message names the file, row or line,
            id and reason), or a file that changed since the job was planned.

    """
    _check_unchanged(unit, fs)
    if unit.kind is SourceKind.PARQUET:
        for block, table in _parquet_blocks(unit, spec, fs):
            yield _checked(block, table, table.column(spec.text_column).to_pylist(), [], spec)
        return
    with fs.open_input_file(unit.path) as handle:
        for block in unit.blocks:
            data = bytes(handle.read_at(block.byte_end - block.byte_start, block.byte_start))
            lines = data.split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()  # the newline that ends the last line does not start another
            if len(lines) != block.rows:
                raise ValueError(
                    f"{block.source} changed since the job was planned: {len(lines)} lines where {block.rows} "
                    f"were at line {block.start + 1}"
                )
            if unit.kind is SourceKind.TXT:
                yield _txt_block(block, lines, spec)
            else:
                yield _jsonl_block(block, lines, spec)


def _check_unchanged(unit: ReadUnit, fs: Any) -> None:
    info = fs.get_file_info(unit.path)
    if (info.size, info.mtime_ns) != (unit.size, unit.mtime_ns):
        raise ValueError(
            f"{unit.source} changed while the job ran (size {unit.size} -> {info.size} bytes, mtime_ns "
            f"{unit.mtime_ns} -> {info.mtime_ns}); run the job again: the changed file is then refused, or "
            "re-embedded with --overwrite"
        )


def _parquet_blocks(unit: ReadUnit, spec: JobSpec, fs: Any) -> Iterator[tuple[Block, pa.Table]]:
    pa = import_pyarrow()
    if not unit.blocks:
        return
    with fs.open_input_file(unit.path) as handle:
        file = pa.parquet.ParquetFile(handle, buffer_size=STREAM_BUFFER)
        low, high = unit.blocks[0].start, unit.blocks[-1].end
        groups, first, row = [], None, unit.first_row
        for group, size in zip(unit.row_groups, unit.group_rows, strict=True):
            if row + size > low and row < high:  # a resumed unit skips the row groups of finished blocks
                groups.append(group)
                first = row if first is None else first
            row += size
        empty = file.schema_arrow.empty_table().select(spec.columns)
        batch_rows = max(1, min(MAX_BATCH_ROWS, max(block.rows for block in unit.blocks)))
        batches = (
            file.iter_batches(batch_size=batch_rows, row_groups=groups, columns=spec.columns, use_threads=False)
            if groups
            else iter(())
        )
        cursor = _RowCursor(batches, first or 0, empty)
        for block in unit.blocks:
            table = cursor.take(block.start, block.rows)
            if table.num_rows != block.rows:
                raise ValueError(
                    f"{block.source} changed since the job was planned: {table.num_rows} rows where "
                    f"{block.rows} were from row {block.start}"
                )
            yield block, table


class _RowCursor:
    """Rows of a stream of record batches, taken by file row: skipped up to a start, then cut to a length."""

    def __init__(self, batches: Iterator[Any], row: int, empty: pa.Table) -> None:
        self._batches = batches
        self._row = row  # file row of the first row of self._pending[0]
        self._pending: list[Any] = []
        self._empty = empty

    def take(self, start: int, rows: int) -> pa.Table:
        """Rows ``start .. start + rows`` (fewer when the stream ends first)."""
        pa = import_pyarrow()
        pieces = []
        while rows > 0:
            if not self._pending:
                batch = next(self._batches, None)
                if batch is None:
                    break
                self._pending.append(batch.select(self._empty.column_names))
            batch = self._pending[0]
            if self._row < start:
                drop = min(start - self._row, batch.num_rows)
            else:
                drop = min(rows, batch.num_rows)
                pieces.append(batch.slice(0, drop))
                rows -= drop
            self._row += drop
            self._pending[0] = batch.slice(drop)
            if self._pending[0].num_rows == 0:
                self._pending.pop(0)
        if not pieces:
            return self._empty
        return pa.Table.from_batches(pieces).cast(self._empty.schema)


def _txt_block(block: Block, lines: Sequence[bytes], spec: JobSpec) -> BlockRows:
    pa = import_pyarrow()
    # surrogateescape: an invalid UTF-8 byte becomes a lone surrogate, reported as a bad row with its id.
    texts: list[Any] = [line.removesuffix(b"\r").decode("utf-8", "surrogateescape") for line in lines]
    ids = pa.array(range(block.start, block.start + block.rows), pa.int64())
    return _checked(block, pa.table({spec.id_column: ids}), texts, [], spec)


def _jsonl_block(block: Block, lines: Sequence[bytes], spec: JobSpec) -> BlockRows:
    pa = import_pyarrow()
    ids: list[Any] = []
    texts: list[Any] = []
    kept: list[list[Any]] = [[] for _ in spec.keep_columns]
    problems: list[_Problem] = []
    for index, line in enumerate(lines):
        number = block.start + index + 1
        try:
            record = records.parse_record(line, block.source, number)
            kind = records.id_type(record, spec.id_column, block.source, number)
            if kind != spec.id_type:
                raise RecordError(
                    f"{block.source}:{number}: id {record[spec.id_column]!r} is not {spec.id_type} like the "
                    "first line's id; all ids must have one type"
                )
            values = [
                records.kept_value(record, column, column_kind, block.source, number)
                for column, column_kind in zip(spec.keep_columns, spec.keep_types, strict=True)
            ]
        except RecordError as exc:
            message = str(exc)
            reason = message.removeprefix(f"{block.source}:{number}").lstrip(": ")
            problems.append(_Problem(index, reason, message, ValueError))
            ids.append(None)
            texts.append("")  # a placeholder, dropped with the row
            values = [None] * len(spec.keep_columns)
        else:
            ids.append(record[spec.id_column])
            texts.append(record.get(spec.text_column, MISSING))
        for column_values, value in zip(kept, values, strict=True):
            column_values.append(value)
    arrays = {spec.id_column: pa.array(ids, pa.string() if spec.id_type == "string" else pa.int64())}
    for column, column_kind, values in zip(spec.keep_columns, spec.keep_types, kept, strict=True):
        arrays.setdefault(column, pa.array(values, records.arrow_type(column_kind)))
    return _checked(block, pa.table(arrays), texts, problems, spec)


def _checked(block: Block, table: pa.Table, texts: list[Any], problems: list[_Problem], spec: JobSpec) -> BlockRows:
    """Find the bad rows (no usable id, a text that cannot be embedded); raise or leave them out."""
    pa = import_pyarrow()
    ids = table.column(spec.id_column).combine_chunks()
    known = {p.index for p in problems}
    if ids.null_count and block.kind is SourceKind.PARQUET:
        for index in (i for i, null in enumerate(ids.is_null().to_pylist()) if null):
            message = f"{block.source}: row {block.start + index} has a null id in column {spec.id_column!r}"
            problems.append(_Problem(index, f"null id in column {spec.id_column!r}", message, ValueError))
            known.add(index)
    for index, reason in _bad_texts(texts, spec.text_column, known):
        row_id = ids[index].as_py()
        message = f"{block.source}: row {block.start + index} (id {row_id!r}): {reason}"
        error = TypeError if "expected str" in reason or "is null" in reason else ValueError
        problems.append(_Problem(index, reason, message, error))
    if not problems:
        return BlockRows(block, table.select([spec.id_column, *spec.keep_columns]), texts, ())
    problems.sort(key=lambda p: p.index)
    if OnBadRow.parse(spec.on_bad_row) is OnBadRow.FAIL:
        first = problems[0]
        more = f" ({len(problems) - 1} more bad rows in this block)" if len(problems) > 1 else ""
        raise first.error(f"{first.message}{more}; {_SKIP_HINT}")
    line_based = block.kind is not SourceKind.PARQUET
    skipped = tuple(
        SkippedRow(
            ids[p.index].as_py(),
            p.reason,
            block.start + p.index,
            block.start + p.index + 1 if line_based else None,
        )
        for p in problems
    )
    bad = {p.index for p in problems}
    keep = [i not in bad for i in range(len(texts))]
    good = table.filter(pa.array(keep)).select([spec.id_column, *spec.keep_columns])
    return BlockRows(block, good, [t for t, k in zip(texts, keep, strict=True) if k], skipped)


def _bad_texts(texts: Sequence[Any], text_column: str, exclude: set[int]) -> list[tuple[int, str]]:
    """(index, reason) of every text that cannot be embedded: missing, null, not a str, a lone surrogate."""
    if not exclude:
        try:
            check_texts(texts)  # the fast path: one pass, no exception for a clean block
            return []
        except (TypeError, ValueError):
            pass
    found = []
    for index, text in enumerate(texts):
        if index in exclude:
            continue
        if text is MISSING:
            found.append((index, f"no {text_column!r} field"))
        elif text is None:
            found.append((index, f"{text_column!r} is null"))
        else:
            try:
                check_texts([text])
            except (TypeError, ValueError) as exc:
                found.append((index, str(exc).replace("texts[0]", repr(text_column))))
    return found
