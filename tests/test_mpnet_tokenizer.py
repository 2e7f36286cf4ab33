"""MPNet's WordPiece tokenizer (``<s> A </s>``, pad id 1, ``<mask>`` with lstrip) against ``MPNetTokenizerFast``
called as sentence-transformers calls it, in both layouts of its files (see mpnet_helpers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mpnet_helpers import build_mpnet_tokenizer, hub_layout
from test_tokenizer import describe, mismatches, ref_call
from unigram_helpers import hostile_texts

from embedrt.tokenizers import Tokenizer, TokenizerError, load_tokenizer

MAX_SEQ_LENGTH = 384  # all-mpnet-base-v2's
LAYOUTS = ("converted", "hub")
# MPNet's and BERT's special tokens written as text, with the whitespace lstrip takes in before <mask>.
SPECIAL_TEXTS = [
    "a <pad> b",
    "<pad>",
    "<pad> <pad> leading pads",
    "<s> starts </s> and ends </s>",
    "fill the <mask> here",
    "fill the\u3000\u2028 <mask>\t here",
    "x<mask>y",
    "<MASK> <S> </S> <PAD>",
    "<unk> [UNK] [unk] [CLS] [SEP] [PAD] [MASK]",
    "<mask><mask> <mask>  <mask>",
    " <mask>",
    "<mask>",
    "<s><pad></s><mask>",
]


@pytest.fixture(scope="module")
def mpnet_dirs(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mpnet-tok")
    converted = build_mpnet_tokenizer(minilm_dir, root / "converted")
    hub = root / "hub"
    shutil.copytree(converted, hub)
    return {"converted": converted, "hub": hub_layout(hub)}


@pytest.fixture(scope="module", params=LAYOUTS)
def layout(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def ref(mpnet_dirs, layout):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(mpnet_dirs[layout]))
    assert type(reference).__name__ == "MPNetTokenizerFast"
    return reference


@pytest.fixture(scope="module")
def tok(mpnet_dirs, layout) -> Tokenizer:
    tokenizer = load_tokenizer(mpnet_dirs[layout])
    assert isinstance(tokenizer, Tokenizer)
    return tokenizer


@pytest.fixture(scope="module")
def words(minilm_dir) -> list[str]:
    lines = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w for w in lines if w and not w.startswith("[")]


def test_files_are_what_each_layout_claims(mpnet_dirs):
    converted = json.loads((mpnet_dirs["converted"] / "tokenizer.json").read_text(encoding="utf-8"))
    hub = json.loads((mpnet_dirs["hub"] / "tokenizer.json").read_text(encoding="utf-8"))
    assert converted["post_processor"]["type"] == "TemplateProcessing"
    assert hub["post_processor"]["type"] == "RobertaProcessing"
    mask = {
        d: next(t for t in f["added_tokens"] if t["content"] == "<mask>") for d, f in (("c", converted), ("h", hub))
    }
    assert mask["c"]["lstrip"] and mask["h"]["lstrip"]
    assert mask["c"]["normalized"] and not mask["h"]["normalized"]


def test_specials_and_pad_id(tok, ref):
    assert (tok.cls_id, tok.sep_id, tok.pad_id) == (ref.cls_token_id, ref.sep_token_id, ref.pad_token_id) == (0, 2, 1)
    assert tok.unk_id == ref.unk_token_id == 104
    assert tok.vocab_size == len(ref.get_vocab()) == 30527
    assert tok.pair_template == ((0,), "A", (2,), (2,), "B", (2,))


def test_special_texts(tok, ref):
    bad = mismatches(tok, ref, SPECIAL_TEXTS, MAX_SEQ_LENGTH)
    assert not bad, describe(SPECIAL_TEXTS, bad)


def test_literal_pad_keeps_attention(tok, ref):
    """A literal <pad> is id 1, the pad id, and keeps attention 1: the mask comes from the lengths."""
    texts = ["<pad>", "a <pad> b <pad>", "a much longer text so that the others are padded on the right"]
    ids, mask = tok(texts, MAX_SEQ_LENGTH)
    ref_ids, ref_mask = ref_call(ref, texts, MAX_SEQ_LENGTH)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(mask, ref_mask)
    assert ids[0, 1] == 1 and mask[0, 1] == 1 and mask[0].sum() == 3
    assert ids[0, -1] == 1 and mask[0, -1] == 0


def test_sts_test(tok, ref, sts_pairs):
    texts = sts_pairs.sentences
    bad = mismatches(tok, ref, texts, MAX_SEQ_LENGTH)
    assert not bad, describe(texts, bad)


def test_hostile_strings(tok, ref, words):
    """20,000 hostile strings (MPNet's and XLM-R's specials, spaces before <mask>, marks, CJK, long texts)."""
    texts = hostile_texts(20_000, seed=25, words=words)
    bad = mismatches(tok, ref, texts, MAX_SEQ_LENGTH)
    assert not bad, describe(texts, bad)


@pytest.mark.parametrize("max_length", [2, 3, 8, 64])
def test_truncation(tok, ref, words, max_length):
    texts = hostile_texts(1_000, seed=max_length, words=words) + SPECIAL_TEXTS
    bad = mismatches(tok, ref, texts, max_length)
    assert not bad, describe(texts, bad)


def test_single_word_refused(mpnet_dirs, tmp_path):
    target = tmp_path / "tok"
    shutil.copytree(mpnet_dirs["hub"], target)
    data = json.loads((target / "tokenizer.json").read_text(encoding="utf-8"))
    next(t for t in data["added_tokens"] if t["content"] == "<mask>")["single_word"] = True
    (target / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json.*'<mask>' sets single_word"):
        load_tokenizer(target)
