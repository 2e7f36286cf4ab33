"""Output parts: one block's vectors written whole or not at all, and a part's figures read back from its footer."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embedrt.corpus.reader import BlockRows, SkippedRow
from embedrt.corpus.spec import JobSpec
from embedrt.corpus.storage import Location, import_pyarrow, write_whole

if TYPE_CHECKING:
    from embedrt.embedder import Embedder

# The part's own record of its block, in the parquet schema metadata: a re-run totals rows and skipped ids
# from the parts' footers, so figures survive any number of interruptions.
PART_METADATA_KEY = b"embedrt.block"


@dataclass(frozen=True)
class BlockResult:
    """What embedding one block produced."""

    name: str
    rows_in: int
    rows_out: int
    skipped: tuple[SkippedRow, ...]
    int8_path: str | None = None  # int8: the kernel path of the worker that embedded the block
    device: str | None = None  # the device of that worker
    size_bytes: int | None = None  # the part file's size, when read back
    ids: Any = None  # the part's id column (a pyarrow Array), when read back with it


def embed_rows(rows: BlockRows, spec: JobSpec, embed: Embedder, output: Location) -> BlockResult:
    """Embed a checked block and write its part into ``output`` (see ``storage.write_whole``)."""
    pa = import_pyarrow()
    vectors = embed(rows.texts) if rows.texts else np.empty((0, spec.dimension), dtype=np.float32)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(rows.texts), spec.dimension):
        raise RuntimeError(
            f"the model returned shape {vectors.shape} for {len(rows.texts)} texts of dim {spec.dimension}"
        )
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), spec.dimension)
    info = embed.info()
    int8_path = info["int8_kernel"]["path"] if info["int8_kernel"] else None  # a mix of paths is never silent
    record = {
        "block": rows.block.name,
        "rows_in": rows.block.rows,
        "skipped": [asdict(s) for s in rows.skipped],
        # The writer (host:pid) tells which worker embedded a block, to check that the work was spread.
        "writer": f"{socket.gethostname()}:{os.getpid()}",
        "run_id": spec.run_id,
        "int8_path": int8_path,
        "device": info["device"],
    }
    columns = rows.columns
    table = columns.append_column(pa.field("embedding", embedding.type), embedding)
    table = table.replace_schema_metadata({PART_METADATA_KEY: json.dumps(record, default=str).encode()})

    def write(target: Location) -> None:
        pa.parquet.write_table(table, target.path, filesystem=target.fs)

    write_whole(output.child(rows.block.name), write, spec.run_id)
    ids = rows.columns.column(spec.id_column).combine_chunks()
    return BlockResult(
        rows.block.name, rows.block.rows, len(rows.texts), rows.skipped, int8_path, info["device"], None, ids
    )


def read_part(location: Location, id_column: str | None = None) -> BlockResult:
    """A finished part's figures from its footer, and its id column when ``id_column`` is given (one open)."""
    pa = import_pyarrow()
    try:
        with location.fs.open_input_file(location.path) as handle:
            size = int(handle.size())
            file = pa.parquet.ParquetFile(handle)
            meta = file.metadata
            ids = file.read(columns=[id_column]).column(0).combine_chunks() if id_column else None
    except (OSError, pa.ArrowInvalid) as exc:
        raise ValueError(f"{location} is not a readable part ({exc}); delete it and run the job again") from None
    raw = (meta.metadata or {}).get(PART_METADATA_KEY)
    if raw is None:
        raise ValueError(f"{location} has no embedrt block record; it was not written by embed-corpus")
    record = json.loads(raw)
    skipped = tuple(SkippedRow.from_dict(s) for s in record["skipped"])
    return BlockResult(
        record["block"],
        int(record["rows_in"]),
        int(meta.num_rows),
        skipped,
        record.get("int8_path"),
        record.get("device"),
        size,
        ids,
    )


def counts(values: Sequence[str | None]) -> dict[str, int] | None:
    """How many parts have each value (an int8 kernel path, a device); None when no part has one."""
    found: dict[str, int] = {}
    for value in values:
        if value is not None:
            found[value] = found.get(value, 0) + 1
    return dict(sorted(found.items())) or None
