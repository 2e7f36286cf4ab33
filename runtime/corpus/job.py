"""One ``embed-corpus`` job: its state file, its parts (written whole or not at all), its final manifest.

Layout of OUTPUT:

- ``_job.json``: the job's configuration, written before any part; a re-run must match it.
- ``part-<file>-<start>.parquet``: the embeddings of one input block, written to ``.tmp-...`` and renamed
  when complete, so a killed job leaves complete parts and temporary files only (the latter are removed by the
  next run, and readers of the directory skip names that start with ``.`` or ``_``).
- ``_SUCCESS``: the manifest JSON, written last.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedrt.config import Choice, read_json, require
from embedrt.corpus.sources import MISSING, Block, Plan, import_pyarrow, read_block
from embedrt.tokenizer import check_texts

if TYPE_CHECKING:
    from embedrt.embedder import Embedder

STATE_NAME = "_job.json"
SUCCESS_NAME = "_SUCCESS"
TMP_PREFIX = ".tmp-"
STATE_FORMAT = 1
# The part's own record of its block, in the parquet schema metadata: a re-run totals rows and skipped ids
# from the parts' footers, so figures survive any number of interruptions.
PART_METADATA_KEY = b"embedrt.block"


class OnBadRow(Choice):
    """What to do with a row whose text cannot be embedded."""

    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class JobSpec:
    """What every block of a job needs to know; plain values so it travels to Ray workers as a dict."""

    model_dir: str
    variant: str
    text_column: str
    id_column: str
    id_type: str
    dimension: int
    batch_size: int
    on_bad_row: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class SkippedRow:
    """A row left out under ``--on-bad-row skip``."""

    id: Any
    reason: str


@dataclass(frozen=True)
class BlockResult:
    """What embedding one block produced."""

    name: str
    rows_in: int
    rows_out: int
    skipped: tuple[SkippedRow, ...]
    int8_path: str | None = None  # int8: the kernel path of the worker that embedded the block


@dataclass(frozen=True)
class JobState:
    """The contents of ``_job.json``: what a re-run into the same OUTPUT must match."""

    input: str
    files: tuple[str, ...]
    text_column: str
    id_column: str
    block_rows: int
    model_dir: str
    variant: str
    model_sha256: str

    @classmethod
    def from_file(cls, path: Path) -> JobState:
        """Read ``_job.json`` (errors name the file)."""
        data = read_json(path)
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: unknown job state format {data.get('format')!r}; expected {STATE_FORMAT}")
        return cls(
            input=require(data, "input", path, str),
            files=tuple(str(f) for f in require(data, "files", path, list)),
            text_column=require(data, "text_column", path, str),
            id_column=require(data, "id_column", path, str),
            block_rows=require(data, "block_rows", path, int),
            model_dir=require(data, "model_dir", path, str),
            variant=require(data, "variant", path, str),
            model_sha256=require(data, "model_sha256", path, str),
        )

    def write(self, path: Path) -> None:
        """Write atomically."""
        write_json_atomic(path, {"format": STATE_FORMAT, **asdict(self)})

    def check_same_job(self, previous: JobState, output: Path) -> None:
        """Refuse to continue a job in ``output`` that was started with another model, variant or input."""
        if (previous.model_sha256, previous.variant) != (self.model_sha256, self.variant):
            raise ValueError(
                f"{output} holds embeddings of model {previous.model_dir} variant {previous.variant} "
                f"(sha256 {previous.model_sha256[:12]}...); this run asks for {self.model_dir} variant {self.variant} "
                f"(sha256 {self.model_sha256[:12]}...). Vectors of two models must not be mixed: "
                "choose another OUTPUT or delete this one"
            )
        for field in ("input", "files", "text_column", "id_column", "block_rows"):
            before, now = getattr(previous, field), getattr(self, field)
            if before != now:
                raise ValueError(
                    f"{output} was started with {field} {before!r}, this run has {now!r}; a job resumes only with "
                    "the same input and options: choose another OUTPUT or delete this one"
                )


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary name and rename it, so a reader never sees half a file."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def bad_rows(texts: Sequence[Any], text_column: str) -> list[tuple[int, str]]:
    """(index, reason) of every text that cannot be embedded: missing, null, not a str, a lone surrogate."""
    try:
        check_texts(texts)  # the fast path: one pass, no exception for a clean block
        return []
    except (TypeError, ValueError):
        pass
    found = []
    for index, text in enumerate(texts):
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


def embed_block(block: Block, spec: JobSpec, embed: Embedder, output: Path) -> BlockResult:
    """Read a block, embed its texts, write its part (temporary name, then rename).

    Raises:
        ValueError, TypeError: a bad row with ``on_bad_row`` fail (the message names the file, row, id and reason).

    """
    pa = import_pyarrow()
    ids, texts = read_block(block, spec.text_column, spec.id_column, spec.id_type)
    bad = bad_rows(texts, spec.text_column)
    skipped = tuple(SkippedRow(ids[i].as_py(), reason) for i, reason in bad)
    if bad and OnBadRow.parse(spec.on_bad_row) is OnBadRow.FAIL:
        first = skipped[0]
        row = block.start + bad[0][0]
        error = TypeError if "expected str" in first.reason or "is null" in first.reason else ValueError
        more = f" ({len(bad) - 1} more bad rows in this block)" if len(bad) > 1 else ""
        raise error(
            f"{block.source}: row {row} (id {first.id!r}): {first.reason}{more}; "
            "fix the input or pass --on-bad-row skip to skip such rows and list them in the manifest"
        )
    if bad:
        keep = np.ones(len(texts), dtype=bool)
        keep[[i for i, _ in bad]] = False
        ids = ids.filter(pa.array(keep))
        texts = [t for t, k in zip(texts, keep, strict=True) if k]
    vectors = embed(texts) if texts else np.empty((0, spec.dimension), dtype=np.float32)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(texts), spec.dimension):
        raise RuntimeError(f"the model returned shape {vectors.shape} for {len(texts)} texts of dim {spec.dimension}")
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), spec.dimension)
    # The writer (host:pid) tells which worker embedded a block, to check that the work was spread.
    writer = f"{socket.gethostname()}:{os.getpid()}"
    int8 = embed.info()["int8_kernel"]
    int8_path = int8["path"] if int8 else None  # the int8 kernel path, so a mix of paths is never silent
    record = {
        "block": block.name,
        "rows_in": block.rows,
        "skipped": [asdict(s) for s in skipped],
        "writer": writer,
        "int8_path": int8_path,
    }
    schema = pa.schema(
        [pa.field(spec.id_column, ids.type), pa.field("embedding", embedding.type)],
        metadata={PART_METADATA_KEY: json.dumps(record, default=str).encode()},
    )
    table = pa.Table.from_arrays([ids, embedding], schema=schema)
    final = output / block.name
    tmp = output / f"{TMP_PREFIX}{block.name}-{os.getpid()}-{uuid.uuid4().hex}"
    pa.parquet.write_table(table, tmp)
    os.replace(tmp, final)  # atomic: the part is either absent or complete
    return BlockResult(block.name, block.rows, len(texts), skipped, int8_path)


def read_part(path: Path) -> BlockResult:
    """A finished part's figures, from its footer only."""
    pa = import_pyarrow()
    meta = pa.parquet.read_metadata(path)
    raw = (meta.metadata or {}).get(PART_METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path} has no embedrt block record; it was not written by embed-corpus")
    record = json.loads(raw)
    skipped = tuple(SkippedRow(s["id"], s["reason"]) for s in record["skipped"])
    return BlockResult(record["block"], int(record["rows_in"]), int(meta.num_rows), skipped, record.get("int8_path"))


