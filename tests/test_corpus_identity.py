"""A job's identity is its whole pipeline and its options: a resume with another one is refused, naming what
changed, or re-embeds everything under --overwrite (the worker-side check: test_corpus_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TOKENIZER_FILES, clone_dir, drop_normalize, edit_json, tiny_bert_config
from corpus_helpers import min_cosine, mixed_texts, read_output, write_jsonl, write_parquet

from embedrt import Encoder
from embedrt.corpus import embed_corpus
from embedrt.corpus.identity import ModelIdentity
from embedrt.manifest import FileDigest, Manifest, Variant

ROWS, BLOCK_ROWS = 60, 20


@pytest.fixture(scope="module")
def dense_export(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A tiny random BERT + mean Pooling + Dense(32 -> 16, Tanh) + Normalize, exported in fp32."""
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer
    from transformers import BertModel

    from embedrt.export import export

    torch.manual_seed(1)
    hf_dir = tmp_path_factory.mktemp("dense-hf")
    BertModel(tiny_bert_config(num_hidden_layers=1)).save_pretrained(hf_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, hf_dir / name)
    modules = [Transformer(str(hf_dir), max_seq_length=64), Pooling(32, "mean"), Dense(32, 16), Normalize()]
    source = tmp_path_factory.mktemp("dense-st") / "tiny-dense"
    SentenceTransformer(modules=modules, device="cpu").save(str(source))
    return export(source, tmp_path_factory.mktemp("dense-export") / "out", variants=("fp32",), progress=False)


def _transformer_config(model_dir: Path) -> Path:
    return model_dir / "sentence_bert_config.json"


def _cls_pooling(model_dir: Path) -> None:
    path = model_dir / "1_Pooling" / "config.json"
    data = json.loads(path.read_text())
    if "pooling_mode" in data:
        data["pooling_mode"] = "cls"
    else:
        data.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    path.write_text(json.dumps(data))


def _shorter_max_seq_length(model_dir: Path) -> None:
    edit_json(_transformer_config(model_dir), max_seq_length=16)


def _other_dense_weights(model_dir: Path) -> None:
    """New Dense weights (same shapes), listed in the manifest as a re-export from another source would list them."""
    from safetensors.numpy import load_file, save_file

    path = model_dir / "2_Dense" / "model.safetensors"
    tensors = load_file(str(path))
    path.unlink()  # clone_dir made it a link to the original
    save_file({name: (value * -0.5).astype(np.float32) for name, value in tensors.items()}, str(path))
    manifest = Manifest.from_file(model_dir / "manifest.json")
    files = {**manifest.files, "2_Dense/model.safetensors": FileDigest.of(path)}
    Manifest(**{**manifest.__dict__, "files": files}).write(model_dir / "manifest.json")


