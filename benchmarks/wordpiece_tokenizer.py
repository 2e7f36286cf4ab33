"""Cased multilingual WordPiece tokenizers (distiluse-base-multilingual-cased's kind), trained offline in seconds.

distiluse-base-multilingual-cased-v1/v2 run multilingual BERT's cased WordPiece: ``BertNormalizer`` with
``lowercase: false`` and ``strip_accents: null`` (which follows lowercase: accents are kept),
``handle_chinese_chars: true``, ``tokenizer_class`` DistilBertTokenizer with ``do_lower_case: false``. This trains a
WordPiece vocabulary of that kind with the ``tokenizers`` library on the STS sentences plus generated multilingual
text (``xlmr_tokenizer.multilingual_lines``), some of it upper-cased and in decomposed (NFD) form so that case and
accents are in the vocabulary, and saves it through ``transformers.DistilBertTokenizerFast``, which writes the
tokenizer.json, tokenizer_config.json and vocab.txt that ``AutoTokenizer`` (and embedrt) load. Needs the test extra.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from benchmarks.xlmr_tokenizer import multilingual_lines

# bert-base-multilingual-cased's special tokens, [PAD] first so that the pad id is 0 as there.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def cased_lines(sts: Sequence[str], multilingual: int, seed: int) -> list[str]:
    """STS sentences and ``multilingual`` generated lines, a fifth of them upper-cased or title-cased and a tenth
    in NFD (accents as combining marks), shuffled together."""
    rng = random.Random(seed)
    lines = []
    for line in [*sts, *multilingual_lines(multilingual, seed)]:
        draw = rng.random()
        if draw < 0.1:
            line = line.upper()
        elif draw < 0.2:
            line = line.title()
        elif draw < 0.3:
            line = unicodedata.normalize("NFD", line)
        lines.append(line)
    rng.shuffle(lines)
    return lines


def train_cased_wordpiece(out_dir: Path, lines: Sequence[str], *, vocab_size: int, model_max_length: int) -> Path:
    """Train a cased WordPiece vocabulary on ``lines``; save it as a DistilBERT fast tokenizer in ``out_dir``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import DistilBertTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=False
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##"
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
    fast = DistilBertTokenizerFast(
        tokenizer_object=tokenizer,
        do_lower_case=False,
        strip_accents=None,
        tokenize_chinese_chars=True,
        model_max_length=model_max_length,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    out_dir = Path(out_dir)
    fast.save_pretrained(str(out_dir))
    return out_dir
