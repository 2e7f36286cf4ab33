"""Large models (multilingual-e5-large, bge-m3, arctic-embed-l-v2: XLM-R large, 2.2 GB in fp32) go through ONNX
external data. No 2 GB model is needed: a tiny XLM-R exported with a tiny ``external_data_threshold`` takes the same
path, every variant (fp32, fp16, int8) with its tensors in ``<file>.data`` and int8 calibrated from a file, and is
compared with sentence-transformers."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fp16_runs_on_cpu, reference_encode

from embedrt import Encoder
from embedrt.export import export
from embedrt.export.onnx_files import weight_bytes
from embedrt.export.parity import compare
from embedrt.manifest import Variant

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.xlmr_tokenizer import multilingual_lines, sts_sentences, train_xlmr_tokenizer, training_lines

HIDDEN = 64
# The weights are ~0.9 MB in fp32 and ~0.25 MB in int8: past this, every variant keeps them in <file>.data.
THRESHOLD = 64 * 1024
VARIANTS = (Variant.FP32, Variant.FP16, Variant.INT8)


@pytest.fixture(scope="module")
def xlmr_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 2-layer XLMRobertaModel with a trained XLM-R Unigram tokenizer -> mean Pooling -> Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    root = tmp_path_factory.mktemp("xlmr-large-path")
    lines = training_lines(sts_sentences("train")[:4000], 2000, seed=7)
    tok_dir = train_xlmr_tokenizer(root / "spm", lines, vocab_size=3000)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), model_max_length=128)
    torch.manual_seed(4)
    config = XLMRobertaConfig(
        vocab_size=max(tokenizer.get_vocab().values()) + 1,
        pad_token_id=1,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=4 * HIDDEN,
        max_position_embeddings=130,
        type_vocab_size=1,
    )
    model = XLMRobertaModel(config)
    with torch.no_grad():  # the random init zeroes the pad row; give every position a distinct embedding
        model.embeddings.position_embeddings.weight.normal_(0, 0.5)
    hf = root / "hf"
    model.save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(str(hf))
    source = root / "st"
    SentenceTransformer(modules=[Transformer(str(hf)), Pooling(HIDDEN, "mean"), Normalize()], device="cpu").save(
        str(source)
    )
    return source


class _Serializations:
    """Records every ModelProto serialized in memory, and every onnxruntime session built from bytes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []  # bytes of weights inside each serialized ModelProto
        self.sessions_from_bytes: list[int] = []  # their lengths (embedrt's int8 kernel probe is a tiny graph)
        self.sessions_from_files = 0


@pytest.fixture(scope="module")
def exported(xlmr_source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _Serializations]:
    """The export of every variant with a tiny threshold, watched: protobuf stops at 2 GiB, so past the threshold no
    step may serialize the whole model in memory (a calibration session from ``SerializeToString()``, onnx's checker
    on a ModelProto), and it must not be caught by an except in between: every serialization is recorded."""
    import onnx
    import onnxruntime

    seen = _Serializations()
    serialize = onnx.ModelProto.SerializeToString
    session = onnxruntime.InferenceSession

    def recording_serialize(self, *args, **kwargs):
        seen.sizes.append(weight_bytes(self))
        return serialize(self, *args, **kwargs)

    def recording_session(model, *args, **kwargs):
        if isinstance(model, bytes):
            seen.sessions_from_bytes.append(len(model))
        else:
            seen.sessions_from_files += 1
        return session(model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx.ModelProto, "SerializeToString", recording_serialize)
        patch.setattr(onnxruntime, "InferenceSession", recording_session)
        out = export(
            xlmr_source,
            tmp_path_factory.mktemp("xlmr-large-out") / "model",
            variants=",".join(v.value for v in VARIANTS),
            progress=False,
            external_data_threshold=THRESHOLD,
        )
    return out, seen


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [*sts_sentences("test")[:600], *multilingual_lines(20, seed=3), "a <pad> b", "word " * 300]


