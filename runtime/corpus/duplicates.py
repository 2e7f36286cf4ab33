"""Ids that appear on more than one row of a job's output, counted in hash buckets spilled to disk.

The check runs on the parts' id columns (those of this run as the workers report them, those of earlier runs
read back at the end), so it costs nothing on the input side and a resumed job checks every row. A job of 10^9
rows has gigabytes of ids, more than a driver should hold: ``IdCounter`` keeps at most ``memory_rows`` ids in
memory. Past that it sorts them by a hash bucket and writes them to a spill file (Arrow IPC, one record batch
per bucket, in the driver's temporary directory); at the end each bucket, read back batch by batch from the
spill files, is counted on its own.
An id always lands in the same bucket, so counting bucket by bucket finds every repeat, and with
``ceil(rows / memory_rows)`` buckets each one holds about ``memory_rows`` ids: the driver's memory stays
bounded by that figure, however large the job; the spill files take about (id size + 8) bytes per row on disk.
"""

from __future__ import annotations

import heapq
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedrt.corpus.storage import import_pyarrow

FIRST_LISTED = 5  # duplicates named in messages and the manifest
# Ids held in memory before a spill, and per bucket: 4 Mi ids of ~16 bytes (value, offset, position) is
# about 64 MB, plus the counting's hash table.
MEMORY_ROWS = 1 << 22
_ROW_BITS = 32  # a row's position: part index << 32 | row within the part (parts hold far fewer than 2^32 rows)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive integer ids over the buckets


