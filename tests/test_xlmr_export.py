"""XLM-RoBERTa embedders (multilingual-e5, paraphrase-multilingual-mpnet-base-v2, bge-m3 dense): a random-weight
``XLMRobertaModel`` with a Unigram tokenizer trained here, saved by sentence-transformers, exported and compared
with it; jina-embeddings-v3-like lookalikes refused (XLM-R cross-encoders: tests/test_xlmr_reranker.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import clone_dir, edit_json, fp16_runs_on_cpu, reference_encode

from embedrt import Encoder
from embedrt.config import TransformerConfig
from embedrt.export import export
from embedrt.export.parity import CHECK_SENTENCES, TOLERANCE, compare
from embedrt.manifest import Manifest, Variant

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.xlmr_tokenizer import (
    multilingual_lines,
    sts_sentences,
    train_xlmr_tokenizer,
    training_lines,
)

MAX_POSITIONS = 130  # usable: 128, as 514 -> 512 in XLM-R base
MAX_SEQ_LENGTH = 128
PROMPTS = {"query": "query: ", "passage": "passage: "}
# XLM-R's special tokens written as text: the tokenizer matches them as the special ids (a literal <pad> is id 1,
# the pad id), and they keep attention 1.
SPECIAL_TEXTS = [
    "a <pad> b",
    "<pad>",
    "<pad> <pad> leading pads",
    "<s> starts </s> and ends </s>",
    "fill the <mask> here",
    "<unk> <mask><pad></s><s>",
]
LONG_TEXTS = [" ".join(CHECK_SENTENCES) * 6, "word " * 700, "<pad> " * 200]


@pytest.fixture(scope="module")
def xlmr_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer XLMRobertaModel (pad id 1, type_vocab_size 1) -> mean Pooling -> Normalize, with e5's prompts."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    root = tmp_path_factory.mktemp("xlmr")
    tok_dir = train_xlmr_tokenizer(
        root / "spm", training_lines(sts_sentences("train")[:4000], 2000, seed=5), vocab_size=3000
    )
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), model_max_length=MAX_SEQ_LENGTH)
    assert tokenizer.pad_token_id == 1
    torch.manual_seed(25)
    config = XLMRobertaConfig(
        vocab_size=max(tokenizer.get_vocab().values()) + 1,  # <mask> is last (len(tokenizer) counts one fewer here)
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=1,
    )
    model = XLMRobertaModel(config)
    with torch.no_grad():  # the random init zeroes the pad row; give every position a distinct embedding
        model.embeddings.position_embeddings.weight.normal_(0, 0.5)
    hf = root / "hf"
    model.save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(str(hf))
    modules = [Transformer(str(hf)), Pooling(32, "mean"), Normalize()]
    source = root / "st"
    SentenceTransformer(modules=modules, device="cpu", prompts=PROMPTS).save(str(source))
    return source


@pytest.fixture(scope="module")
def xlmr_export(xlmr_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(xlmr_source, tmp_path_factory.mktemp("xlmr-out") / "model", variants="fp32,fp16,int8", progress=False)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [*sts_sentences("test"), *multilingual_lines(40, seed=11), *LONG_TEXTS, *SPECIAL_TEXTS]


def test_the_source_is_what_it_claims(xlmr_source):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(xlmr_source), device="cpu")
    assert type(model[0].auto_model).__name__ == "XLMRobertaModel"
    assert model.max_seq_length == MAX_SEQ_LENGTH
    assert TransformerConfig.from_dir(xlmr_source).max_seq_length == MAX_SEQ_LENGTH


def test_fp32_is_exact_on_sts_test_long_and_special_texts(xlmr_source, xlmr_export, texts):
    reference = reference_encode(xlmr_source, texts)
    figures = compare(reference, Encoder.load(xlmr_export, variant="fp32").encode(texts))
    print(f"fp32 vs sentence-transformers: {figures}")
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


def test_int8_passes_the_export_gate(xlmr_source, xlmr_export, texts):
    manifest = Manifest.from_file(xlmr_export / "manifest.json")
    min_cos, max_abs = TOLERANCE[Variant.INT8]
    parity = manifest.variants[Variant.INT8].parity
    assert parity["min_cosine"] >= min_cos and parity["max_abs_diff"] <= max_abs, parity
    figures = compare(reference_encode(xlmr_source, texts), Encoder.load(xlmr_export, variant="int8").encode(texts))
    print(f"int8 vs sentence-transformers: {figures}")
    assert figures.within(Variant.INT8), figures


def test_fp16_where_it_runs_on_the_cpu(xlmr_source, xlmr_export, texts):
    path = xlmr_export / Variant.FP16.file_name
    assert path.is_file()
    if not fp16_runs_on_cpu(path):
        pytest.skip("this onnxruntime's CPU provider lacks fp16 kernels; the file is for CUDA")
    figures = compare(reference_encode(xlmr_source, texts), Encoder.load(xlmr_export, variant="fp16").encode(texts))
    assert figures.within(Variant.FP16), figures


def test_graph_inputs_are_ids_and_mask_only(xlmr_export):
    import onnx

    manifest = Manifest.from_file(xlmr_export / "manifest.json")
    for variant, info in manifest.variants.items():
        graph = onnx.load(str(xlmr_export / info.file), load_external_data=False).graph
        assert [i.name for i in graph.input] == ["input_ids", "attention_mask"], variant
        assert info.inputs == ("input_ids", "attention_mask")
        assert "(bert)" in info.recipe or variant is Variant.INT8


def test_a_literal_pad_keeps_attention_and_matches(xlmr_source, xlmr_export):
    from transformers import AutoTokenizer

    encoder = Encoder.load(xlmr_export)
    assert encoder.tokenizer.pad_id == 1
    batch = encoder.tokenize(["a <pad> b", "<pad>", "a much longer text so that the others are padded"])
    hf = AutoTokenizer.from_pretrained(str(xlmr_source))
    reference = hf(["a <pad> b", "<pad>", "a much longer text so that the others are padded"], padding=True)
    np.testing.assert_array_equal(batch["input_ids"], reference["input_ids"])
    np.testing.assert_array_equal(batch["attention_mask"], reference["attention_mask"])
    assert batch["input_ids"][1].tolist()[:3] == [0, 1, 2] and batch["attention_mask"][1].tolist()[:3] == [1, 1, 1]
    # The pad id inside a text moves the positions of what follows (transformers computes them from ids != pad),
    # and the vectors still match, alone and in a padded batch.
    texts = SPECIAL_TEXTS
    single = np.stack([encoder.encode(t) for t in texts])
    batched = encoder.encode(texts)
    reference = reference_encode(xlmr_source, texts)
    for got in (single, batched):
        figures = compare(reference, got)
        assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_a_prompt_runs_as_configured(xlmr_source, xlmr_export, prompt_name):
    texts = list(CHECK_SENTENCES)
    reference = reference_encode(xlmr_source, texts, prompt_name=prompt_name)
    got = Encoder.load(xlmr_export).encode(texts, prompt_name=prompt_name)
    figures = compare(reference, got)
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures
    assert not np.allclose(got, Encoder.load(xlmr_export).encode(texts), atol=1e-3)


def _hf_config(source: Path) -> Path:
    return source / "config.json"


def test_max_seq_length_rules(xlmr_source, tmp_path):
    """The legacy max_seq_length wins; else the tokenizer's model_max_length, capped at max_position_embeddings - 2."""
    source = clone_dir(xlmr_source, tmp_path / "src")
    sbert = source / "sentence_bert_config.json"
    edit_json(sbert, max_seq_length=32)
    assert TransformerConfig.from_dir(source).max_seq_length == 32
    legacy = source / "sentence_xlm-roberta_config.json"
    sbert.rename(legacy)  # the name older multilingual models were saved with
    assert TransformerConfig.from_dir(source).max_seq_length == 32
    edit_json(legacy, max_seq_length=None)
    edit_json(source / "tokenizer_config.json", model_max_length=100)
    assert TransformerConfig.from_dir(source).max_seq_length == 100
    edit_json(source / "tokenizer_config.json", model_max_length=None)
    assert TransformerConfig.from_dir(source).max_seq_length == MAX_POSITIONS - 2


