"""DistilBERT's WordPiece tokenizers against the Hugging Face fast tokenizer, as sentence-transformers calls it.

distiluse-base-multilingual-cased-v1/v2: a cased multilingual WordPiece (BertNormalizer ``lowercase: false``,
``strip_accents: null``, which follows lowercase, so accents are kept; ``handle_chinese_chars: true``), trained here
as benchmarks/wordpiece_tokenizer.py describes. msmarco-distilbert-* / multi-qa-distilbert-*: distilbert-base-uncased's
tokenizer (bert-base-uncased's vocabulary) as DistilBertTokenizerFast. 0 mismatches in ids and mask on 20,000
hostile strings plus cased multilingual text, on sts-test, and under each way transformers reads the settings.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from distilbert_helpers import save_distilbert, save_uncased_tokenizer
from test_tokenizer import MARKS, describe, hostile_texts, mismatches

from embedrt.config import TransformerConfig
from embedrt.tokenizers import load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.wordpiece_tokenizer import cased_lines, train_cased_wordpiece
from benchmarks.xlmr_tokenizer import multilingual_lines, sts_sentences

MAX_LENGTH = 128
HOSTILE = 20_000


@pytest.fixture(scope="module")
def cased_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = cased_lines(sts_sentences("train")[:4000], 3000, seed=7)
    return train_cased_wordpiece(tmp_path_factory.mktemp("cased"), lines, vocab_size=6000, model_max_length=512)


@pytest.fixture(scope="module")
def uncased_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    return save_uncased_tokenizer(minilm_dir, tmp_path_factory.mktemp("uncased"), model_max_length=512)


def _words(tokenizer_dir: Path) -> list[str]:
    lines = (tokenizer_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w.removeprefix("##") for w in lines if w and not w.startswith("[")]


def _mixed_case(text: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def _with_marks(text: str, rng: random.Random) -> str:
    return "".join(c + (chr(rng.choice(MARKS)) if rng.random() < 0.15 else "") for c in text)


def cased_multilingual_texts(n: int, seed: int) -> list[str]:
    """Generated text in 15 scripts, each line upper-, title- or mixed-cased, in NFC or NFD, with combining marks
    added, with CJK ideographs (spaced by handle_chinese_chars) or as it is."""
    rng = random.Random(seed)
    forms = [
        str.upper,
        str.title,
        lambda t: _mixed_case(t, rng),
        lambda t: unicodedata.normalize("NFD", t),
        lambda t: unicodedata.normalize("NFC", t.upper()),
        lambda t: _with_marks(t, rng),
        lambda t: t + "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 6))),
        lambda t: t,
    ]
    return [rng.choice(forms)(line) for line in multilingual_lines(n, seed)]


@pytest.fixture(scope="module")
def cased_corpus(cased_dir: Path) -> list[str]:
    return [*hostile_texts(HOSTILE, seed=2025, vocab=_words(cased_dir)), *cased_multilingual_texts(5000, seed=3)]


@pytest.fixture(scope="module")
def uncased_corpus(uncased_dir: Path) -> list[str]:
    return [*hostile_texts(HOSTILE, seed=2026, vocab=_words(uncased_dir)), *cased_multilingual_texts(2000, seed=4)]


def _reference(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def _normalizer(reference) -> dict:
    return json.loads(reference.backend_tokenizer.normalizer.__getstate__())


def test_the_cased_tokenizer_is_distiluses_kind(cased_dir):
    reference = _reference(cased_dir)
    assert type(reference).__name__ == "DistilBertTokenizerFast"
    normalizer = _normalizer(reference)
    assert (normalizer["lowercase"], normalizer["strip_accents"], normalizer["handle_chinese_chars"]) == (
        False,
        None,
        True,
    )
    assert reference.tokenize("ÉCOLE École") != reference.tokenize("école école")  # case and accents are kept
    assert reference.pad_token_id == 0


@pytest.mark.parametrize("which", ["cased", "uncased"])
def test_hostile_strings(request, which):
    model_dir = request.getfixturevalue(f"{which}_dir")
    texts = request.getfixturevalue(f"{which}_corpus")
    reference, ours = _reference(model_dir), load_tokenizer(model_dir)
    assert ours.config.lowercase is (which == "uncased") and ours.config.strip_accents is None
    bad = mismatches(ours, reference, texts, max_length=MAX_LENGTH)
    print(f"{which}: {len(bad)} mismatches in {len(texts)} texts")
    assert not bad, describe(texts, bad)


@pytest.mark.parametrize("which", ["cased", "uncased"])
def test_sts_test_sentences(request, which):
    model_dir = request.getfixturevalue(f"{which}_dir")
    texts = sts_sentences("test")
    bad = mismatches(load_tokenizer(model_dir), _reference(model_dir), texts, max_length=MAX_LENGTH)
    print(f"{which}: {len(bad)} mismatches in {len(texts)} sts-test sentences")
    assert not bad, describe(texts, bad)


def _variant(cased_dir: Path, target: Path, variant: str) -> Path:
    shutil.copytree(cased_dir, target)
    tok_config = target / "tokenizer_config.json"
    data = json.loads(tok_config.read_text(encoding="utf-8"))
    if variant == "no do_lower_case":  # DistilBertTokenizer's default is True: the fast tokenizer then lowercases
        del data["do_lower_case"]
    elif variant.startswith("no tokenizer_class"):  # AutoTokenizer picks the class by config.json's model_type
        del data["tokenizer_class"]
        (target / "config.json").write_text(json.dumps({"model_type": "distilbert"}), encoding="utf-8")
        if variant.endswith("no do_lower_case"):
            del data["do_lower_case"]
    elif variant == "vocab.txt only":
        (target / "tokenizer.json").unlink()
    tok_config.write_text(json.dumps(data), encoding="utf-8")
    return target


@pytest.mark.parametrize(
    ("variant", "lowercase"),
    [
        ("as saved", False),
        ("no do_lower_case", True),
        ("no tokenizer_class", False),
        ("no tokenizer_class, no do_lower_case", True),
        ("vocab.txt only", False),
    ],
)
def test_settings_are_read_as_transformers_reads_them(cased_dir, cased_corpus, tmp_path, variant, lowercase):
    model_dir = _variant(cased_dir, tmp_path / "tok", variant)
    reference, ours = _reference(model_dir), load_tokenizer(model_dir)
    assert type(reference).__name__ == "DistilBertTokenizerFast"
    assert _normalizer(reference)["lowercase"] is lowercase and ours.config.lowercase is lowercase
    texts = [*sts_sentences("test")[:300], *cased_corpus[:3000], *cased_corpus[-1000:]]
    bad = mismatches(ours, reference, texts, max_length=MAX_LENGTH)
    assert not bad, describe(texts, bad)


@pytest.mark.parametrize("do_lower_case", [False, True])
def test_sentence_bert_do_lower_case_over_the_cased_tokenizer(cased_dir, cased_corpus, tmp_path, do_lower_case):
    """sentence_bert_config.json's ``do_lower_case`` (false in distiluse) lowercases before the cased tokenizer
    when true: the chain config -> tokenizer gives sentence-transformers' own ids either way."""
    from sentence_transformers import SentenceTransformer

    source = save_distilbert(tmp_path, cased_dir, seed=1, max_seq_length=MAX_LENGTH)
    sbert = source / "sentence_bert_config.json"
    sbert.write_text(json.dumps({**json.loads(sbert.read_text()), "do_lower_case": do_lower_case}))
    model = SentenceTransformer(str(source), device="cpu")
    config = TransformerConfig.from_dir(source)
    assert config.do_lower_case is do_lower_case and config.max_seq_length == model.max_seq_length
    ours = load_tokenizer(source, do_lower_case=config.do_lower_case)
    fixed = ["ΟΔΟΣ ΟΔΟΣ", "[SEP] x [CLS]", "İSTANBUL", "ǅ ẞ", "ÉCOLE"]
    texts = [*fixed, *sts_sentences("test")[:200], *cased_corpus[:2000]]
    changed = 0
    for start in range(0, len(texts), 500):
        part = texts[start : start + 500]
        features = model.tokenize(part)
        ids, mask = ours(part, model.max_seq_length)
        np.testing.assert_array_equal(ids, features["input_ids"].numpy())
        np.testing.assert_array_equal(mask, features["attention_mask"].numpy())
        changed += int(not np.array_equal(ids, load_tokenizer(source)(part, model.max_seq_length)[0]))
    assert bool(changed) is do_lower_case  # the flag does change the ids of a cased tokenizer
