"""RoBERTa (``RobertaModel``) and CamemBERT (``CamembertModel``) on XLM-R's graph path: random-weight 2-layer models
with SentencePiece Unigram tokenizers trained here (CamemBERT's with its own special-token layout: ``<s>NOTUSED``,
pad 1, ``<s>`` 5, ``</s>`` 6), and RoBERTa with its usual byte-level BPE tokenizer (``roberta_bpe``, also from
vocab.json + merges.txt alone), saved by sentence-transformers, exported and compared with it; their
ForSequenceClassification cross-encoders against CrossEncoder; lookalikes refused."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bpe_helpers import bpe_hostile  # noqa: E402
from conftest import clone_dir, edit_json, reference_encode  # noqa: E402
from unigram_helpers import hostile_texts  # noqa: E402

from benchmarks.bpe_tokenizer import ROBERTA_SPECIALS, save_roberta, train_bpe  # noqa: E402
from benchmarks.xlmr_tokenizer import (  # noqa: E402
    multilingual_lines,
    multilingual_words,
    sts_sentences,
    train_xlmr_tokenizer,
    training_lines,
)
from embedrt import Encoder  # noqa: E402
from embedrt.export import export  # noqa: E402
from embedrt.export.parity import CHECK_SENTENCES, compare  # noqa: E402
from embedrt.reranker import Reranker  # noqa: E402
from embedrt.tokenizers import BPETokenizer, UnigramTokenizer, load_tokenizer  # noqa: E402
from embedrt.tokenizers.pairs import encode_pairs_truncated, pad_pairs  # noqa: E402

MAX_POSITIONS = 66  # usable: 64
MAX_SEQ_LENGTH = 64
SPECIAL_TEXTS = ["a <pad> b", "<pad>", "<s> x </s>", "fill the <mask> here", "<s>NOTUSED <unk>NOTUSED", ""]
LONG_TEXTS = [" ".join(CHECK_SENTENCES) * 3, "mot " * 300]


def train_camembert_tokenizer(out_dir: Path) -> Path:
    """A SentencePiece Unigram model converted by CamembertTokenizerFast, with CamemBERT's id layout.

    The hub's camembert-base SentencePiece model has <unk>, <s>, </s> first and no <pad>; the converter puts
    <s>NOTUSED, <pad>, </s>NOTUSED, <unk>, <unk>NOTUSED before the pieces, so pad is 1, <s> 5 and </s> 6.
    """
    import sentencepiece as spm
    from transformers import CamembertTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    train = out_dir / "train.txt"
    train.write_text("\n".join(training_lines(sts_sentences("train")[:4000], 2000, seed=12)), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(train),
        model_prefix=str(out_dir / "spm"),
        vocab_size=3000,
        model_type="unigram",
        normalization_rule_name="nmt_nfkc",
        character_coverage=0.9995,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=2,
        minloglevel=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CamembertTokenizerFast(vocab_file=str(out_dir / "spm.model")).save_pretrained(str(out_dir / "tokenizer"))
    return out_dir / "tokenizer"


@pytest.fixture(scope="module")
def camembert_tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_camembert_tokenizer(tmp_path_factory.mktemp("camembert-spm"))


@pytest.fixture(scope="module")
def xlmr_tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = training_lines(sts_sentences("train")[:3000], 1500, seed=13)
    return train_xlmr_tokenizer(tmp_path_factory.mktemp("roberta-spm"), lines, vocab_size=2500)


@pytest.fixture(scope="module")
def bpe_tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RoBERTa's byte-level BPE tokenizer (RobertaTokenizerFast: pad 1, ``<s> A </s>``, ``<mask>`` lstrip)."""
    return save_roberta(
        train_bpe(sts_sentences("train"), 2500, ROBERTA_SPECIALS), tmp_path_factory.mktemp("bpe") / "tok"
    )


def _tok_dir(family: str, xlmr_tok: Path, camembert_tok: Path, bpe_tok: Path) -> Path:
    return {"roberta": xlmr_tok, "camembert": camembert_tok, "roberta_bpe": bpe_tok}[family]


