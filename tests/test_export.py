"""The export step on the tiny random model: files, manifest, checks and refusals."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from conftest import clone_dir, drop_normalize, edit_json, fp16_runs_on_cpu, reference_encode

from embedrt import Encoder
from embedrt.export import ParityError, export, parity
from embedrt.export.parity import CHECK_SENTENCES, compare
from embedrt.manifest import Variant

CHECK_TEXTS = list(CHECK_SENTENCES)


def test_export_directory_is_self_contained(tiny_export):
    names = {p.relative_to(tiny_export).as_posix() for p in tiny_export.rglob("*") if p.is_file()}
    assert {
        "model.fp32.onnx",
        "model.int8.onnx",
        "manifest.json",
        "modules.json",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "1_Pooling/config.json",
        "config.json",
    } <= names
    assert not any(n.endswith((".safetensors", ".bin")) for n in names)


def test_manifest_contents(tiny_export, tiny_model_dir):
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["source"]["path"] == str(tiny_model_dir)
    assert len(manifest["source"]["config_sha256"]) == 64
    for name, entry in manifest["variants"].items():
        model = onnx.load(str(tiny_export / entry["file"]))
        assert entry["opset"] == next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert entry["inputs"] == [i.name for i in model.graph.input]
        assert entry["outputs"] == [o.name for o in model.graph.output]
        assert entry["recipe"] and entry["parity"]["n"] > 10, name


def test_fp32_graph_is_fused(tiny_export):
    ops = {node.op_type for node in onnx.load(str(tiny_export / "model.fp32.onnx")).graph.node}
    # SkipLayerNormalization and EmbedLayerNormalization are left out on purpose: slower on the CPU.
    assert {"Attention", "BiasGelu"} <= ops and not {"SkipLayerNormalization", "EmbedLayerNormalization"} & ops
    int8 = onnx.load(str(tiny_export / "model.int8.onnx")).graph
    assert {"MatMulIntegerToFloat", "QuantizeLinear", "MultiHeadAttention"} <= {node.op_type for node in int8.node}
    weights = {i.name for i in int8.initializer}
    # Only the activation-by-activation products of attention stay float.
    assert not [n.name for n in int8.node if n.op_type == "MatMul" and set(n.input) & weights]


def test_export_without_normalize_and_fp16(tiny_model_dir, tmp_path):
    source = clone_dir(tiny_model_dir, tmp_path / "source")
    drop_normalize(source)
    out = export(source, tmp_path / "out", variants="fp16,fp32", progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["variants"]) == ["fp32", "fp16"]
    if fp16_runs_on_cpu(out / "model.fp16.onnx"):  # then it must have been measured, here and by the export
        assert "skipped" not in manifest["variants"]["fp16"]["parity"]
        got = Encoder.load(out, variant="fp16").encode(CHECK_TEXTS)
        assert compare(reference_encode(source, CHECK_TEXTS), got).min_cosine >= 0.999
    else:
        assert "cannot run" in manifest["variants"]["fp16"]["parity"]["skipped"]
    fp16_ops = {node.op_type for node in onnx.load(str(out / "model.fp16.onnx")).graph.node}
    assert {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization"} <= fp16_ops  # every fusion, for CUDA


def test_old_format_tiny_model_exports(tiny_model_dir, tmp_path):
    """The pre-5.2 on-disk format: old module type names, max_seq_length and legacy pooling flags."""
    source = clone_dir(tiny_model_dir, tmp_path / "source")
    modules = json.loads((source / "modules.json").read_text())
    for module, name in zip(modules, ("Transformer", "Pooling", "Normalize"), strict=True):
        module["type"] = f"sentence_transformers.models.{name}"
    (source / "modules.json").write_text(json.dumps(modules))
    (source / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 40, "do_lower_case": False}))
    (source / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 32,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_cls_token": False,
            }
        )
    )
    out = export(source, tmp_path / "out", variants=["fp32"], progress=False)
    assert Encoder.load(out).max_seq_length == 40


def test_pickle_weights_need_the_flag(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    source = tmp_path / "source"
    shutil.copytree(tiny_model_dir, source)
    state = load_file(str(source / "model.safetensors"))
    (source / "model.safetensors").unlink()
    torch.save(state, source / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"only pickle weights \(pytorch_model\.bin\).*allow_pickle=True"):
        export(source, tmp_path / "out", variants=["fp32"], progress=False)
    out = export(source, tmp_path / "out", variants=["fp32"], progress=False, allow_pickle=True)
    assert (out / "model.fp32.onnx").is_file()


def test_non_bert_model_is_refused(tiny_model_dir, tmp_path):
    source = clone_dir(tiny_model_dir, tmp_path / "source")
    edit_json(source / "config.json", model_type="deberta-v2")  # roberta and camembert are supported since issue 25
    with pytest.raises(ValueError, match=r"config\.json: model_type 'deberta-v2' is not supported"):
        export(source, tmp_path / "out", progress=False)


def test_bad_variants_and_source(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match=r"unknown variant 'int4'"):
        export(tiny_model_dir, tmp_path / "out", variants="fp32,int4", progress=False)
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        export(tmp_path / "missing", tmp_path / "out", progress=False)


def test_out_of_tolerance_variant_never_reaches_the_manifest(tiny_model_dir, tiny_export, tmp_path, monkeypatch):
    monkeypatch.setitem(parity.TOLERANCE, Variant.INT8, (0.9999999, 1e-9))
    # Into a fresh directory, and over an earlier good export whose int8 file must not stay loadable.
    for out in (tmp_path / "fresh", clone_dir(tiny_export, tmp_path / "earlier")):
        with pytest.raises(ParityError, match=r"model\.int8\.onnx disagrees with the PyTorch reference: min cos"):
            export(tiny_model_dir, out, variants=["fp32", "int8"], progress=False)
        assert not (out / "model.int8.onnx").exists()
        manifest = json.loads((out / "manifest.json").read_text())
        assert list(manifest["variants"]) == ["fp32"], out  # the variant that passed stays
        with pytest.raises(ValueError, match="has no int8 variant"):
            Encoder.load(out, variant="int8")
        assert Encoder.load(out).encode("still loads").shape == (32,)


def test_int8_calibration_file(tiny_model_dir, tmp_path):
    texts = tmp_path / "calibration.txt"
    texts.write_text("A man is playing a guitar.\nTwo dogs run across a snowy field.\n", encoding="utf-8")
    out = export(tiny_model_dir, tmp_path / "out", variants="int8", calibration=texts, progress=False)
    recipe = json.loads((out / "manifest.json").read_text())["variants"]["int8"]["recipe"]
    assert "calibrated on 2 texts of calibration.txt" in recipe
    with pytest.raises(FileNotFoundError, match=r"calibration file .*missing\.txt not found"):
        export(tiny_model_dir, tmp_path / "out2", variants="int8", calibration=tmp_path / "missing.txt", progress=False)
    assert not (tmp_path / "out2").exists()  # the bad file is reported before anything is written