def prepare_output(output: Path, state: JobState, plan: Plan) -> tuple[list[Block], bool]:
    """Create or check OUTPUT; return the blocks still to embed and whether the job had finished already.

    Temporary files of a killed run are removed; a job state of another model, variant or input is refused.
    """
    if output.exists() and not output.is_dir():
        raise ValueError(f"OUTPUT {output} exists and is not a directory")
    state_path = output / STATE_NAME
    if output.is_dir() and any(output.iterdir()):
        if not state_path.is_file():
            raise ValueError(
                f"OUTPUT {output} is not empty and has no {STATE_NAME}: it is not an embed-corpus output; "
                "choose an empty or new directory"
            )
        state.check_same_job(JobState.from_file(state_path), output)
    output.mkdir(parents=True, exist_ok=True)
    for stale in output.glob(f"{TMP_PREFIX}*"):
        stale.unlink(missing_ok=True)  # left by a run that was killed while writing
    names = {block.name for block in plan.blocks}
    strays = sorted(p.name for p in output.glob("part-*") if p.name not in names)
    if strays:
        raise ValueError(f"OUTPUT {output} holds parts this job does not write: {', '.join(strays[:5])}")
    state.write(state_path)
    todo = [block for block in plan.blocks if not (output / block.name).is_file()]
    return todo, not todo and (output / SUCCESS_NAME).is_file()
