"""Inputs of ``embed-corpus`` planned into deterministic blocks of rows, grouped into units that are read once.

The driver plans from metadata only (parquet footers, a newline scan of .jsonl/.txt files), so the same input
and ``block_rows`` always give the same blocks and the same part names: that is what lets a re-run find the
parts a killed run finished. Each block is one output part; a *read unit* is the run of blocks that one reader
reads in a single pass. For parquet a unit is a run of whole row groups that ends where a block ends, so every
row group is decompressed once however many blocks it holds (pyarrow and pandas write up to 1,048,576 rows per
group: reading the whole group for each 2,048-row block read the input 512 times). For .jsonl/.txt a unit is
one block: its byte range is read exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embedrt.config import Choice
from embedrt.corpus import records
from embedrt.corpus.storage import Location, file_info, import_pyarrow, list_dir

__all__ = ["Block", "InputFile", "Plan", "ReadUnit", "SourceKind", "import_pyarrow", "plan_input"]

_SCAN_CHUNK = 1 << 22  # bytes per read of the newline scan


class SourceKind(Choice):
    """The input formats ``embed-corpus`` reads."""

    PARQUET = "parquet"
    JSONL = "jsonl"
    TXT = "txt"


@dataclass(frozen=True)
class InputFile:
    """One input file as planned: what a resume compares to decide whether the input changed."""

    uri: str
    size: int
    mtime_ns: int
    rows: int
    row_groups: tuple[int, ...] | None = None  # parquet: rows of each row group, in order

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change when the file's content does (its URI is the job's configuration)."""
        data = asdict(self)
        del data["uri"]
        data["row_groups"] = list(self.row_groups) if self.row_groups is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputFile:
        """Inverse of ``asdict``."""
        groups = data.get("row_groups")
        return cls(
            str(data["uri"]),
            int(data["size"]),
            int(data["mtime_ns"]),
            int(data["rows"]),
            tuple(int(g) for g in groups) if groups is not None else None,
        )


@dataclass(frozen=True)
class Block:
    """Rows ``start .. start + rows`` of one input file; for .jsonl/.txt also their byte range."""

    source: str  # the file's URI, for messages
    path: str  # the file's path on the input filesystem
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

    @property
    def end(self) -> int:
        """The row after the block's last row."""
        return self.start + self.rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Block:
        """Inverse of ``to_dict``."""
        return cls(**{**data, "kind": SourceKind.parse(data["kind"])})


