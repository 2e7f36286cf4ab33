"""A resume that checks content: per-file fingerprints, changed inputs refused or re-embedded, _SUCCESS, the model."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import clone_dir, drop_normalize
from corpus_helpers import (
    kill_when,
    min_cosine,
    mixed_texts,
    read_output,
    start_job,
    worker_spec,
    write_jsonl,
    write_parquet,
)

from embedrt import Encoder
from embedrt.corpus import embed_corpus
from embedrt.corpus.cli import add_parser
from embedrt.corpus.local import run_local
from embedrt.corpus.sources import plan_input
from embedrt.corpus.storage import resolve


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="embedrt")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["embed-corpus", *argv])
    return args.run(args)


def part_mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}


def two_file_corpus(root: Path) -> tuple[Path, list[str]]:
    texts = mixed_texts(600, seed=20)
    (root / "in").mkdir()
    write_parquet(root / "in" / "a.parquet", list(range(300)), texts[:300], row_group_size=64)
    write_parquet(root / "in" / "b.parquet", list(range(300, 600)), texts[300:])
    return root / "in", texts


def test_job_json_records_each_input_file(tmp_path: Path, tiny_export: Path) -> None:
    src, _ = two_file_corpus(tmp_path)
    embed_corpus(src, tmp_path / "out", tiny_export, block_rows=100)
    state = json.loads((tmp_path / "out" / "_job.json").read_text())
    for name, entry in zip(["a.parquet", "b.parquet"], state["files"], strict=True):
        path = src / name
        meta = pq.ParquetFile(path).metadata
        assert entry["uri"] == str(path)
        assert (entry["size"], entry["mtime_ns"]) == (path.stat().st_size, path.stat().st_mtime_ns)
        assert entry["rows"] == meta.num_rows == 300
        assert entry["row_groups"] == [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert state["files"][0]["row_groups"] == [64, 64, 64, 64, 44]  # the layout as written
    write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(mixed_texts(7))])
    embed_corpus(tmp_path / "in.jsonl", tmp_path / "j", tiny_export)
    (entry,) = json.loads((tmp_path / "j" / "_job.json").read_text())["files"]
    stat = (tmp_path / "in.jsonl").stat()
    assert (entry["size"], entry["mtime_ns"], entry["rows"], entry["row_groups"]) == (
        stat.st_size,
        stat.st_mtime_ns,
        7,
        None,
    )


def test_input_edited_in_place_is_refused_then_overwritten(
    tmp_path: Path, tiny_export: Path, capsys: pytest.CaptureFixture
) -> None:
    """The issue's case: one text edited, same row count; the stale vector must not survive."""
    src, texts = two_file_corpus(tmp_path)
    out = tmp_path / "out"
    embed_corpus(src, out, tiny_export, block_rows=100)
    before = part_mtimes(out)
    edited = list(texts[300:])
    edited[17] = "a completely different document about volcanoes"
    write_parquet(src / "b.parquet", list(range(300, 600)), edited)
    with pytest.raises(ValueError, match=r"b\.parquet changed since OUTPUT was written \(.*mtime_ns.*--overwrite"):
        embed_corpus(src, out, tiny_export, block_rows=100)
    assert part_mtimes(out) == before and (out / "_SUCCESS").exists()  # refused: nothing touched
    assert cli(str(src), str(out), "--model", str(tiny_export), "--block-rows", "100", "--overwrite") == 0
    assert "3 parts written, 3 already complete" in capsys.readouterr().err
    after = part_mtimes(out)
    a_parts = [n for n in before if n.startswith("part-00000-")]
    b_parts = [n for n in before if n.startswith("part-00001-")]
    assert {n: after[n] for n in a_parts} == {n: before[n] for n in a_parts}  # a.parquet's parts kept
    assert all(after[n] != before[n] for n in b_parts)  # b.parquet's re-embedded
    manifest = json.loads((out / "_SUCCESS").read_text())
    assert manifest["parts_replaced_last_run"] == 3
    ids, vectors = read_output(out)
    assert ids == list(range(600))
    encoder = Encoder.load(tiny_export, variant="fp32", threads=1)
    assert min_cosine(vectors, encoder.encode(texts[:300] + edited)) >= 0.99999
    # The next run sees the new fingerprint: nothing to do.
    assert embed_corpus(src, out, tiny_export, block_rows=100).already_complete


