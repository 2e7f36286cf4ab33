"""embed-corpus on the local engine: formats, ids, resume after SIGKILL, bad rows, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_helpers import min_cosine, mixed_texts, read_output, write_jsonl, write_parquet

from embedrt import Encoder
from embedrt.corpus import embed_corpus
from embedrt.corpus.cli import add_parser
from embedrt.manifest import sha256_file


@pytest.fixture(scope="module")
def tiny_encoder(tiny_export: Path) -> Encoder:
    return Encoder.load(tiny_export, variant="fp32", threads=1)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="embedrt")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["embed-corpus", *argv])
    return args.run(args)


def test_parquet_vectors_ids_schema_and_manifest(tmp_path: Path, tiny_export: Path, tiny_encoder: Encoder) -> None:
    texts = mixed_texts(1000)
    ids = [f"doc-{i:04d}" for i in range(1000)]
    src = write_parquet(tmp_path / "in.parquet", ids, texts, row_group_size=170)
    result = embed_corpus(src, tmp_path / "out", tiny_export, block_rows=300, workers=2)
    got_ids, vectors = read_output(tmp_path / "out")
    assert got_ids == ids  # one to one, in input order, no duplicates
    assert min_cosine(vectors, tiny_encoder.encode(texts)) >= 0.99999
    schema = pq.read_schema(next((tmp_path / "out").glob("part-*.parquet")))
    assert schema.field("id").type == pa.string()
    assert schema.field("embedding").type == pa.list_(pa.float32(), 32)
    manifest = json.loads((tmp_path / "out" / "_SUCCESS").read_text())
    assert manifest == result.manifest
    figures = (manifest["rows_in"], manifest["rows_out"], manifest["rows_skipped"], manifest["skipped"])
    assert figures == (1000, 1000, 0, [])
    assert manifest["model_sha256"] == sha256_file(tiny_export / "model.fp32.onnx")
    assert manifest["variant"] == "fp32" and manifest["model_dir"] == str(tiny_export.resolve())
    assert manifest["embedrt_version"] == "0.1.0" and manifest["elapsed_s"] > 0
    assert manifest["int8_paths"] is None  # fp32
    assert len(manifest["parts"]) == 4  # 300 + 300 + 300 + 100 rows
    assert not list((tmp_path / "out").glob(".tmp-*"))


def test_parquet_directory_int_ids_and_int8(tmp_path: Path, tiny_export: Path) -> None:
    texts = mixed_texts(500, seed=1)
    (tmp_path / "in").mkdir()
    write_parquet(tmp_path / "in" / "a.parquet", list(range(0, 250)), texts[:250])
    write_parquet(tmp_path / "in" / "b.parquet", list(range(1000, 1250)), texts[250:])
    result = embed_corpus(tmp_path / "in", tmp_path / "out", tiny_export, variant="int8", block_rows=200)
    got_ids, vectors = read_output(tmp_path / "out")
    assert got_ids == list(range(250)) + list(range(1000, 1250))
    assert pq.read_schema(next((tmp_path / "out").glob("part-*.parquet"))).field("id").type == pa.int64()
    encoder = Encoder.load(tiny_export, variant="int8", threads=1)
    # Every part records its worker's int8 kernel path; the manifest counts parts per path.
    assert result.manifest["int8_paths"] == {encoder.info()["int8_kernel"]["path"]: len(result.manifest["parts"])}
    expected = encoder.encode(texts)
    assert min_cosine(vectors, expected) >= 0.999  # int8 kernels may differ with batch composition


def test_jsonl_and_txt_inputs(tmp_path: Path, tiny_export: Path, tiny_encoder: Encoder) -> None:
    texts = mixed_texts(300, seed=2)
    write_jsonl(tmp_path / "in.jsonl", [{"key": 7 * i, "body": t, "other": 1} for i, t in enumerate(texts)])
    src = tmp_path / "in.jsonl"
    embed_corpus(src, tmp_path / "j", tiny_export, id_column="key", text_column="body", block_rows=128)
    ids, vectors = read_output(tmp_path / "j")
    assert ids == [7 * i for i in range(300)]
    assert pq.read_schema(next((tmp_path / "j").glob("part-*.parquet"))).names == ["key", "embedding"]
    assert min_cosine(vectors, tiny_encoder.encode(texts)) >= 0.99999
    lines = [*texts[:100], "", "windows line"]
    # A CRLF line, an empty document and a last line without a newline all count as documents.
    (tmp_path / "in.txt").write_bytes("\n".join(lines[:-1]).encode() + b"\r\n" + lines[-1].encode())
    result = embed_corpus(tmp_path / "in.txt", tmp_path / "t", tiny_export, block_rows=50)
    ids, vectors = read_output(tmp_path / "t")
    assert ids == list(range(102)) and result.manifest["rows_out"] == 102
    assert min_cosine(vectors, tiny_encoder.encode(lines)) >= 0.99999


def test_rerun_of_finished_job_does_nothing(tmp_path: Path, tiny_export: Path, capsys: pytest.CaptureFixture) -> None:
    src = write_parquet(tmp_path / "in.parquet", list(range(100)), mixed_texts(100))
    out = tmp_path / "out"
    assert cli(str(src), str(out), "--model", str(tiny_export), "--block-rows", "40") == 0
    err = capsys.readouterr().err
    assert "100 of 100 rows embedded" in err and "/s)" in err  # the progress line with documents/s
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert cli(str(src), str(out), "--model", str(tiny_export), "--block-rows", "40") == 0
    assert "already complete (100 rows); nothing to do" in capsys.readouterr().err
    parts = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    assert parts == {k: v for k, v in mtimes.items() if k.startswith("part-")}  # no part rewritten


def test_other_model_or_variant_is_refused(tmp_path: Path, tiny_export: Path) -> None:
    src = write_parquet(tmp_path / "in.parquet", list(range(50)), mixed_texts(50))
    embed_corpus(src, tmp_path / "out", tiny_export)
    with pytest.raises(ValueError, match=r"variant fp32 .*asks for .* variant int8.*must not be mixed"):
        embed_corpus(src, tmp_path / "out", tiny_export, variant="int8")
    with pytest.raises(ValueError, match="block_rows 2048, this run has 10"):
        embed_corpus(src, tmp_path / "out", tiny_export, block_rows=10)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("not ours")
    with pytest.raises(ValueError, match="not an embed-corpus output"):
        embed_corpus(src, tmp_path / "other", tiny_export)


BAD = [
    ({"id": "d3"}, "no 'text' field"),
    ({"id": "d5", "text": None}, "'text' is null"),
    ({"id": "d6", "text": 42}, "'text' is int; expected str"),
    ({"id": "d8", "text": "a\ud800b"}, "'text' contains a lone surrogate U+D800 at position 1"),
]


def _bad_corpus(path: Path) -> tuple[Path, list[str]]:
    records = [{"id": f"d{i}", "text": f"good text {i}"} for i in range(10)]
    for record, _ in BAD:
        records[int(record["id"][1:])] = record
    bad_ids = {record["id"] for record, _ in BAD}
    return write_jsonl(path, records), [r["text"] for r in records if r["id"] not in bad_ids]


@pytest.mark.parametrize(("record", "reason"), BAD)
def test_bad_row_fails_naming_id_and_reason(tmp_path: Path, tiny_export: Path, record: dict, reason: str) -> None:
    records = [{"id": f"d{i}", "text": f"good {i}"} for i in range(5)] + [record]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    with pytest.raises((TypeError, ValueError), match=rf"in.jsonl: row 5 \(id '{record['id']}'\): {re.escape(reason)}"):
        embed_corpus(src, tmp_path / "out", tiny_export)
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_bad_rows_skipped_and_listed(tmp_path: Path, tiny_export: Path, tiny_encoder: Encoder) -> None:
    src, good = _bad_corpus(tmp_path / "in.jsonl")
    result = embed_corpus(src, tmp_path / "out", tiny_export, on_bad_row="skip", block_rows=4)
    ids, vectors = read_output(tmp_path / "out")
    assert ids == ["d0", "d1", "d2", "d4", "d7", "d9"]
    assert min_cosine(vectors, tiny_encoder.encode(good)) >= 0.99999
    manifest = result.manifest
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_skipped"]) == (10, 6, 4)
    listed = {s["id"]: s["reason"] for s in manifest["skipped"]}
    assert list(listed) == ["d3", "d5", "d6", "d8"]
    for record, reason in BAD:
        assert reason in listed[record["id"]]


def test_txt_invalid_utf8_is_a_bad_row(tmp_path: Path, tiny_export: Path) -> None:
    (tmp_path / "in.txt").write_bytes(b"fine\nbad \xff byte\nalso fine\n")
    with pytest.raises(ValueError, match=r"row 1 \(id 1\): 'text' contains a lone surrogate U\+DCFF"):
        embed_corpus(tmp_path / "in.txt", tmp_path / "out", tiny_export)
    result = embed_corpus(tmp_path / "in.txt", tmp_path / "out", tiny_export, on_bad_row="skip")
    assert read_output(tmp_path / "out")[0] == [0, 2]
    assert [s["id"] for s in result.manifest["skipped"]] == [1]


def test_bad_input_errors_name_the_file(tmp_path: Path, tiny_export: Path) -> None:
    src = write_parquet(tmp_path / "in.parquet", [1, 2], ["a", "b"])
    with pytest.raises(ValueError, match=r"in.parquet has no text column 'body' \(columns: id, text\)"):
        embed_corpus(src, tmp_path / "out", tiny_export, text_column="body")
    (tmp_path / "in.jsonl").write_text('{"id": 1, "text": "a"}\n{"id": "x", "text": "b"}\n')
    with pytest.raises(ValueError, match=r"in.jsonl:2: id 'x' is not int64"):
        embed_corpus(tmp_path / "in.jsonl", tmp_path / "out2", tiny_export)
    (tmp_path / "n.parquet").write_bytes(b"")
    write_parquet(tmp_path / "n.parquet", [1, None], ["a", "b"])
    with pytest.raises(ValueError, match=r"n.parquet: row 1 has a null id"):
        embed_corpus(tmp_path / "n.parquet", tmp_path / "out3", tiny_export)
    with pytest.raises(FileNotFoundError, match=r"missing\.txt not found"):
        embed_corpus(tmp_path / "missing.txt", tmp_path / "out4", tiny_export)
    with pytest.raises(ValueError, match="unknown engine 'spark'; expected one of local, ray"):
        embed_corpus(src, tmp_path / "out5", tiny_export, engine="spark")
    with pytest.raises(ValueError, match="unknown onbadrow 'drop'"):
        embed_corpus(src, tmp_path / "out5", tiny_export, on_bad_row="drop")
    with pytest.raises(FileNotFoundError, match="is not an embedrt export"):
        cli(str(src), str(tmp_path / "out6"), "--model", str(tmp_path))


@pytest.mark.parametrize("kind", ["txt", "parquet", "jsonl"])
def test_empty_input_gives_empty_output_with_schema(tmp_path: Path, tiny_export: Path, kind: str) -> None:
    src = tmp_path / f"in.{kind}"
    if kind == "parquet":
        pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), src)
    else:
        src.write_bytes(b"")
    result = embed_corpus(src, tmp_path / "out", tiny_export)
    table = pq.read_table(tmp_path / "out")
    assert table.num_rows == 0 and result.manifest["rows_in"] == 0
    expected_id = {"txt": pa.int64(), "parquet": pa.string(), "jsonl": pa.string()}[kind]
    assert table.schema.field("id").type == expected_id
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)


RUN_JOB = """
import sys
from embedrt.corpus import embed_corpus
embed_corpus(sys.argv[1], sys.argv[2], sys.argv[3], block_rows=int(sys.argv[4]), workers=1, engine=sys.argv[5])
"""


def kill_after_first_part(args: list[str], out: Path, timeout: float = 120.0) -> int:
    """Run a job in a subprocess, SIGKILL it once its first part exists; return how many parts existed then."""
    proc = subprocess.Popen([sys.executable, "-c", RUN_JOB, *args], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not list(out.glob("part-*.parquet")):
            if proc.poll() is not None:
                raise AssertionError(f"the job ended before writing a part: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("no part written in time")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return len(list(out.glob("part-*.parquet")))


def test_resume_after_sigkill_gives_the_rows_of_an_uninterrupted_run(tmp_path: Path, tiny_export: Path) -> None:
    n, block_rows = 12000, 500
    texts = mixed_texts(n, seed=3)
    src = write_parquet(tmp_path / "in.parquet", [f"id{i}" for i in range(n)], texts)
    out = tmp_path / "out"
    done_at_kill = kill_after_first_part([str(src), str(out), str(tiny_export), str(block_rows), "local"], out)
    total = n // block_rows
    assert 1 <= done_at_kill < total, "the kill must land mid-job"
    assert not (out / "_SUCCESS").exists()
    result = embed_corpus(src, out, tiny_export, block_rows=block_rows, workers=1)
    assert result.manifest["parts_reused_last_run"] >= done_at_kill
    assert result.parts_written == total - result.manifest["parts_reused_last_run"]
    embed_corpus(src, tmp_path / "clean", tiny_export, block_rows=block_rows, workers=1)
    ids, vectors = read_output(out)
    clean_ids, clean_vectors = read_output(tmp_path / "clean")
    assert ids == clean_ids == [f"id{i}" for i in range(n)]
    np.testing.assert_array_equal(vectors, clean_vectors)
    assert not list(out.glob(".tmp-*"))  # a temporary file of the killed run is cleaned