def test_every_variant_keeps_its_weights_in_a_listed_hashed_data_file(exported):
    out, _ = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["variants"]) == {v.value for v in VARIANTS}
    for variant in VARIANTS:
        entry = manifest["variants"][variant.value]
        data = out / (entry["file"] + ".data")
        assert list(entry["external_data"]) == [data.name], variant
        listed = entry["external_data"][data.name]
        assert listed["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest(), variant
        assert listed["size_bytes"] == data.stat().st_size > THRESHOLD, variant
        # The graph file holds the structure only (tensors under 1 KB stay inline, as onnx writes them).
        assert (out / entry["file"]).stat().st_size < THRESHOLD, variant
    assert sorted(p.name for p in out.glob("*.data")) == sorted(f"{v.file_name}.data" for v in VARIANTS)


def test_no_step_serializes_the_weights_in_memory(exported):
    """Fails when int8's calibration session is built from ``ModelProto.SerializeToString()`` (the plain graph with
    outputs added, as it was before) or when onnx's checker is given the quantized ModelProto instead of its file."""
    _, seen = exported
    assert seen.sizes, "the recorder saw no serialization: the check would pass vacuously"
    assert max(seen.sizes) <= THRESHOLD, sorted(seen.sizes)[-5:]
    assert max(seen.sessions_from_bytes, default=0) <= THRESHOLD, seen.sessions_from_bytes
    assert seen.sessions_from_files >= 4  # the calibration session and a check of each variant


def test_fp32_from_external_data_is_exact(xlmr_source, exported, texts):
    out, _ = exported
    figures = compare(reference_encode(xlmr_source, texts), Encoder.load(out, variant="fp32").encode(texts))
    print(f"fp32 (external data) vs sentence-transformers: {figures}")
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


def test_int8_calibrated_from_a_file_passes_its_gates(xlmr_source, exported, texts):
    out, _ = exported
    recipe = json.loads((out / "manifest.json").read_text())["variants"]["int8"]["recipe"]
    assert "calibrated on" in recipe
    figures = compare(reference_encode(xlmr_source, texts), Encoder.load(out, variant="int8").encode(texts))
    print(f"int8 (external data) vs sentence-transformers: {figures}")
    assert figures.within(Variant.INT8), figures


def test_fp16_from_external_data_where_it_runs_on_the_cpu(xlmr_source, exported, texts):
    out, _ = exported
    if not fp16_runs_on_cpu(out / Variant.FP16.file_name):
        pytest.skip("this onnxruntime's CPU provider lacks fp16 kernels; the file is for CUDA")
    figures = compare(reference_encode(xlmr_source, texts), Encoder.load(out, variant="fp16").encode(texts))
    assert figures.within(Variant.FP16), figures


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_tampered_or_missing_data_file_is_refused(exported, tmp_path, variant):
    out, _ = exported
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    data = copy / f"{variant.file_name}.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0x10  # one bit of one weight: same size, another hash
    data.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=rf"{data.name} has sha256 [0-9a-f]{{64}} but manifest.json says"):
        Encoder.load(copy, variant=variant.value)
    data.write_bytes(bytes(raw[:-4]))
    with pytest.raises(ValueError, match=rf"{data.name} is {len(raw) - 4} bytes but manifest.json says {len(raw)}"):
        Encoder.load(copy, variant=variant.value)
    data.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{data.name} is listed in manifest.json but missing"):
        Encoder.load(copy, variant=variant.value)


def test_below_the_threshold_nothing_goes_to_data_files(xlmr_source, tmp_path):
    """The default threshold (2 GB) keeps a small model in one file per variant, as before."""
    out = export(xlmr_source, tmp_path / "out", variants="fp32,int8", progress=False)
    assert not list(out.glob("*.data"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(entry["external_data"] == {} for entry in manifest["variants"].values())
    np.testing.assert_allclose(
        Encoder.load(out).encode(["a short text"]), reference_encode(xlmr_source, ["a short text"]), atol=1e-4
    )


def _word_table_types(int8_file: Path, vocab: int) -> list[int]:
    """The element types of the word tables (``vocab`` x hidden) that the graph's Gathers read (the int8 graph's
    per-row scales, ``vocab`` x 1, are not counted)."""
    import onnx

    graph = onnx.load(str(int8_file), load_external_data=False).graph
    tables = {i.name: i for i in graph.initializer if list(i.dims) == [vocab, HIDDEN]}
    return [tables[n.input[0]].data_type for n in graph.node if n.op_type == "Gather" and n.input[0] in tables]


def test_int8_stores_the_word_table_as_the_rule_says(xlmr_source, exported, tmp_path):
    """WORD_TABLE (int8) is what the export writes; the other choice keeps the float table and still passes."""
    import onnx

    from embedrt.export.int8 import WORD_TABLE, WordTable, calibrate, calibration_texts, write_int8
    from embedrt.export.onnx_files import export_plain

    out, _ = exported
    vocab = json.loads((xlmr_source / "config.json").read_text())["vocab_size"]
    assert WORD_TABLE is WordTable.INT8
    assert _word_table_types(out / Variant.INT8.file_name, vocab) == [onnx.TensorProto.INT8]
    assert _word_table_types(out / Variant.FP32.file_name, vocab) == [onnx.TensorProto.FLOAT]
    from embedrt.export.embedding import EmbeddingModel
    from embedrt.export.layout import check_transformer

    model = EmbeddingModel.read(xlmr_source)
    architecture, sizes = check_transformer(model.transformer_dir, allow_pickle=False)
    plain = tmp_path / "plain.onnx"
    export_plain(model.transformer_dir, plain, False, architecture=architecture, threshold=THRESHOLD)
    texts, origin = calibration_texts(None)
    ranges = calibrate(plain, model.feeds(out, texts[:256]), 256, origin)
    float_table = tmp_path / "int8-float-table.onnx"
    recipe = write_int8(plain, float_table, ranges, sizes["num_heads"], threshold=THRESHOLD, word_table=WordTable.FP32)
    assert "float32 word embeddings" in recipe
    assert _word_table_types(float_table, vocab) == [onnx.TensorProto.FLOAT]
    assert (tmp_path / "int8-float-table.onnx.data").stat().st_size > (out / "model.int8.onnx.data").stat().st_size
