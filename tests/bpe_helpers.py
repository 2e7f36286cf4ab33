"""Byte-level BPE tokenizer directories in every configuration embedrt reproduces, and hostile text for them."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from unigram_helpers import hostile_texts

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bpe_tokenizer import (  # noqa: E402
    MODERNBERT_SPECIALS,
    ROBERTA_SPECIALS,
    save_modernbert,
    save_roberta,
    train_bpe,
)
from benchmarks.xlmr_tokenizer import multilingual_words, sts_sentences  # noqa: E402
from embedrt.tokenizers.pre_tokenizers.byte_level import GPT2_PATTERN  # noqa: E402

# What breaks naive GPT-2 ports: contractions in every case, literal special tokens of both shapes, digits of other
# scripts, runs of whitespace of every kind.
EXTRA = [
    "'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'D", "it's", "IT'S", "we'll", "''", "'", "' s",
    "<s>", "</s>", "<pad>", "<unk>", "<mask>", " <mask>", "<mask> ", "[CLS]", "[SEP]", "[PAD]", "[MASK]", " [MASK]",
    "\t[MASK]", "[UNK]", "|||IP_ADDRESS|||", "|||EMAIL|||", "<|sw|>", "x<|sw|>", "<|sw|>y", "<|r|>", "<|r|>  x",
    "[EXTRA]", "   ", "    ", "  ", "\n\n", " \n ", "\t\t", "\r\n", "\u3000\u3000", "\u00a0 ", "\u0660\u0661\u0662",
    "\u0966\u0967", "\uff11\uff12", "\u2460", "\u00bd", "Ⅻ", "x²", "1,000.50", "$5", "don't", "Ġ", "ĠĠ", "Ċ", "</w>",
    "##", "<0x41>", "\u00e9", "e\u0301", "\U0001f600",
]  # fmt: skip


def bpe_hostile(n: int, seed: int) -> list[str]:
    """``n`` hostile texts (tests/unigram_helpers) with the BPE-specific pieces above put in half of them."""
    words = [w for s in sts_sentences("train")[:3000] for w in s.split()][:6000] + multilingual_words(7)
    texts = hostile_texts(n, seed=seed, words=words)
    rng = random.Random(seed)
    out = []
    for text in texts:
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 4)):
                at = rng.randint(0, len(text))
                text = text[:at] + rng.choice(["", " "]) + rng.choice(EXTRA) + rng.choice(["", " "]) + text[at:]
        out.append(text)
    return out


def _edit(directory: Path, edit: Callable[[dict], None]) -> Path:
    path = directory / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return directory


def _split_sequence(prefix: bool) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": GPT2_PATTERN}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": False},
            ],
        }

    return edit


def _merges_as_strings(data: dict) -> None:
    data["model"]["merges"] = [" ".join(pair) for pair in data["model"]["merges"]]


def _model_fields(**fields: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["model"].update(fields)

    return edit


def _byte_fallback(fallback: bool, fuse: bool, unk: str | None) -> Callable[[dict], None]:
    """Byte tokens for the ASCII bytes only: other missing characters are unknown (fused or not) or dropped."""

    def edit(data: dict) -> None:
        vocab = data["model"]["vocab"]
        top = max(vocab.values())
        for b in range(0x80):
            vocab.setdefault(f"<0x{b:02X}>", top + 1 + b)
        data["model"].update(byte_fallback=fallback, fuse_unk=fuse, unk_token=unk)

    return edit


def build_dirs(root: Path) -> dict[str, Path]:
    """Every configuration the tests cover, trained on sts-train (a few seconds)."""
    from tokenizers import AddedToken

    lines = sts_sentences("train")
    extra = [
        AddedToken("|||IP_ADDRESS|||", normalized=True),
        AddedToken("|||EMAIL|||", normalized=True),
        AddedToken("   ", normalized=True),
        AddedToken("  ", normalized=True),
        AddedToken("<|sw|>", single_word=True, normalized=True),
        AddedToken("<|r|>", rstrip=True, normalized=False),
        AddedToken("[EXTRA]", normalized=False, special=True),
    ]
    dirs = {
        "roberta": save_roberta(train_bpe(lines, 3000, ROBERTA_SPECIALS), root / "roberta"),
        "roberta_prefix": save_roberta(
            train_bpe(lines[:4000], 1200, ROBERTA_SPECIALS), root / "roberta_prefix", add_prefix_space=True
        ),
        "modernbert": save_modernbert(train_bpe(lines, 2500, MODERNBERT_SPECIALS), root / "modernbert", extra),
    }
    dirs["split_sequence"] = _edit(
        save_roberta(train_bpe(lines, 2000, ROBERTA_SPECIALS), root / "split"), _split_sequence(False)
    )
    dirs["split_prefix"] = _edit(
        save_roberta(train_bpe(lines, 2000, ROBERTA_SPECIALS), root / "split_p"), _split_sequence(True)
    )
    dirs["bytelevel_post"] = _edit(  # GPT-2's post-processor: no special tokens around a text
        save_modernbert(train_bpe(lines, 2000, MODERNBERT_SPECIALS), root / "bytelevel_post"),
        lambda d: d.update(post_processor={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False}),
    )
    dirs["nfc"] = _edit(  # as GPT-NeoX / OLMo style files have it
        save_roberta(train_bpe(lines, 2000, ROBERTA_SPECIALS), root / "nfc"),
        lambda d: d.update(normalizer={"type": "NFC"}),
    )
    dirs["merges_as_strings"] = _edit(  # the older files' "a b" form, as roberta-base's tokenizer.json has it
        save_roberta(train_bpe(lines, 2000, ROBERTA_SPECIALS), root / "strings"), _merges_as_strings
    )
    dirs["ignore_merges"] = _edit(
        save_modernbert(train_bpe(lines, 2500, MODERNBERT_SPECIALS), root / "ignore"), _model_fields(ignore_merges=True)
    )
    affixes = {"continuing_subword_prefix": "##", "end_of_word_suffix": "</w>"}
    dirs["affixes"] = save_roberta(train_bpe(lines, 2500, ROBERTA_SPECIALS, **affixes), root / "affixes")
    small = {"limit_alphabet": 90, "initial_alphabet": []}
    for name, options in {
        "fallback_fused": (True, True, "[UNK]"),
        "unk_unfused": (False, False, "[UNK]"),
        "fallback_no_unk": (True, False, None),
    }.items():
        tok = train_bpe(lines[:3000], 900, MODERNBERT_SPECIALS, trainer_options=small, unk_token="[UNK]")
        dirs[name] = _edit(save_modernbert(tok, root / name), _byte_fallback(*options))
    return dirs
