"""Inputs of ``embed-corpus`` split into deterministic blocks of rows, and one block read back.

The driver plans the blocks from metadata only (parquet footers, a newline scan of .jsonl/.txt files), so
the same input and ``block_rows`` always give the same blocks and the same part names: that is what lets a
re-run find the parts a killed run finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedrt.config import Choice

if TYPE_CHECKING:
    import pyarrow as pa

#: Stands for a .jsonl record that has no text field (reported as a bad row, unlike a null text).
MISSING = object()


class SourceKind(Choice):
    """The input formats ``embed-corpus`` reads."""

    PARQUET = "parquet"
    JSONL = "jsonl"
    TXT = "txt"


@dataclass(frozen=True)
class Block:
    """Rows ``start .. start + rows`` of one input file; for .jsonl/.txt also their byte range."""

    source: str
    kind: SourceKind
    file_index: int
    start: int
    rows: int
    byte_start: int = 0
    byte_end: int = 0

    @property
    def name(self) -> str:
        """The output part's file name; sorted names follow the input order."""
        return f"part-{self.file_index:05d}-{self.start:012d}.parquet"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, to ship a block to a worker."""
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Block:
        """Inverse of ``to_dict``."""
        return cls(**{**data, "kind": SourceKind.parse(data["kind"])})


@dataclass(frozen=True)
class Plan:
    """Every block of an input, in input order, and the id column's arrow type (as a string)."""

    files: tuple[str, ...]
    blocks: tuple[Block, ...]
    id_type: str

    @property
    def total_rows(self) -> int:
        """Rows of the whole input."""
        return sum(block.rows for block in self.blocks)


def import_pyarrow() -> Any:
    """pyarrow, or an ImportError that says which extra to install."""
    try:
        import pyarrow
        import pyarrow.parquet  # loads the submodule used as pyarrow.parquet
    except ImportError as exc:
        raise ImportError(
            f"embed-corpus needs pyarrow ({exc}); install it with: pip install 'embedrt[corpus]'"
        ) from None
    return pyarrow


def plan_input(path: str | Path, text_column: str, id_column: str, block_rows: int) -> Plan:
    """Split ``path`` (a parquet file or directory of them, a .jsonl or a .txt file) into blocks.

    Raises:
        FileNotFoundError: the input does not exist, or a directory holds no parquet file.
        ValueError: an unknown extension, a missing column, or id columns of different types.

    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"input {source} not found")
    if source.is_dir():
        files = sorted(
            p
            for p in source.rglob("*.parquet")
            if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(source).parts)
        )
        if not files:
            raise FileNotFoundError(f"input directory {source} holds no .parquet file")
        kind = SourceKind("parquet")
    else:
        files = [source]
        suffix = source.suffix.lower()
        if suffix not in (".parquet", ".jsonl", ".txt"):
            raise ValueError(f"input {source}: unknown format {suffix!r}; expected .parquet, .jsonl or .txt")
        kind = SourceKind(suffix[1:])
    blocks: list[Block] = []
    if kind is SourceKind.PARQUET:
        id_type = ""
        for index, file in enumerate(files):
            file_type = _parquet_id_type(file, text_column, id_column)
            if id_type and file_type != id_type:
                raise ValueError(
                    f"{file}: id column {id_column!r} is {file_type}, but {files[0]} has {id_type}; "
                    "all files must share one id type"
                )
            id_type = file_type
            num_rows = _parquet_rows(file)
            blocks.extend(
                Block(str(file), kind, index, start, min(block_rows, num_rows - start))
                for start in _starts(num_rows, block_rows)
            )
    else:
        blocks = list(_text_blocks(files[0], kind, block_rows))
        id_type = "int64" if kind is SourceKind.TXT else _jsonl_id_type(blocks[0], id_column)
    return Plan(tuple(str(f) for f in files), tuple(blocks), id_type)


def _starts(num_rows: int, block_rows: int) -> range:
    # An empty file still gets one (empty) block, so an empty input gives a part with the right schema.
    return range(0, max(num_rows, 1), block_rows)


def _parquet_rows(file: Path) -> int:
    pa = import_pyarrow()
    return int(pa.parquet.ParquetFile(file).metadata.num_rows)


def _parquet_id_type(file: Path, text_column: str, id_column: str) -> str:
    pa = import_pyarrow()
    try:
        schema = pa.parquet.read_schema(file)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{file} is not a readable parquet file: {exc}") from None
    for column, what in ((text_column, "text"), (id_column, "id")):
        if column not in schema.names:
            raise ValueError(
                f"{file} has no {what} column {column!r} (columns: {', '.join(schema.names)}); "
                f"choose it with --{what}-column"
            )
    return str(schema.field(id_column).type)


def _text_blocks(file: Path, kind: SourceKind, block_rows: int) -> Iterator[Block]:
    """Blocks of ``block_rows`` lines; a final line without a newline counts, an empty file gives one block."""
    start = row = offset = block_offset = 0
    with file.open("rb") as handle:
        for line in handle:
            if row - start == block_rows:
                yield Block(str(file), kind, 0, start, row - start, block_offset, offset)
                start, block_offset = row, offset
            row += 1
            offset += len(line)
    yield Block(str(file), kind, 0, start, row - start, block_offset, offset)


def _jsonl_id_type(block: Block, id_column: str) -> str:
    """int64 or string, from the first record's id; the other records must match (checked when read)."""
    if block.rows == 0:
        return "string"  # an empty .jsonl says nothing about its ids; string is the common case
    with open(block.source, "rb") as handle:
        record = _json_record(handle.readline(), block.source, 1)
    return _json_id_type(record, id_column, block.source, 1)


