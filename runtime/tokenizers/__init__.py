"""The tokenizers: exact reproductions of the Hugging Face fast tokenizers, in pure Python + numpy.

One module per model (``wordpiece``: BERT WordPiece; ``unigram``: SentencePiece Unigram, XLM-R style), the
normalizers and pre-tokenizers beside them (``normalizers/``, ``pre_tokenizers/``), the post-processors' templates
(``processors``), pair encoding and its longest_first truncation (``pairs``), what every tokenizer shares
(``base``: batching, truncation, the long-text cut, padding, text checks) and the generated Unicode tables
(``tables/``). Layers point down: this module imports the models, the models import the steps, the steps import
``base``, ``charsets`` and the tables, and nothing imports this module back.

:func:`load_tokenizer` reads a model directory's tokenizer.json and picks the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedrt.tokenizers.base import BatchEncoder, TokenizerError, TruncationSide, check_texts
from embedrt.tokenizers.files import read_tokenizer_json
from embedrt.tokenizers.unigram import UnigramTokenizer
from embedrt.tokenizers.wordpiece import Tokenizer, TokenizerConfig

__all__ = [
    "BatchEncoder",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerError",
    "TruncationSide",
    "UnigramTokenizer",
    "check_texts",
    "load_tokenizer",
    "supported_model_type",
]

# Model types of tokenizer.json that embedrt reproduces.
_MODEL_TYPES = ("WordPiece", "Unigram")


def load_tokenizer(model_dir: str | Path, *, do_lower_case: bool = False) -> Tokenizer | UnigramTokenizer:
    """The tokenizer of ``model_dir``, picked by tokenizer.json's model type as ``AutoTokenizer`` would load it.

    WordPiece gives a :class:`Tokenizer`, Unigram (SentencePiece, XLM-R) a :class:`UnigramTokenizer`; a directory
    with vocab.txt and no tokenizer.json is WordPiece. ``do_lower_case`` is sentence_bert_config.json's flag.

    Raises:
        TokenizerError: tokenizer.json holds another model type (BPE, WordLevel ...).
        FileNotFoundError: neither tokenizer.json nor vocab.txt is there.

    """
    root = Path(model_dir)
    path = root / "tokenizer.json"
    if not path.is_file():
        return Tokenizer.from_dir(root, do_lower_case=do_lower_case)  # vocab.txt, or its FileNotFoundError
    data = read_tokenizer_json(path)
    kind = supported_model_type(path, data)
    if kind == "WordPiece":
        return Tokenizer._from_tokenizer_json(root, data, do_lower_case=do_lower_case)
    return UnigramTokenizer._from_tokenizer_json(root, data, do_lower_case=do_lower_case)


def supported_model_type(path: Path, data: Mapping[str, Any]) -> str:
    """tokenizer.json's model type (``data``: its content) when embedrt reproduces it, else a TokenizerError.

    The export calls it before its long steps, so that a model whose tokenizer cannot run is refused at once.
    """
    model = data.get("model")
    kind = model.get("type") if isinstance(model, Mapping) else None
    if kind is None and isinstance(model, Mapping) and isinstance(model.get("vocab"), list):
        kind = "Unigram"  # files without "type": tokenizers recognizes the model by its fields
    if kind in _MODEL_TYPES:
        return str(kind)
    if kind == "BPE":
        # RoBERTa's and GPT-2's byte-level BPE (roberta-base, all-distilroberta-v1): say so, not just the type.
        raise TokenizerError(
            f"{path}: model type is 'BPE' (a byte-level BPE tokenizer, as RoBERTa and GPT-2 models have); embedrt "
            f"does not reproduce BPE tokenizers yet, only {' and '.join(_MODEL_TYPES)}: this model cannot be "
            "exported or run until it does"
        )
    raise TokenizerError(f"{path}: model type is {kind!r}; embedrt supports {' and '.join(_MODEL_TYPES)}")