def test_other_changes_need_overwrite_and_then_redo_everything(tmp_path: Path, tiny_export: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(mixed_texts(50))])
    out = tmp_path / "out"
    embed_corpus(src, out, tiny_export, block_rows=20)
    with src.open("a") as handle:  # a row appended: the size and the row count change
        handle.write(json.dumps({"id": 50, "text": "one more"}) + "\n")
    with pytest.raises(ValueError, match=r"in\.jsonl changed since OUTPUT was written \(size \d+ -> \d+"):
        embed_corpus(src, out, tiny_export, block_rows=20)
    result = embed_corpus(src, out, tiny_export, block_rows=20, overwrite=True)
    assert result.rows_out == 51 and read_output(out)[0] == list(range(51))
    with pytest.raises(ValueError, match=r"variant fp32.*variant int8.*must not be mixed.*--overwrite"):
        embed_corpus(src, out, tiny_export, block_rows=20, variant="int8")
    before = part_mtimes(out)
    result = embed_corpus(src, out, tiny_export, block_rows=20, variant="int8", overwrite=True)
    assert result.parts_written == 3 and result.manifest["variant"] == "int8"
    assert all(part_mtimes(out)[n] != before[n] for n in before)  # another model: every part redone


def test_success_removed_as_soon_as_a_run_has_work(tmp_path: Path, tiny_export: Path) -> None:
    n, block_rows = 12000, 500
    src = write_parquet(tmp_path / "in.parquet", list(range(n)), mixed_texts(n, seed=21))
    out = tmp_path / "out"
    embed_corpus(src, out, tiny_export, block_rows=block_rows)
    deleted = sorted(out.glob("part-*.parquet"))[2:]
    for part in deleted:
        part.unlink()
    proc = start_job(input=src, output=out, model_dir=tiny_export, block_rows=block_rows, workers=1)
    # Killed as soon as the re-run has written one missing part: _SUCCESS must already be gone.
    kill_when(proc, lambda: any(p.exists() for p in deleted))
    assert not all(p.exists() for p in deleted), "the kill must land mid-job"
    assert not (out / "_SUCCESS").exists()
    result = embed_corpus(src, out, tiny_export, block_rows=block_rows)
    assert result.rows_out == n and (out / "_SUCCESS").exists()


@pytest.mark.parametrize("case", ["another-onnx-file", "another-pipeline"])
def test_worker_with_another_model_refuses(tmp_path: Path, tiny_export: Path, case: str) -> None:
    """The driver's sha256 and pipeline travel in the job spec; a worker whose model differs embeds nothing."""
    src = write_parquet(tmp_path / "in.parquet", [1, 2], ["a", "b"])
    plan = plan_input(resolve(src), "text", "id", 10)
    if case == "another-onnx-file":
        spec = worker_spec(tiny_export, model_sha256="0" * 64)
        said = r"the model at .* has sha256 [0-9a-f]{12}"
    else:  # the same ONNX file, Normalize removed
        other = clone_dir(tiny_export, tmp_path / "other")
        drop_normalize(other)
        spec = worker_spec(other, driver_model=tiny_export)
        said = r"the model at .* has the driver's ONNX file in another pipeline \(normalize True -> False"
    out = resolve(tmp_path / "out")
    os.makedirs(out.path)
    with pytest.raises(ValueError, match=rf"worker .*:{os.getpid()}: {said}"):
        run_local(plan.units, spec, out.fs, out, 1, 1, lambda result: None)
    assert not list((tmp_path / "out").iterdir())


def test_resumed_job_reads_back_parts_of_earlier_runs(tmp_path: Path, tiny_export: Path) -> None:
    """Figures of parts from an earlier run come from their footers: skipped rows survive a resume."""
    records = [{"id": f"d{i}", "text": None if i in (3, 45) else f"text {i}"} for i in range(60)]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    embed_corpus(src, out, tiny_export, block_rows=20, on_bad_row="skip")
    (out / "part-00000-000000000020.parquet").unlink()  # not the parts holding d3 or d45
    (out / "_SUCCESS").unlink()
    result = embed_corpus(src, out, tiny_export, block_rows=20, on_bad_row="skip")
    assert result.parts_written == 1
    assert [(s["id"], s["row"], s["line"]) for s in result.manifest["skipped"]] == [("d3", 3, 4), ("d45", 45, 46)]
    assert [p["rows"] for p in result.manifest["parts"]] == [19, 20, 19]
    assert [p["size_bytes"] for p in result.manifest["parts"]] == [
        (out / p["name"]).stat().st_size for p in result.manifest["parts"]
    ]


def test_part_table_matches_input_types(tmp_path: Path, tiny_export: Path) -> None:
    """A uint32 id column stays uint32 through the reader's batches and the part."""
    table = pa.table({"id": pa.array(range(40), pa.uint32()), "text": mixed_texts(40)})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=7)
    embed_corpus(tmp_path / "in.parquet", tmp_path / "out", tiny_export, block_rows=16)
    got = pq.read_table(tmp_path / "out")
    assert got.schema.field("id").type == pa.uint32()
    assert np.array_equal(got.column("id").to_numpy(), np.arange(40))