def _json_record(line: bytes, source: str, line_number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source}:{line_number} is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{source}:{line_number} is {type(record).__name__}; expected a JSON object")
    return record


def _json_id_type(record: dict[str, Any], id_column: str, source: str, line_number: int) -> str:
    if id_column not in record:
        raise ValueError(f"{source}:{line_number} has no id field {id_column!r}; choose it with --id-column")
    value = record[id_column]
    if isinstance(value, str):
        return "string"
    if isinstance(value, int) and not isinstance(value, bool):
        return "int64"
    raise ValueError(f"{source}:{line_number}: id {value!r} is {type(value).__name__}; expected an integer or a string")


def read_block(block: Block, text_column: str, id_column: str, id_type: str) -> tuple[pa.Array, list[Any]]:
    """The ids (arrow array of the id column's type) and the texts (as read: possibly None or MISSING).

    Raises:
        ValueError: a null id, an id of another type than the first, or a line that is not a JSON object;
            the message names the file and the row or line.

    """
    pa = import_pyarrow()
    if block.kind is SourceKind.PARQUET:
        return _read_parquet_block(block, text_column, id_column)
    with open(block.source, "rb") as handle:
        handle.seek(block.byte_start)
        data = handle.read(block.byte_end - block.byte_start)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start another
    if len(lines) != block.rows:
        raise ValueError(
            f"{block.source} changed since the job was planned: {len(lines)} lines where {block.rows} were "
            f"at line {block.start + 1}"
        )
    if block.kind is SourceKind.TXT:
        # surrogateescape: an invalid UTF-8 byte becomes a lone surrogate, reported as a bad row with its id.
        texts: list[Any] = [line.removesuffix(b"\r").decode("utf-8", "surrogateescape") for line in lines]
        return pa.array(range(block.start, block.start + block.rows), pa.int64()), texts
    ids: list[Any] = []
    texts = []
    for offset, line in enumerate(lines):
        number = block.start + offset + 1
        record = _json_record(line, block.source, number)
        kind = _json_id_type(record, id_column, block.source, number)
        if kind != id_type:
            raise ValueError(
                f"{block.source}:{number}: id {record[id_column]!r} is not {id_type} like the first line's id; "
                "all ids must have one type"
            )
        ids.append(record[id_column])
        texts.append(record.get(text_column, MISSING))
    return pa.array(ids, pa.string() if id_type == "string" else pa.int64()), texts


def _read_parquet_block(block: Block, text_column: str, id_column: str) -> tuple[pa.Array, list[Any]]:
    pa = import_pyarrow()
    file = pa.parquet.ParquetFile(block.source)
    meta = file.metadata
    groups, first, row = [], None, 0
    for index in range(meta.num_row_groups):
        size = meta.row_group(index).num_rows
        if row + size > block.start and row < block.start + block.rows:
            groups.append(index)
            first = row if first is None else first
        row += size
    if groups:
        table = file.read_row_groups(groups, columns=[id_column, text_column])
        table = table.slice(block.start - (first or 0), block.rows)
    else:
        table = file.schema_arrow.empty_table().select([id_column, text_column])
    if table.num_rows != block.rows:
        raise ValueError(
            f"{block.source} changed since the job was planned: {table.num_rows} rows where "
            f"{block.rows} were from row {block.start}"
        )
    ids = table.column(id_column).combine_chunks()
    if ids.null_count:
        row_of_null = block.start + ids.is_null().to_pylist().index(True)
        raise ValueError(f"{block.source}: row {row_of_null} has a null id in column {id_column!r}")
    return ids, table.column(text_column).to_pylist()