def _model(family: str, tok_dir: Path, classifier: bool = False):
    """A random 2-layer model of ``family`` (pad id 1, type_vocab_size 1) and its tokenizer."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), model_max_length=MAX_SEQ_LENGTH)
    assert tokenizer.pad_token_id == 1
    name = {"roberta": "Roberta", "roberta_bpe": "Roberta", "camembert": "Camembert"}[family]
    config = getattr(transformers, f"{name}Config")(
        vocab_size=max(tokenizer.get_vocab().values()) + 1,
        pad_token_id=1,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=1,
        num_labels=1,
        initializer_range=0.3 if classifier else 0.02,
    )
    torch.manual_seed(7)
    cls = getattr(transformers, f"{name}ForSequenceClassification" if classifier else f"{name}Model")
    model = cls(config)
    if not classifier:
        with torch.no_grad():  # the random init zeroes the pad row; give every position a distinct embedding
            model.embeddings.position_embeddings.weight.normal_(0, 0.5)
    return model, tokenizer


@pytest.fixture(scope="module", params=["roberta", "camembert", "roberta_bpe"])
def embedder(request, tmp_path_factory, xlmr_tok, camembert_tok, bpe_tok):
    """(family, source dir, export dir): Transformer -> mean Pooling -> Normalize, fp32."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    family = request.param
    root = tmp_path_factory.mktemp(family)
    model, tokenizer = _model(family, _tok_dir(family, xlmr_tok, camembert_tok, bpe_tok))
    model.save_pretrained(root / "hf", safe_serialization=True)
    tokenizer.save_pretrained(str(root / "hf"))
    modules = [Transformer(str(root / "hf")), Pooling(32, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(root / "st"))
    return family, root / "st", export(root / "st", root / "out", variants="fp32", progress=False)


def test_the_source_is_what_it_claims(embedder):
    from sentence_transformers import SentenceTransformer

    family, source, out = embedder
    model = SentenceTransformer(str(source), device="cpu")
    assert json.loads((source / "config.json").read_text())["model_type"] == family.removesuffix("_bpe")
    assert type(model[0].auto_model).__name__ == {"camembert": "CamembertModel"}.get(family, "RobertaModel")
    assert model.max_seq_length == MAX_SEQ_LENGTH == Encoder.load(out).max_seq_length
    assert isinstance(Encoder.load(out).tokenizer, BPETokenizer if family == "roberta_bpe" else UnigramTokenizer)


def test_fp32_matches_sentence_transformers(embedder):
    family, source, out = embedder
    texts = [*sts_sentences("test")[:300], *multilingual_lines(40, seed=3), *SPECIAL_TEXTS, *LONG_TEXTS]
    figures = compare(reference_encode(source, texts), Encoder.load(out, variant="fp32").encode(texts))
    print(f"{family} fp32 vs sentence-transformers: {figures}")
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures
    import onnx

    manifest = json.loads((out / "manifest.json").read_text())
    graph = onnx.load(str(out / manifest["variants"]["fp32"]["file"]), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"auto_map": {"AutoModel": "custom.Model"}}, "'auto_map'"),
        ({"position_embedding_type": "relative_key"}, "'position_embedding_type' is 'relative_key'"),
        ({"architectures": ["XLMRobertaModel"]}, "'architectures' holds ['XLMRobertaModel']"),
    ],
)
def test_a_lookalike_is_refused(embedder, tmp_path, changes, key):
    """Each family's own classes only: an XLM-R class under model_type roberta / camembert is refused too."""
    _, source, _ = embedder
    copy = clone_dir(source, tmp_path / "src")
    edit_json(copy / "config.json", **changes)
    with pytest.raises(ValueError) as refused:
        export(copy, tmp_path / "out", variants="fp32", progress=False)
    assert str(copy / "config.json") in str(refused.value) and key in str(refused.value), refused.value
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("side", ["right", "left"])
def test_camembert_tokens_match_the_fast_tokenizer(camembert_tok, side):
    """Singles and pairs (<s> a </s></s> b </s> with <s> = 5, </s> = 6) on hostile text: 0 mismatches."""
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(camembert_tok), truncation_side=side)
    tok = load_tokenizer(camembert_tok)
    assert (tok.pad_id, tok.cls_id, tok.sep_id) == (1, 5, 6)
    texts = hostile_texts(3000, seed=len(side), words=multilingual_words(5)) + SPECIAL_TEXTS
    texts = [t[:1500] for t in texts]  # pairs of two long texts would exhaust the reference's memory
    bad = 0
    for start in range(0, len(texts), 100):
        batch = texts[start : start + 100]
        want = ref(batch, padding=True, truncation=True, max_length=24, return_tensors="np")
        ids, mask = tok.pad(tok.encode_batch(batch, 24, side))
        bad += int(((ids != want["input_ids"]).any(1) | (mask != want["attention_mask"]).any(1)).sum())
        firsts, seconds = batch[::2], batch[1::2]
        want = ref(firsts, seconds, padding=True, truncation="longest_first", max_length=13, return_tensors="np")
        rows, starts, _ = encode_pairs_truncated(tok, list(zip(firsts, seconds, strict=True)), 13, side)
        got = pad_pairs(tok.pad_id, rows, starts)
        differ = (got["input_ids"] != want["input_ids"]).any(1) | (got["attention_mask"] != want["attention_mask"]).any(
            1
        )
        bad += int(differ.sum())
    print(f"camembert tokens, {side} truncation: {bad} mismatches of {len(texts) + len(texts) // 2}")
    assert bad == 0


