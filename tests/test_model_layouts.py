"""The model shapes users run, each built here with random weights in its exact on-disk format, exported and
compared with sentence-transformers: Dense heads, the older 0_Transformer layout, 512-token models, external data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TOKENIZER_FILES, clone_dir, reference_encode

from embedrt import Encoder
from embedrt.export import export
from embedrt.export.parity import CHECK_SENTENCES, compare

CHECK_TEXTS = list(CHECK_SENTENCES)
LONG_TEXTS = [" ".join(CHECK_TEXTS) * 6, "word " * 700, CHECK_TEXTS[0]]


def _bert_dir(root: Path, minilm_dir: Path, max_positions: int = 128, hidden: int = 32) -> Path:
    """A random 2-layer BertModel with MiniLM's tokenizer, as transformers saves it."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    BertModel(config).save_pretrained(root, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, root / name)
    return root


def _st_model(tmp_path: Path, minilm_dir: Path, *tail, pooling: str = "mean", max_seq_length: int = 64, **kw) -> Path:
    """Save Transformer -> Pooling -> ``tail`` with the installed sentence-transformers; return the directory."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    hf = _bert_dir(tmp_path / "hf", minilm_dir, **kw)
    torch.manual_seed(2)
    modules = [Transformer(str(hf), max_seq_length=max_seq_length), Pooling(32, pooling), *tail]
    out = tmp_path / "st"
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


def _dense(in_features: int, out_features: int, activation: str, bias: bool = True):
    import torch
    from sentence_transformers.models import Dense

    return Dense(in_features, out_features, bias=bias, activation_function=getattr(torch.nn, activation)())


def _assert_exact(source: Path, out: Path, texts: list[str] = CHECK_TEXTS, variant: str = "fp32") -> float:
    reference = reference_encode(source, texts)
    got = Encoder.load(out, variant=variant).encode(texts)
    assert got.shape == reference.shape
    figures = compare(reference, got)
    if variant == "fp32":
        assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures
    return figures.min_cosine


def test_labse_shape_cls_dense_tanh_normalize(minilm_dir, tmp_path):
    """LaBSE's pipeline: CLS pooling, Dense(Tanh), Normalize; int8's parity check covers the Dense head too."""
    from sentence_transformers.models import Normalize

    source = _st_model(tmp_path, minilm_dir, _dense(32, 24, "Tanh"), Normalize(), pooling="cls")
    modules = json.loads((source / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    out = export(source, tmp_path / "out", variants="fp32,int8", progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    dense_file = f"{modules[2]['path']}/model.safetensors"
    assert set(manifest["files"]) == {dense_file} and len(manifest["files"][dense_file]["sha256"]) == 64
    assert Encoder.load(out).dimension == 24
    _assert_exact(source, out)
    assert _assert_exact(source, out, variant="int8") >= 0.99


@pytest.mark.parametrize(
    ("activations", "bias"),
    [(("GELU", "ReLU"), True), (("Identity", "Sigmoid"), False), (("SiLU", "Tanh"), True)],
)
def test_stacked_dense_modules_with_each_activation(minilm_dir, tmp_path, activations, bias):
    first, second = activations
    source = _st_model(tmp_path, minilm_dir, _dense(32, 48, first, bias), _dense(48, 16, second, bias))
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    _assert_exact(source, out)


def test_dense_in_the_old_module_format_and_pickle_weights(minilm_dir, tmp_path):
    """sentence-transformers < 5 type names and a pytorch_model.bin Dense, which needs --allow-pickle."""
    import torch

    source = _st_model(tmp_path, minilm_dir, _dense(32, 16, "Tanh"))
    modules = json.loads((source / "modules.json").read_text())
    for module, name in zip(modules, ("Transformer", "Pooling", "Dense"), strict=True):
        module["type"] = f"sentence_transformers.models.{name}"
    (source / "modules.json").write_text(json.dumps(modules))
    dense_dir = source / modules[2]["path"]
    from safetensors.torch import load_file

    torch.save(load_file(str(dense_dir / "model.safetensors")), dense_dir / "pytorch_model.bin")
    (dense_dir / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"only pickle weights.*allow-pickle"):
        export(source, tmp_path / "refused", variants="fp32", progress=False)
    out = export(source, tmp_path / "out", variants="fp32", allow_pickle=True, progress=False)
    assert (out / modules[2]["path"] / "model.safetensors").is_file()
    assert not list(out.rglob("*.bin"))
    _assert_exact(source, out)


def test_tampered_dense_weights_are_refused_at_load(minilm_dir, tmp_path):
    source = _st_model(tmp_path, minilm_dir, _dense(32, 16, "Tanh"))
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    weights = next(out.rglob("model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        Encoder.load(out)


@pytest.mark.parametrize(
    ("activation", "message"),
    [
        ("torch.nn.modules.activation.Hardshrink", "unsupported activation_function"),
        ("mypackage.CustomActivation", "not a torch.nn class"),
    ],
)
def test_unknown_dense_activation_is_refused(minilm_dir, tmp_path, activation, message):
    source = _st_model(tmp_path, minilm_dir, _dense(32, 16, "Tanh"))
    config = next(source.glob("2_Dense/config.json"))
    data = json.loads(config.read_text())
    data["activation_function"] = activation
    config.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as info:
        export(source, tmp_path / "out", variants="fp32", progress=False)
    assert str(config) in str(info.value) and "torch.nn.Tanh" in str(info.value)


def _old_layout(source: Path, config_name: str) -> Path:
    """Move the Transformer's files into 0_Transformer/, as sentence-transformers < 2 saved models."""
    sub = source / "0_Transformer"
    sub.mkdir()
    for item in list(source.iterdir()):
        if item.is_file() and item.name not in ("modules.json", "config_sentence_transformers.json", "README.md"):
            item.rename(sub / item.name)
    (sub / "sentence_bert_config.json").rename(sub / config_name)
    modules = json.loads((source / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer/"
    for module, name in zip(modules, ("Transformer", "Pooling", "Normalize"), strict=False):
        module["type"] = f"sentence_transformers.models.{name}"
    (source / "modules.json").write_text(json.dumps(modules))
    return source


@pytest.mark.parametrize("config_name", ["sentence_bert_config.json", "sentence_roberta_config.json"])
def test_transformer_in_0_transformer_directory(tiny_model_dir, tmp_path, config_name):
    source = _old_layout(clone_dir(tiny_model_dir, tmp_path / "source"), config_name)
    json_path = source / "0_Transformer" / config_name
    data = json.loads(json_path.read_text())
    data["max_seq_length"] = 20  # proves the config file under its legacy name is read, by sentence-transformers too
    json_path.write_text(json.dumps(data))
    out = export(source, tmp_path / "out", variants="fp32,int8", progress=False)
    assert (out / "0_Transformer" / "tokenizer.json").is_file() and not (out / "tokenizer.json").exists()
    encoder = Encoder.load(out)
    assert encoder.max_seq_length == 20
    _assert_exact(source, out, LONG_TEXTS)
    assert _assert_exact(source, out, variant="int8") >= 0.99


def test_missing_module_directory_names_the_file(tiny_model_dir, tmp_path):
    source = _old_layout(clone_dir(tiny_model_dir, tmp_path / "source"), "sentence_bert_config.json")
    config = source / "0_Transformer" / "config.json"
    saved = config.read_bytes()
    config.unlink()
    with pytest.raises(FileNotFoundError, match=r"0_Transformer/config\.json"):
        export(source, tmp_path / "out", variants="fp32", progress=False)
    config.write_bytes(saved)
    shutil.rmtree(source / "1_Pooling")
    with pytest.raises(FileNotFoundError, match=r"1_Pooling/config\.json"):
        export(source, tmp_path / "out", variants="fp32", progress=False)


def test_512_token_model_is_exact_past_its_limit(minilm_dir, tmp_path):
    """bge, e5, gte: max_seq_length 512 and 512 positions; texts far past 512 tokens are cut as the reference cuts."""
    from sentence_transformers.models import Normalize

    source = _st_model(tmp_path, minilm_dir, Normalize(), pooling="cls", max_seq_length=512, max_positions=512)
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    encoder = Encoder.load(out)
    assert encoder.max_seq_length == 512
    assert [len(r) for r in encoder.token_ids(LONG_TEXTS[:2])] == [512, 512]
    _assert_exact(source, out, LONG_TEXTS)


def test_external_data_is_written_and_every_file_is_checked(tiny_model_dir, tmp_path):
    """A graph past the size threshold keeps its tensors in <file>.data (protobuf stops at 2 GB)."""
    out = export(tiny_model_dir, tmp_path / "out", variants="fp32,int8", progress=False, external_data_threshold=1024)
    manifest = json.loads((out / "manifest.json").read_text())
    for variant in ("fp32", "int8"):
        entry = manifest["variants"][variant]
        data_name = entry["file"] + ".data"
        assert list(entry["external_data"]) == [data_name]
        assert (out / data_name).stat().st_size == entry["external_data"][data_name]["size_bytes"] > 100_000
        assert (out / entry["file"]).stat().st_size < 100_000
    _assert_exact(tiny_model_dir, out)
    data = out / "model.fp32.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"model\.fp32\.onnx\.data has sha256"):
        Encoder.load(out)
    data.unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.fp32\.onnx\.data is listed"):
        Encoder.load(out)
    # Exported again below the threshold, the data files go.
    export(tiny_model_dir, out, variants="fp32", progress=False)
    assert not list(out.glob("*.data")) or (out / "model.int8.onnx.data").is_file()
    assert np.asarray(Encoder.load(out).encode(CHECK_TEXTS)).shape == (len(CHECK_TEXTS), 32)


def test_export_a_hub_id_from_a_hand_built_cache_with_the_cli(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """`embedrt export org/name --revision v1` offline: the snapshot the tag points at, recorded in the manifest."""
    import hashlib

    from embedrt.cli import main

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-bert"
    clone_dir(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "v1").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    assert main(["export", "acme/tiny-bert", "--revision", "v1", "--out", str(out), "--variants", "fp32"]) == 0
    source = json.loads((out / "manifest.json").read_text())["source"]
    assert (source["hub_id"], source["revision"], source["commit"], source["name"]) == (
        "acme/tiny-bert",
        "v1",
        commit,
        "tiny-bert",
    )
    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    assert source["files"]["model.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert {"modules.json", "config.json", "1_Pooling/config.json", "tokenizer.json"} <= set(source["files"])
    _assert_exact(tiny_model_dir, out)
    capsys.readouterr()
    assert main(["export", "acme/tiny-bert", "--revision", "v2", "--out", str(tmp_path / "o2")]) != 0
    error = capsys.readouterr().err
    assert "acme/tiny-bert" in error and "HF_HUB_OFFLINE" in error and str(tmp_path / "hub") in error
    assert "Traceback" not in error and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("files", ["tokenizer.json", "sentencepiece only"])
def test_bert_with_an_xlmr_unigram_tokenizer_exports_exactly(tmp_path, files):
    """paraphrase-multilingual-MiniLM-L12-v2's shape: a BertModel whose tokenizer is XLM-R's (pad id 1).

    With only the sentencepiece model, the export saves the fast tokenizer transformers converts, as
    sentence-transformers runs it.
    """
    import sys

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.xlmr_tokenizer import multilingual_lines, sts_sentences, train_xlmr_tokenizer, training_lines

    tok_dir = train_xlmr_tokenizer(
        tmp_path / "spm", training_lines(sts_sentences("train")[:4000], 2000, seed=7), vocab_size=3000
    )
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    assert tokenizer.pad_token_id == 1
    torch.manual_seed(3)
    config = BertConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
    )
    hf = tmp_path / "hf"
    BertModel(config).save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(str(hf))
    modules = [Transformer(str(hf), max_seq_length=128), Pooling(32, "mean"), Normalize()]
    source = tmp_path / "st"
    SentenceTransformer(modules=modules, device="cpu").save(str(source))
    if files != "tokenizer.json":
        (source / "tokenizer.json").unlink()
        assert (source / "sentencepiece.bpe.model").is_file()
    out = export(source, tmp_path / "out", variants="fp32,int8", progress=False)
    assert (out / "tokenizer.json").is_file()
    texts = [*CHECK_TEXTS, *multilingual_lines(40, seed=11), *LONG_TEXTS]
    _assert_exact(source, out, texts)
    assert _assert_exact(source, out, texts, variant="int8") >= 0.99
    encoder = Encoder.load(out)
    assert type(encoder.tokenizer).__name__ == "UnigramTokenizer" and encoder.tokenizer.pad_id == 1
    assert encoder.token_ids([CHECK_TEXTS[0]]) == [tokenizer(CHECK_TEXTS[0])["input_ids"]]
