"""Byte-level BPE tokenizers trained offline with ``tokenizers``, saved as transformers saves them.

RoBERTa's shape (``RobertaTokenizerFast``: ``<s> A </s>``, ``<mask>`` with lstrip) and ModernBERT's
(``PreTrainedTokenizerFast``: ``[CLS] A [SEP]`` by TemplateProcessing, ``[MASK]`` with lstrip, extra added tokens);
shared by tests/test_bpe_tokenizer.py and benchmarks/tokenizer_speed.py, so no model hub download is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
MODERNBERT_SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]


def train_bpe(
    lines: Sequence[str],
    vocab_size: int,
    specials: Sequence[str],
    trainer_options: Mapping[str, Any] | None = None,
    **model_options: Any,
):
    """A ``tokenizers.Tokenizer`` with a byte-level BPE model trained on ``lines`` (GPT-2's ByteLevel regex).

    ``model_options`` go to ``models.BPE`` (and the subword affixes to the trainer too); ``trainer_options`` to
    ``BpeTrainer`` (over the full byte alphabet by default).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(**model_options))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    options: dict[str, Any] = {"initial_alphabet": pre_tokenizers.ByteLevel.alphabet()}
    options.update({k: v for k, v in model_options.items() if k in ("continuing_subword_prefix", "end_of_word_suffix")})
    options.update(trainer_options or {})
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=list(specials), show_progress=False, **options
    )
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def save_roberta(tok, out: Path, *, add_prefix_space: bool = False) -> Path:
    """Save ``tok`` as RobertaTokenizerFast saves it (RobertaProcessing, ``<mask>`` lstrip); returns ``out``."""
    from tokenizers import processors
    from transformers import RobertaTokenizerFast

    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), add_prefix_space=add_prefix_space
    )
    fast = RobertaTokenizerFast(tokenizer_object=tok, add_prefix_space=add_prefix_space)
    fast.save_pretrained(str(out))
    return out


def save_modernbert(tok, out: Path, extra: Sequence[object] = ()) -> Path:
    """Save ``tok`` as ModernBERT's PreTrainedTokenizerFast (``[CLS] A [SEP]``, ``[MASK]`` lstrip, ``extra`` added)."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token=AddedToken("[MASK]", lstrip=True, normalized=False, special=True),
    )
    if extra:
        fast.add_tokens(list(extra))  # type: ignore[arg-type]
    fast.save_pretrained(str(out))
    return out


def modernbert_tokenizer(out: Path, vocab_size: int, model_max_length: int = 8192) -> Path:
    """A ModernBERT-style tokenizer directory, trained on sts-train: what the ModernBERT models here are given.

    As answerdotai/ModernBERT-base's files: byte-level BPE, ``[CLS] A [SEP]``, ``[MASK]`` with lstrip, a few added
    tokens matched on normalized text (``|||IP_ADDRESS|||``, runs of spaces), and ``model_input_names`` ids and
    mask (ModernBertModel takes no token types).
    """
    import json

    from tokenizers import AddedToken

    from benchmarks.xlmr_tokenizer import sts_sentences

    extra = [AddedToken(t, normalized=True) for t in ("|||IP_ADDRESS|||", "|||EMAIL|||", "   ", "  ")]
    save_modernbert(train_bpe(sts_sentences("train"), vocab_size, MODERNBERT_SPECIALS), out, extra)
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(model_input_names=["input_ids", "attention_mask"], model_max_length=model_max_length)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out
