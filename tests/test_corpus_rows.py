"""Rows: malformed .jsonl lines, duplicate ids, encode([]) in every precision, kept columns, the device option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_helpers import min_cosine, mixed_texts, read_output, write_jsonl, write_parquet

from embedrt import Encoder
from embedrt.corpus import embed_corpus
from embedrt.corpus.ray_engine import actor_resources


@pytest.fixture(scope="module")
def tiny_encoder(tiny_export: Path) -> Encoder:
    return Encoder.load(tiny_export, variant="fp32", threads=1)


MALFORMED = [
    b'{"id": "a", "text": "first good line"}',
    b'{"id": "b", "text": "broken',  # line 2: not JSON
    b"[1, 2, 3]",  # line 3: not an object
    b'{"text": "no id here"}',  # line 4: no id
    b'{"id": 7, "text": "an integer id among strings"}',  # line 5: id of another type
    b'{"id": "c", "text": "last good line"}',
]


def test_malformed_jsonl_lines_are_skipped_and_listed(tmp_path: Path, tiny_export: Path, tiny_encoder) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(MALFORMED) + b"\n")
    with pytest.raises(ValueError, match=r"in\.jsonl:2 is not valid JSON.*--on-bad-row skip"):
        embed_corpus(src, tmp_path / "fail", tiny_export)
    result = embed_corpus(src, tmp_path / "out", tiny_export, on_bad_row="skip", block_rows=4)
    ids, vectors = read_output(tmp_path / "out")
    assert ids == ["a", "c"]
    assert min_cosine(vectors, tiny_encoder.encode(["first good line", "last good line"])) >= 0.99999
    skipped = result.manifest["skipped"]
    assert [(s["line"], s["row"], s["id"]) for s in skipped] == [(2, 1, None), (3, 2, None), (4, 3, None), (5, 4, None)]
    assert skipped[0]["reason"].startswith("is not valid JSON")
    assert "expected a JSON object" in skipped[1]["reason"]
    assert "no id field 'id'" in skipped[2]["reason"]
    assert "id 7 is not string" in skipped[3]["reason"]
    assert (result.manifest["rows_in"], result.manifest["rows_out"], result.manifest["rows_skipped"]) == (6, 2, 4)


def test_first_line_malformed_does_not_decide_the_id_type(tmp_path: Path, tiny_export: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b"not json at all\n" + b"".join(json.dumps({"id": i, "text": f"t{i}"}).encode() + b"\n" for i in range(5))
    )
    result = embed_corpus(src, tmp_path / "out", tiny_export, on_bad_row="skip")
    assert read_output(tmp_path / "out")[0] == [0, 1, 2, 3, 4]
    assert pq.read_schema(next((tmp_path / "out").glob("part-*"))).field("id").type == pa.int64()
    assert [s["line"] for s in result.manifest["skipped"]] == [1]


def test_duplicate_ids_fail_naming_the_first_then_keep(tmp_path: Path, tiny_export: Path) -> None:
    ids = [f"u{i}" for i in range(100)]
    ids[40] = "u7"  # u7 twice, first at row 7
    ids[90] = ids[95] = "u3"  # u3 three times
    src = write_parquet(tmp_path / "in.parquet", ids, mixed_texts(100, seed=40))
    out = tmp_path / "out"
    message = (
        r"2 ids appear more than once: 'u3' on 3 rows \(in part-00000-000000000000\.parquet, "
        r"part-00000-000000000075\.parquet\); 'u7' on 2 rows \(in part-00000-000000000000\.parquet, "
        r"part-00000-000000000025\.parquet\).*--on-duplicate-id keep"
    )
    with pytest.raises(ValueError, match=message):
        embed_corpus(src, out, tiny_export, block_rows=25)
    assert not (out / "_SUCCESS").exists() and len(list(out.glob("part-*"))) == 4
    assert not (out / "_lock").exists()  # a failed run releases OUTPUT
    result = embed_corpus(src, out, tiny_export, block_rows=25, on_duplicate_id="keep")
    assert result.parts_written == 0  # the parts of the refused run are kept
    assert result.manifest["duplicate_ids"]["count"] == 2
    assert [d["id"] for d in result.manifest["duplicate_ids"]["first"]] == ["u3", "u7"]
    assert read_output(out)[0] == ids
    clean = embed_corpus(write_parquet(tmp_path / "ok.parquet", [1, 2], ["a", "b"]), tmp_path / "ok", tiny_export)
    assert clean.manifest["duplicate_ids"] == {"count": 0, "first": []}


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_encode_empty_in_every_precision(tiny_encoder: Encoder, precision: str) -> None:
    from sentence_transformers.util import quantize_embeddings

    texts = mixed_texts(6, seed=41)
    floats = tiny_encoder.encode(texts)
    reference = quantize_embeddings(floats, precision=precision)
    np.testing.assert_array_equal(tiny_encoder.encode(texts, precision=precision), reference)
    empty = tiny_encoder.encode([], precision=precision)
    # No rows, and the dtype and width a non-empty batch has in sentence-transformers (packed bits for binary).
    assert empty.shape == (0, reference.shape[1]) and empty.dtype == reference.dtype


def test_keep_columns_parquet(tmp_path: Path, tiny_export: Path) -> None:
    n = 120
    table = pa.table(
        {
            "id": list(range(n)),
            "text": [None if i == 50 else t for i, t in enumerate(mixed_texts(n, seed=42))],
            "title": [f"title {i}" for i in range(n)],
            "year": pa.array([1900 + i for i in range(n)], pa.int16()),
            "tags": [[f"t{i % 3}", "x"] for i in range(n)],
            "unused": [0.5] * n,
        }
    )
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=50)
    result = embed_corpus(
        tmp_path / "in.parquet",
        tmp_path / "out",
        tiny_export,
        keep_columns="title,year, tags",
        block_rows=40,
        on_bad_row="skip",
    )
    got = pq.read_table(tmp_path / "out")
    assert got.column_names == ["id", "title", "year", "tags", "embedding"]
    kept = table.filter(pa.array([i != 50 for i in range(n)])).select(["id", "title", "year", "tags"])
    assert got.select(["id", "title", "year", "tags"]).equals(kept)  # aligned row for row, types preserved
    assert result.manifest["keep_columns"] == ["title", "year", "tags"]
    with pytest.raises(ValueError, match=r"in\.parquet has no kept column 'nope'.*--keep-columns"):
        embed_corpus(tmp_path / "in.parquet", tmp_path / "o2", tiny_export, keep_columns=["nope"])
    with pytest.raises(ValueError, match="'embedding' cannot be kept"):
        embed_corpus(tmp_path / "in.parquet", tmp_path / "o3", tiny_export, keep_columns=["embedding"])
    with pytest.raises(ValueError, match="'id' is the id column"):
        embed_corpus(tmp_path / "in.parquet", tmp_path / "o4", tiny_export, keep_columns=["id"])
    (tmp_path / "in.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"\.txt file: it has no columns to keep \(title\)"):
        embed_corpus(tmp_path / "in.txt", tmp_path / "o5", tiny_export, keep_columns=["title"])


def test_keep_columns_jsonl_types(tmp_path: Path, tiny_export: Path) -> None:
    records = [
        {"id": "a", "text": "one", "n": 1, "score": 1.5, "ok": True, "meta": {"k": [1, 2]}, "note": None},
        {"id": "b", "text": "two", "n": 2, "score": 2, "ok": False, "meta": [3], "note": "later"},
        {"id": "c", "text": "three", "score": None, "ok": True, "meta": "plain", "note": "x"},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    embed_corpus(src, tmp_path / "out", tiny_export, keep_columns=["n", "score", "ok", "meta", "note"])
    got = pq.read_table(tmp_path / "out")
    types = {name: str(got.schema.field(name).type) for name in ("n", "score", "ok", "meta", "note")}
    assert types == {"n": "int64", "score": "double", "ok": "bool", "meta": "string", "note": "string"}
    assert got.column("n").to_pylist() == [1, 2, None]
    assert got.column("score").to_pylist() == [1.5, 2.0, None]
    assert [json.loads(m) for m in got.column("meta").to_pylist()] == [{"k": [1, 2]}, [3], "plain"]
    assert got.column("note").to_pylist() == [None, "later", "x"]
    bad = [*records, {"id": "d", "text": "four", "n": "not a number"}]
    write_jsonl(tmp_path / "bad.jsonl", bad)
    with pytest.raises(
        ValueError, match=r"bad\.jsonl:4: field 'n' is string, but its first value in the file is int64"
    ):
        embed_corpus(tmp_path / "bad.jsonl", tmp_path / "b", tiny_export, keep_columns=["n"])


def test_device_cuda_code_path_on_the_cpu(tmp_path: Path, tiny_export: Path) -> None:
    import onnxruntime

    assert actor_resources({"CPU": 8.0, "GPU": 2.0}, 2, 1, "cuda") == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert actor_resources({"CPU": 8.0, "GPU": 2.0}, 2, 1, "cpu") == {"num_cpus": 1.0}
    with pytest.raises(ValueError, match="has 1 GPUs: too few for 2 workers with --device cuda"):
        actor_resources({"CPU": 8.0, "GPU": 1.0}, 2, 1, "cuda")
    src = write_parquet(tmp_path / "in.parquet", [1], ["a"])
    with pytest.raises(ValueError, match="unknown workerdevice 'auto'; expected one of cpu, cuda"):
        embed_corpus(src, tmp_path / "out", tiny_export, device="auto")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal below is for CPU builds")
    with pytest.raises(RuntimeError, match="device='cuda' but onnxruntime offers only"):
        embed_corpus(src, tmp_path / "out", tiny_export, device="cuda")
    assert not (tmp_path / "out").exists()  # refused before OUTPUT was touched


def test_a_jsonl_id_past_int64_names_file_and_line_and_is_skipped(tmp_path: Path, tiny_export: Path) -> None:
    """JSON integers are unbounded; an int64 id column is not: the error names the file and line, skip works."""
    records = [{"id": 1, "text": "one"}, {"id": 2**63, "text": "too big"}, {"id": -(2**63) - 1, "text": "too small"}]
    records += [{"id": 2**63 - 1, "text": "the largest"}]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    with pytest.raises(ValueError, match=r"in\.jsonl:2: id 'id' 9223372036854775808 is outside the int64 range"):
        embed_corpus(src, tmp_path / "fail", tiny_export)
    result = embed_corpus(src, tmp_path / "out", tiny_export, on_bad_row="skip")
    assert read_output(tmp_path / "out")[0] == [1, 2**63 - 1]
    assert [(s["line"], s["id"]) for s in result.manifest["skipped"]] == [(2, None), (3, None)]
    assert "outside the int64 range" in result.manifest["skipped"][1]["reason"]


def test_a_kept_jsonl_integer_past_int64_is_a_bad_row(tmp_path: Path, tiny_export: Path) -> None:
    records = [
        {"id": "a", "text": "one", "n": 1, "x": 1.5},
        {"id": "b", "text": "two", "n": 2**64, "x": 2},
        {"id": "c", "text": "three", "n": 3, "x": 10**400},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    with pytest.raises(ValueError, match=r"in\.jsonl:2: field 'n' 18446744073709551616 is outside the int64 range"):
        embed_corpus(src, tmp_path / "fail", tiny_export, keep_columns=["n"])
    with pytest.raises(ValueError, match=r"in\.jsonl:3: field 'x': 1000000000\d* is too large for a double"):
        embed_corpus(src, tmp_path / "fail2", tiny_export, keep_columns=["x"])
    result = embed_corpus(src, tmp_path / "out", tiny_export, keep_columns=["n", "x"], on_bad_row="skip")
    assert pq.read_table(tmp_path / "out").column("n").to_pylist() == [1]
    assert [s["line"] for s in result.manifest["skipped"]] == [2, 3]


def test_an_integer_past_pythons_digit_limit_is_a_bad_line(tmp_path: Path, tiny_export: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": 1, "text": "one"}\n{"id": ' + b"9" * 5000 + b', "text": "huge"}\n')
    with pytest.raises(ValueError, match=r"in\.jsonl:2 is not valid JSON"):
        embed_corpus(src, tmp_path / "fail", tiny_export)
    result = embed_corpus(src, tmp_path / "out", tiny_export, on_bad_row="skip")
    assert result.rows_out == 1 and result.manifest["skipped"][0]["line"] == 2