@dataclass(frozen=True)
class Duplicates:
    """How many ids repeat, and the first ones (in input order) with their count and the parts that hold them."""

    count: int  # distinct ids that appear more than once
    first: tuple[dict[str, Any], ...]  # {"id", "rows", "parts"}

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``duplicate_ids``."""
        return {"count": self.count, "first": list(self.first)}

    def describe(self) -> str:
        """The first duplicates, for messages."""
        shown = "; ".join(f"{d['id']!r} on {d['rows']} rows (in {', '.join(d['parts'][:3])})" for d in self.first)
        more = f" and {self.count - len(self.first)} more" if self.count > len(self.first) else ""
        return f"{self.count} ids appear more than once: {shown}{more}"


@dataclass(frozen=True)
class _Run:
    """Ids sorted by bucket: in memory (``table``), or a spill file whose record batch b is bucket b."""

    table: Any  # pyarrow Table (id, position) sorted by bucket; None once spilled
    offsets: np.ndarray  # in memory: bucket b is rows offsets[b]:offsets[b + 1]
    path: Path | None = None

    def bucket(self, index: int) -> Any:
        """The ids and positions of one bucket (read from the spill file: only that batch)."""
        pa = import_pyarrow()
        if self.path is None:
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            return self.table.slice(start, end - start)
        with pa.OSFile(str(self.path), "rb") as source:  # a plain read: no mapped pages left behind
            return pa.Table.from_batches([pa.ipc.open_file(source).get_batch(index)])


class IdCounter:
    """Finds repeated ids over parts fed one at a time (``add``), in memory bounded by ``memory_rows`` ids.

    ``with IdCounter(part_names, total_rows) as counter: counter.add(index, ids) ...; counter.result()``.
    """

    def __init__(self, part_names: Sequence[str], total_rows: int, memory_rows: int | None = None) -> None:
        """Plan ``ceil(total_rows / memory_rows)`` buckets (default ``MEMORY_ROWS``) for the job's ``total_rows``."""
        self.part_names = list(part_names)
        self.memory_rows = memory_rows = memory_rows or MEMORY_ROWS
        self.buckets = max(1, math.ceil(total_rows / memory_rows))
        self._pending: list[tuple[Any, np.ndarray]] = []  # (ids, positions) not yet spilled
        self._pending_rows = 0
        self._runs: list[_Run] = []
        self._spill_dir: Path | None = None

    def __enter__(self) -> IdCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the spill files."""
        self._runs.clear()
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None

    def add(self, part_index: int, ids: Any) -> None:
        """Count the id column (a pyarrow Array) of part ``part_index`` of ``part_names``."""
        if len(ids) == 0:
            return
        positions = (np.int64(part_index) << _ROW_BITS) + np.arange(len(ids), dtype=np.int64)
        self._pending.append((ids, positions))
        self._pending_rows += len(ids)
        if self._pending_rows >= self.memory_rows:
            self._runs.append(self._sorted_run(spill=True))

    def result(self) -> Duplicates:
        """The repeated ids of every part added, the first ``FIRST_LISTED`` of them in input order."""
        if self._pending:
            self._runs.append(self._sorted_run(spill=bool(self._runs)))
        if not self._runs:
            return Duplicates(0, ())
        count = 0
        candidates: list[tuple[int, int, Any, int]] = []  # (first position, bucket, id, rows), the smallest kept
        for bucket in range(self.buckets):
            repeated = self._repeated(bucket)
            count += repeated.num_rows
            repeated = repeated.sort_by("position_min").slice(0, FIRST_LISTED)  # only these can be listed
            found = zip(
                repeated.column("position_min").to_pylist(),
                repeated.column("id").to_pylist(),
                repeated.column("position_count").to_pylist(),
                strict=True,
            )
            candidates = heapq.nsmallest(
                FIRST_LISTED, [*candidates, *((first, bucket, value, n) for first, value, n in found)]
            )
        first = tuple(
            {"id": value, "rows": rows, "parts": self._parts_of(bucket, value)} for _, bucket, value, rows in candidates
        )
        return Duplicates(count, first)

    def _bucket_table(self, bucket: int) -> Any:
        pa = import_pyarrow()
        return pa.concat_tables([run.bucket(bucket) for run in self._runs])

    def _repeated(self, bucket: int) -> Any:
        """id, position_min, position_count of the ids that repeat in one bucket (memory: its distinct ids)."""
        pc = import_pyarrow().compute
        table = self._bucket_table(bucket)
        grouped = table.group_by("id").aggregate([("position", "min"), ("position", "count")])
        return grouped.filter(pc.greater(grouped.column("position_count"), 1))

    def _parts_of(self, bucket: int, value: Any) -> list[str]:
        """The parts holding ``value``, in input order."""
        pc = import_pyarrow().compute
        table = self._bucket_table(bucket)
        positions = table.filter(pc.equal(table.column("id"), value)).column("position").to_numpy()
        return [self.part_names[int(i)] for i in np.unique(positions >> _ROW_BITS)]

    def _sorted_run(self, spill: bool) -> _Run:
        """The pending ids sorted by bucket: written to a spill file (a record batch per bucket), or kept."""
        pa = import_pyarrow()
        ids = pa.concat_arrays([chunk for chunk, _ in self._pending])
        positions = np.concatenate([p for _, p in self._pending])
        self._pending, self._pending_rows = [], 0
        buckets = _bucket_of(ids, self.buckets)
        order = np.argsort(buckets, kind="stable")
        table = pa.table({"id": ids.take(pa.array(order)), "position": pa.array(positions[order])})
        offsets = np.searchsorted(buckets[order], np.arange(self.buckets + 1), side="left")
        if not spill:
            return _Run(table, offsets)
        if self._spill_dir is None:
            self._spill_dir = Path(tempfile.mkdtemp(prefix="embedrt-ids-"))
        path = self._spill_dir / f"run-{len(self._runs):06d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            for bucket in range(self.buckets):
                rows = table.slice(int(offsets[bucket]), int(offsets[bucket + 1] - offsets[bucket]))
                columns = [column.combine_chunks() for column in rows.columns]
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=table.schema))
        return _Run(None, offsets, path)


def _bucket_of(ids: Any, buckets: int) -> np.ndarray:
    """The bucket of each id: a hash of its value modulo ``buckets`` (stable within this process)."""
    if buckets == 1:
        return np.zeros(len(ids), dtype=np.int64)
    pa = import_pyarrow()
    if pa.types.is_integer(ids.type):
        values = ids.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
    else:  # strings and anything else: Python's hash, the same for equal values within this process
        values = np.fromiter((hash(v) for v in ids.to_pylist()), dtype=np.int64, count=len(ids)).view(np.uint64)
    mixed = (values * _MIX) >> np.uint64(32)
    return (mixed % np.uint64(buckets)).astype(np.int64)


def find_duplicates(part_names: Sequence[str], columns: Sequence[Any], memory_rows: int | None = None) -> Duplicates:
    """The repeated ids among the parts' id ``columns`` (pyarrow Arrays, in input order, one per part)."""
    with IdCounter(part_names, sum(len(c) for c in columns), memory_rows) as counter:
        for index, column in enumerate(columns):
            counter.add(index, column)
        return counter.result()