def test_without_a_limit_the_export_truncates_at_the_usable_positions(xlmr_source, tmp_path):
    """sentence-transformers caps at max_position_embeddings (130), where XLM-R fails in PyTorch past 128 tokens;
    embedrt truncates at 128 and the export's check compares with sentence-transformers at that limit."""
    source = clone_dir(xlmr_source, tmp_path / "src")
    edit_json(source / "sentence_bert_config.json", max_seq_length=None)
    edit_json(source / "tokenizer_config.json", model_max_length=None)
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    encoder = Encoder.load(out)
    assert encoder.max_seq_length == MAX_POSITIONS - 2
    from sentence_transformers import SentenceTransformer

    reference_model = SentenceTransformer(str(source), device="cpu")
    assert reference_model.max_seq_length == MAX_POSITIONS
    reference_model.max_seq_length = MAX_POSITIONS - 2
    texts = [*LONG_TEXTS, *CHECK_SENTENCES]
    figures = compare(reference_model.encode(texts), encoder.encode(texts))
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


# jina-embeddings-v3's config.json, as the hub has it (the keys that matter here).
JINA_V3 = {
    "architectures": ["XLMRobertaLoRA"],
    "auto_map": {
        "AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta.XLMRobertaFlashConfig",
        "AutoModel": "jinaai/xlm-roberta-flash-implementation--modeling_lora.XLMRobertaLoRA",
    },
    "model_type": "xlm-roberta",
    "position_embedding_type": "rotary",
    "lora_adaptations": ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"],
}


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        (JINA_V3, "'auto_map'"),
        ({"position_embedding_type": "rotary"}, "'position_embedding_type' is 'rotary'"),
        ({"architectures": ["XLMRobertaLoRA"]}, "'architectures' holds ['XLMRobertaLoRA']"),
        ({"architectures": ["BertModel"]}, "'architectures' holds ['BertModel']"),
    ],
)
def test_an_xlmr_lookalike_is_refused_naming_the_file_and_key(xlmr_source, tmp_path, changes, key):
    source = clone_dir(xlmr_source, tmp_path / "src")
    edit_json(_hf_config(source), **changes)
    with pytest.raises(ValueError) as refused:
        export(source, tmp_path / "out", variants="fp32", progress=False)
    message = str(refused.value)
    assert str(_hf_config(source)) in message and key in message, message
    assert "custom code" in message or "absolute" in message
    assert not (tmp_path / "out").exists()


def test_transformers_own_xlmr_classes_are_accepted(xlmr_source):
    from embedrt.export.layout import check_transformer

    config = json.loads(_hf_config(xlmr_source).read_text())
    assert config["model_type"] == "xlm-roberta" and config["architectures"] == ["XLMRobertaModel"]
    architecture, sizes = check_transformer(xlmr_source, allow_pickle=False)
    assert architecture.inputs == ("input_ids", "attention_mask") and sizes == {"num_heads": 4, "hidden_size": 32}