CASES = {
    "normalize-removed": (drop_normalize, r"normalize True -> False.*modules\.json sha256"),
    "pooling-changed": (_cls_pooling, r"pooling 'mean' -> 'cls'.*1_Pooling/config\.json sha256"),
    "max-seq-length-changed": (_shorter_max_seq_length, r"max_seq_length 64 -> 16.*sentence_bert_config\.json"),
    "dense-weights-changed": (_other_dense_weights, r"\(2_Dense/model\.safetensors sha256 \w{12}\.\.\. -> sha256"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_resume_with_another_pipeline_is_refused_then_redone_whole(
    tmp_path: Path, tiny_export: Path, dense_export: Path, case: str
) -> None:
    """The issue's case: run 1, one part deleted, the resume with a copy of the export whose pipeline differs."""
    change, said = CASES[case]
    model = dense_export if case.startswith("dense") else tiny_export
    texts = mixed_texts(ROWS, seed=50)
    src = write_parquet(tmp_path / "in.parquet", list(range(ROWS)), texts)
    out = tmp_path / "out"
    embed_corpus(src, out, model, block_rows=BLOCK_ROWS)
    other = clone_dir(model, tmp_path / "other")
    change(other)
    assert ModelIdentity.of(other, Variant.FP32).model_sha256 == ModelIdentity.of(model, Variant.FP32).model_sha256
    missing = out / "part-00000-000000000020.parquet"
    missing.unlink()
    with pytest.raises(
        ValueError, match=rf"same ONNX file in another pipeline.*{said}.*must not be mixed.*--overwrite"
    ):
        embed_corpus(src, out, other, block_rows=BLOCK_ROWS)
    assert not missing.exists()  # refused before anything was written

    result = embed_corpus(src, out, other, block_rows=BLOCK_ROWS, overwrite=True)
    assert result.parts_written == 3 and result.manifest["parts_replaced_last_run"] == 2
    ids, vectors = read_output(out)
    assert ids == list(range(ROWS))
    expected = Encoder.load(other, variant="fp32", threads=1).encode(texts)
    assert min_cosine(vectors, expected) >= 0.99999
    assert np.allclose(np.linalg.norm(vectors, axis=1), np.linalg.norm(expected, axis=1), atol=1e-4)
    old = Encoder.load(model, variant="fp32", threads=1).encode(texts)
    assert not np.allclose(vectors, old, atol=1e-3), "the change must change the vectors, or the test proves nothing"
    assert embed_corpus(src, out, other, block_rows=BLOCK_ROWS).already_complete


def test_the_same_pipeline_elsewhere_resumes(tmp_path: Path, tiny_export: Path) -> None:
    """An export copied to another path is the same model: its path is not part of the identity."""
    src = write_parquet(tmp_path / "in.parquet", list(range(ROWS)), mixed_texts(ROWS, seed=51))
    out = tmp_path / "out"
    embed_corpus(src, out, tiny_export, block_rows=BLOCK_ROWS)
    (out / "part-00000-000000000040.parquet").unlink()
    result = embed_corpus(src, out, clone_dir(tiny_export, tmp_path / "copy"), block_rows=BLOCK_ROWS)
    assert result.parts_written == 1
    assert result.manifest["pipeline"]["normalize"] is True and result.manifest["pipeline"]["pooling"] == "mean"


def test_a_resume_under_fail_fails_on_rows_an_earlier_run_skipped(tmp_path: Path, tiny_export: Path) -> None:
    """Started with skip, resumed with fail: it used to end with a _SUCCESS listing skipped rows. Now it fails on
    them as a run from scratch would; resumed with skip it lists them. (fail, then skip: test_corpus.py.)"""
    records = [{"id": i, "text": None if i == 5 else f"text {i}"} for i in range(ROWS)]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    embed_corpus(src, out, tiny_export, block_rows=BLOCK_ROWS, on_bad_row="skip")
    (out / "part-00000-000000000040.parquet").unlink()
    said = r"row 5, line 6 \(id 5\): 'text' is null \(left out by an earlier run with --on-bad-row skip; 1 such"
    with pytest.raises(ValueError, match=said):
        embed_corpus(src, out, tiny_export, block_rows=BLOCK_ROWS, on_bad_row="fail")
    assert not (out / "_SUCCESS").exists()
    result = embed_corpus(src, out, tiny_export, block_rows=BLOCK_ROWS, on_bad_row="skip")
    assert result.parts_written == 0 and result.manifest["on_bad_row"] == "skip"
    assert [s["id"] for s in result.manifest["skipped"]] == [5]
    assert read_output(out)[0] == [i for i in range(ROWS) if i != 5]


def test_a_job_state_of_the_previous_format_is_refused_with_the_way_out(tmp_path: Path, tiny_export: Path) -> None:
    src = write_parquet(tmp_path / "in.parquet", [1, 2], ["a", "b"])
    out = tmp_path / "out"
    embed_corpus(src, out, tiny_export)
    state = json.loads((out / "_job.json").read_text())
    state["format"] = 2
    (out / "_job.json").write_text(json.dumps(state))
    (out / "_SUCCESS").unlink()
    with pytest.raises(ValueError, match=r"job state format 2, this embed-corpus writes 3; pass --overwrite"):
        embed_corpus(src, out, tiny_export)
    assert embed_corpus(src, out, tiny_export, overwrite=True).rows_out == 2