@pytest.mark.parametrize("family", ["roberta", "camembert", "roberta_bpe"])
def test_cross_encoders_match_cross_encoder(family, tmp_path, xlmr_tok, camembert_tok, bpe_tok):
    """RobertaForSequenceClassification and CamembertForSequenceClassification, plain layout, Sigmoid by default."""
    import torch
    from sentence_transformers import CrossEncoder

    model, tokenizer = _model(family, _tok_dir(family, xlmr_tok, camembert_tok, bpe_tok), classifier=True)
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    tokenizer.save_pretrained(str(tmp_path / "hf"))
    out = export(tmp_path / "hf", tmp_path / "out", variants="fp32", progress=False)
    sts = sts_sentences("test")
    pairs = [*zip(sts[:100], sts[-100:], strict=True), ("a <pad> b", ""), ("", "x"), (LONG_TEXTS[0], sts[0])]
    ce = CrossEncoder(str(tmp_path / "hf"), device="cpu")
    want = np.asarray(ce.predict(pairs, activation_fn=torch.nn.Identity()))
    reranker = Reranker.load(out)
    got = reranker.predict(pairs, activation="Identity")
    print(f"{family} cross-encoder fp32: max abs logit diff {np.abs(got - want).max():.2e}")
    assert np.abs(got - want).max() <= 1e-4 and np.ptp(want) > 0.1
    assert reranker.activation.value == "Sigmoid" and np.abs(reranker.predict(pairs) - ce.predict(pairs)).max() <= 1e-4


def test_a_bpe_model_with_only_vocab_json_and_merges_txt_gets_tokenizer_json(tmp_path, bpe_tok):
    """RoBERTa's slow files alone (vocab.json + merges.txt): the export writes transformers' conversion as
    tokenizer.json, and the exported model's vectors are sentence-transformers' (which converts the same way)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    model, tokenizer = _model("roberta_bpe", bpe_tok)
    hf = tmp_path / "hf"
    model.save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(str(hf))
    (hf / "tokenizer.json").unlink()
    assert (hf / "vocab.json").is_file() and (hf / "merges.txt").is_file()
    source = tmp_path / "st"
    SentenceTransformer(modules=[Transformer(str(hf)), Pooling(32, "mean")], device="cpu").save(str(source))
    (source / "tokenizer.json").unlink(missing_ok=True)  # saving may write the fast tokenizer back: only slow files
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    assert isinstance(Encoder.load(out).tokenizer, BPETokenizer)
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(source))  # converted from the slow files, as sentence-transformers does
    texts = bpe_hostile(3000, seed=5) + SPECIAL_TEXTS
    tok = Encoder.load(out).tokenizer
    want = ref(texts, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="np")
    ids, mask = tok(texts, MAX_SEQ_LENGTH)
    bad = int(((ids != want["input_ids"]).any(1) | (mask != want["attention_mask"]).any(1)).sum())
    print(f"roberta_bpe converted tokenizer.json: {bad} mismatches of {len(texts)} hostile texts")
    assert bad == 0
    texts = [*sts_sentences("test")[:100], *SPECIAL_TEXTS, *LONG_TEXTS]
    figures = compare(reference_encode(source, texts), Encoder.load(out, variant="fp32").encode(texts))
    print(f"roberta_bpe from vocab.json + merges.txt, fp32 vs sentence-transformers: {figures}")
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures
