"""The duplicate-id check: the same answer in memory and spilled to disk, and driver memory that stays bounded
as the job grows (runtime/corpus/duplicates.py). No timings: memory is measured in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from corpus_helpers import mixed_texts, write_parquet

from embedrt.corpus import duplicates, embed_corpus
from embedrt.corpus.duplicates import find_duplicates


def _naive(names: list[str], columns: list) -> dict:
    """What the check must find, by plain Python: count, and the first repeated ids with rows and parts."""
    values = [(v, part) for part, column in enumerate(columns) for v in column.to_pylist()]
    counts = Counter(v for v, _ in values)
    first = []
    for value, _ in values:
        if counts[value] > 1 and value not in [f["id"] for f in first]:
            parts = sorted({part for v, part in values if v == value})
            first.append({"id": value, "rows": counts[value], "parts": [names[p] for p in parts]})
    return {"count": sum(1 for c in counts.values() if c > 1), "first": first[: duplicates.FIRST_LISTED]}


@pytest.mark.parametrize("kind", ["int64", "string", "uint32"])
@pytest.mark.parametrize("memory_rows", [1 << 20, 64, 7])
def test_spilled_buckets_find_what_memory_finds(kind: str, memory_rows: int) -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 900, size=1000)  # about 100 repeated values among 1000 rows
    column = pa.array([f"id-{v}" for v in values]) if kind == "string" else pa.array(values, type=kind)
    names = [f"part-{i}" for i in range(10)]
    columns = [column.slice(i * 100, 100) for i in range(10)]
    assert find_duplicates(names, columns, memory_rows=memory_rows).to_dict() == _naive(names, columns)


def test_no_ids_and_no_duplicates() -> None:
    assert find_duplicates([], []).count == 0
    assert find_duplicates(["a", "b"], [pa.array([1, 2]), pa.array([3])], memory_rows=1).count == 0


def test_a_job_whose_ids_spill_reports_like_one_that_does_not(tmp_path: Path, tiny_export: Path, monkeypatch) -> None:
    ids = [f"u{i}" for i in range(300)]
    ids[250] = "u7"
    ids[120] = ids[290] = "u3"
    src = write_parquet(tmp_path / "in.parquet", ids, mixed_texts(300, seed=41))
    in_memory = embed_corpus(src, tmp_path / "a", tiny_export, block_rows=50, on_duplicate_id="keep")
    monkeypatch.setattr(duplicates, "MEMORY_ROWS", 32)  # 10 buckets, a spill every part or so
    spilled = embed_corpus(src, tmp_path / "b", tiny_export, block_rows=50, on_duplicate_id="keep")
    assert spilled.manifest["duplicate_ids"] == in_memory.manifest["duplicate_ids"]
    assert [d["id"] for d in spilled.manifest["duplicate_ids"]["first"]] == ["u3", "u7"]
    with pytest.raises(ValueError, match=r"2 ids appear more than once: 'u3' on 3 rows"):
        embed_corpus(src, tmp_path / "c", tiny_export, block_rows=50)


# The driver's side of a job of ``rows`` string ids in parts of 2,048, in a fresh process: the ids arrive part
# by part (as workers report them), the check runs, and the peak is what the process allocated at most: Python
# and numpy objects (tracemalloc) plus Arrow buffers (its memory pool); the process's peak RSS (VmHWM, imports
# included) is printed for reference.
_MEASURE = textwrap.dedent(
    """
    import json, sys, tracemalloc
    import pyarrow as pa
    import pyarrow.compute as pc
    from embedrt.corpus.duplicates import IdCounter

    rows, mode, memory_rows = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    part_rows = 2048
    starts = range(0, rows, part_rows)
    names = [f"part-{i}" for i in range(len(starts))]
    # Warm-up: pyarrow imports pandas on its first conversion of a list (about 26 MB of Python objects), the same
    # for any job size; left out of the measure.
    with IdCounter(["a", "b"], 2, 1) as warm:
        warm.add(0, pa.array(["x"]))
        warm.add(1, pa.array(["x"]))
        assert warm.result().count == 1
    pc.value_counts(pa.array(["x"]))
    tracemalloc.start()

    def part(start):
        ids = [f"doc-{i:012d}" for i in range(start, min(start + part_rows, rows))]
        if start == 0:
            ids[-1] = "doc-000000000000"  # one repeat, so the check has something to report
        return pa.array(ids)

    if mode == "counter":
        with IdCounter(names, rows, memory_rows) as counter:
            for index, start in enumerate(starts):
                counter.add(index, part(start))
            found = counter.result().count
    else:  # every id of the job held at once, as the check did before
        columns = [part(start) for start in starts]
        counts = pc.value_counts(pa.chunked_array(columns).combine_chunks())
        found = len(counts.filter(pc.greater(counts.field("counts"), 1)))
    traced = tracemalloc.get_traced_memory()[1]
    arrow = pa.default_memory_pool().max_memory()
    # VmHWM, not ru_maxrss: the latter keeps the forking pytest's peak across exec.
    status = open("/proc/self/status").read().split("VmHWM:")[1].split()
    rss = int(status[0]) * 1024
    print(json.dumps({"found": found, "traced": traced, "arrow": arrow, "peak": traced + arrow, "rss_hwm": rss}))
    """
)
MEMORY_ROWS = 65536


def _measure(rows: int, mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(rows), mode, str(MEMORY_ROWS)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_driver_memory_stays_bounded_as_the_job_grows() -> None:
    """10x the ids: the counter's peak stays about the same; holding every id (the old check) grows about 10x."""
    small, large = 100_000, 1_000_000
    counter = {rows: _measure(rows, "counter") for rows in (small, large)}
    held = {rows: _measure(rows, "all-ids") for rows in (small, large)}
    figures = {f"{mode} {rows}": m for mode, results in (("counter", counter), ("all-ids", held)) for rows, m in
               results.items()}  # fmt: skip
    print(json.dumps(figures, indent=1))  # shown with -s: the figures behind the assertions
    assert all(m["found"] == 1 for m in (*counter.values(), *held.values()))
    assert held[large]["peak"] > 5 * held[small]["peak"], "the measurement must see the ids it holds"
    assert counter[large]["peak"] < 2 * counter[small]["peak"]
    assert counter[large]["peak"] < held[large]["peak"] / 4