@dataclass(frozen=True)
class ReadUnit:
    """Consecutive blocks of one file, read in one pass (see the module docstring); ships to workers as JSON."""

    kind: SourceKind
    source: str
    path: str
    size: int  # the planned file's size and mtime: a reader refuses a file that changed since
    mtime_ns: int
    blocks: tuple[Block, ...]
    row_groups: tuple[int, ...] = ()  # parquet: the unit's row group indexes
    group_rows: tuple[int, ...] = ()  # and their row counts
    first_row: int = 0  # the file row of the unit's first row group

    def with_blocks(self, names: set[str]) -> ReadUnit:
        """The unit restricted to the blocks named (a resumed job reads only what it still embeds)."""
        return ReadUnit(
            self.kind,
            self.source,
            self.path,
            self.size,
            self.mtime_ns,
            tuple(b for b in self.blocks if b.name in names),
            self.row_groups,
            self.group_rows,
            self.first_row,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind.value,
            "source": self.source,
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "blocks": [b.to_dict() for b in self.blocks],
            "row_groups": list(self.row_groups),
            "group_rows": list(self.group_rows),
            "first_row": self.first_row,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReadUnit:
        """Inverse of ``to_dict``."""
        return cls(
            SourceKind.parse(data["kind"]),
            data["source"],
            data["path"],
            int(data["size"]),
            int(data["mtime_ns"]),
            tuple(Block.from_dict(b) for b in data["blocks"]),
            tuple(data["row_groups"]),
            tuple(data["group_rows"]),
            int(data["first_row"]),
        )


@dataclass(frozen=True)
class Plan:
    """Every read unit of an input, in input order, and the arrow types of the id and kept columns."""

    files: tuple[InputFile, ...]
    units: tuple[ReadUnit, ...]
    id_type: str
    keep_types: tuple[str, ...] = field(default=())

    @property
    def blocks(self) -> tuple[Block, ...]:
        """Every block, in input order."""
        return tuple(block for unit in self.units for block in unit.blocks)

    @property
    def total_rows(self) -> int:
        """Rows of the whole input."""
        return sum(file.rows for file in self.files)


def plan_input(
    source: Location,
    text_column: str,
    id_column: str,
    block_rows: int,
    keep_columns: Sequence[str] = (),
    exclude: Location | None = None,
) -> Plan:
    """Split ``source`` (a parquet file or directory of them, a .jsonl or a .txt file) into read units.

    ``exclude``: a directory whose files are never input (the job's OUTPUT, when it lies inside INPUT).

    Raises:
        FileNotFoundError: the input does not exist, or a directory holds no parquet file.
        ValueError: an unknown extension, a missing column, or id or kept columns of different types.

    """
    pafs_types = import_pyarrow().fs.FileType
    info = file_info(source)
    if info.type == pafs_types.NotFound:
        raise FileNotFoundError(f"input {source} not found")
    if info.type == pafs_types.Directory:
        infos = _parquet_files(source, exclude)
        kind = SourceKind("parquet")
    else:
        infos = [info]
        suffix = "." + source.name.rsplit(".", 1)[-1].lower() if "." in source.name else ""
        if suffix not in (".parquet", ".jsonl", ".txt"):
            raise ValueError(f"input {source}: unknown format {suffix!r}; expected .parquet, .jsonl or .txt")
        kind = SourceKind(suffix[1:])
    if kind is SourceKind.PARQUET:
        return _plan_parquet(source, infos, text_column, id_column, keep_columns, block_rows)
    if kind is SourceKind.TXT and keep_columns:
        raise ValueError(f"input {source} is a .txt file: it has no columns to keep ({', '.join(keep_columns)})")
    file, units = _plan_text(source.at(infos[0].path), kind, infos[0], block_rows)
    if kind is SourceKind.TXT:
        return Plan((file,), units, "int64")
    id_kind, keep_kinds = _jsonl_types(source, units[0].blocks[0], id_column, keep_columns)
    return Plan((file,), units, id_kind, keep_kinds)


def _parquet_files(directory: Location, exclude: Location | None) -> list[Any]:
    """The .parquet files below ``directory``, sorted; hidden and ``_`` names and ``exclude`` left out."""
    base = directory.path.rstrip("/") + "/"
    found = []
    for info in list_dir(directory, recursive=True):
        relative = info.path[len(base) :] if info.path.startswith(base) else info.path
        if not info.is_file or not info.path.endswith(".parquet"):
            continue
        if any(part.startswith((".", "_")) for part in relative.split("/")):
            continue
        if exclude is not None and exclude.contains(directory.at(info.path)):
            continue  # OUTPUT inside INPUT: the job's own parts are never its input
        found.append(info)
    if not found:
        raise FileNotFoundError(f"input directory {directory} holds no .parquet file")
    return sorted(found, key=lambda i: i.path)


def _plan_parquet(
    source: Location,
    infos: list[Any],
    text_column: str,
    id_column: str,
    keep_columns: Sequence[str],
    block_rows: int,
) -> Plan:
    pa = import_pyarrow()
    files: list[InputFile] = []
    units: list[ReadUnit] = []
    types: tuple[str, ...] = ()
    first_uri = ""
    for index, info in enumerate(infos):
        location = source.at(info.path)
        try:
            with location.fs.open_input_file(location.path) as handle:
                meta = pa.parquet.ParquetFile(handle).metadata
        except pa.ArrowInvalid as exc:
            raise ValueError(f"{location} is not a readable parquet file: {exc}") from None
        schema = meta.schema.to_arrow_schema()
        for column, what in [(text_column, "text"), (id_column, "id")] + [(k, "kept") for k in keep_columns]:
            if column not in schema.names:
                option = "keep-columns" if what == "kept" else f"{what}-column"
                raise ValueError(
                    f"{location} has no {what} column {column!r} (columns: {', '.join(schema.names)}); "
                    f"choose it with --{option}"
                )
        file_types = tuple(str(schema.field(c).type) for c in (id_column, *keep_columns))
        if types and file_types != types:
            column, mine, theirs = next(
                (c, m, t) for c, m, t in zip((id_column, *keep_columns), file_types, types, strict=True) if m != t
            )
            raise ValueError(
                f"{location}: column {column!r} is {mine}, but {first_uri} has {theirs}; "
                "all files must share the id and kept columns' types"
            )
        types, first_uri = file_types, first_uri or location.uri
        groups = tuple(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
        file = InputFile(location.uri, int(info.size), int(info.mtime_ns), int(meta.num_rows), groups)
        files.append(file)
        units.extend(_parquet_units(location, info, index, groups, block_rows))
    return Plan(tuple(files), tuple(units), types[0], types[1:])


def _parquet_units(
    location: Location, info: Any, index: int, groups: tuple[int, ...], block_rows: int
) -> Iterator[ReadUnit]:
    """Runs of whole row groups that end on a block boundary (or the file's end), with their blocks."""
    total = sum(groups)
    kind = SourceKind("parquet")
    blocks = [
        Block(location.uri, location.path, kind, index, start, min(block_rows, total - start))
        for start in _starts(total, block_rows)
    ]

    if total == 0:  # an empty file: one empty block, so the output has a part with the right schema
        yield ReadUnit(kind, location.uri, location.path, int(info.size), int(info.mtime_ns), tuple(blocks))
        return
    members: list[int] = []
    taken = first = row = 0
    for group, size in enumerate(groups):
        if not members:
            first = row
        members.append(group)
        row += size
        if row > first and (row % block_rows == 0 or row == total):
            count = 0
            while taken + count < len(blocks) and blocks[taken + count].start < row:
                count += 1
            yield ReadUnit(
                kind,
                location.uri,
                location.path,
                int(info.size),
                int(info.mtime_ns),
                tuple(blocks[taken : taken + count]),
                tuple(members),
                tuple(groups[g] for g in members),
                first,
            )
            taken += count
            members = []


def _starts(num_rows: int, block_rows: int) -> range:
    # An empty file still gets one (empty) block, so an empty input gives a part with the right schema.
    return range(0, max(num_rows, 1), block_rows)


def _plan_text(
    location: Location, kind: SourceKind, info: Any, block_rows: int
) -> tuple[InputFile, tuple[ReadUnit, ...]]:
    """Blocks of ``block_rows`` lines, from one scan for newlines; a final line without one counts."""
    ends = _block_ends(location, block_rows)  # byte offset after each block's last line
    rows = ends.pop()  # _block_ends appends the line count
    units = []
    start_byte = 0
    for number, end_byte in enumerate(ends):
        start = number * block_rows
        block = Block(location.uri, location.path, kind, 0, start, min(block_rows, rows - start), start_byte, end_byte)
        units.append(ReadUnit(kind, location.uri, location.path, int(info.size), int(info.mtime_ns), (block,)))
        start_byte = end_byte
    return InputFile(location.uri, int(info.size), int(info.mtime_ns), rows), tuple(units)


def _block_ends(location: Location, block_rows: int) -> list[int]:
    """The end offsets of the blocks (one empty block for an empty file), then the number of lines."""
    ends: list[int] = []
    lines = offset = 0
    last = b"\n"
    with location.fs.open_input_stream(location.path) as handle:
        while chunk := handle.read(_SCAN_CHUNK):
            newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 0x0A)
            # the newline that ends line number k (1-based) ends a block when k is a multiple of block_rows
            first_cut = (-lines - 1) % block_rows  # index in ``newlines`` of the first newline ending a block
            ends.extend(int(offset + p + 1) for p in newlines[first_cut::block_rows])
            lines += len(newlines)
            offset += len(chunk)
            last = chunk[-1:]
    if last != b"\n":
        lines += 1  # a last line without a newline
        if lines % block_rows == 0:
            ends.append(offset)
    if not ends or ends[-1] != offset:
        ends.append(offset)  # the last, partial block (or the empty block of an empty file)
    ends.append(lines)
    return ends


def _jsonl_types(
    source: Location, first_block: Block, id_column: str, keep_columns: Sequence[str]
) -> tuple[str, tuple[str, ...]]:
    """The id type (int64 or string) and each kept field's type, from the first block's lines.

    The first line that parses with a usable id gives the id type; each kept field takes the type of its first
    non-null value (JSON text when there is none). Lines that do not parse are left to the reader, which
    reports or skips them with their line numbers.
    """
    if first_block.rows == 0:
        return "string", tuple(records.JSON_TEXT for _ in keep_columns)  # an empty file says nothing
    with source.fs.open_input_file(first_block.path) as handle:
        data = handle.read_at(first_block.byte_end - first_block.byte_start, first_block.byte_start)
    found_id: str | None = None
    kinds: dict[str, str] = {}
    for number, line in enumerate(bytes(data).split(b"\n")[: first_block.rows], start=1):
        try:
            record = records.parse_record(line, first_block.source, number)
            found_id = found_id or records.id_type(record, id_column, first_block.source, number)
        except records.RecordError:
            continue
        for column in keep_columns:
            kind = records.value_type(record.get(column))
            if column not in kinds and kind is not None:
                kinds[column] = kind
        if len(kinds) == len(keep_columns):
            break  # the id type is known too: a line without one never gets here
    return found_id or "string", tuple(kinds.get(c, records.JSON_TEXT) for c in keep_columns)
