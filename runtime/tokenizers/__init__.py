"""The tokenizers: exact reproductions of the Hugging Face fast tokenizers, in pure Python + numpy.

One module per model (``wordpiece``: BERT WordPiece; ``unigram``: SentencePiece Unigram, XLM-R style; ``bpe``:
byte-level BPE, RoBERTa / GPT-2 / ModernBERT style), the
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
from embedrt.tokenizers.bpe import BPETokenizer
from embedrt.tokenizers.files import read_tokenizer_json
from embedrt.tokenizers.unigram import UnigramTokenizer
from embedrt.tokenizers.wordpiece import Tokenizer, TokenizerConfig

__all__ = [
    "BPETokenizer",
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
_MODEL_TYPES = ("WordPiece", "Unigram", "BPE")


def load_tokenizer(
    model_dir: str | Path, *, do_lower_case: bool = False
) -> Tokenizer | UnigramTokenizer | BPETokenizer:
    """The tokenizer of ``model_dir``, picked by tokenizer.json's model type as ``AutoTokenizer`` would load it.

    WordPiece gives a :class:`Tokenizer`, Unigram (SentencePiece, XLM-R) a :class:`UnigramTokenizer`, BPE
    (byte-level: RoBERTa, GPT-2, ModernBERT) a :class:`BPETokenizer`; a directory with vocab.txt and no
    tokenizer.json is WordPiece. ``do_lower_case`` is sentence_bert_config.json's flag.

    Raises:
        TokenizerError: tokenizer.json holds another model type (WordLevel ...).
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
    if kind == "BPE":
        return BPETokenizer._from_tokenizer_json(root, data, do_lower_case=do_lower_case)
    return UnigramTokenizer._from_tokenizer_json(root, data, do_lower_case=do_lower_case)


def supported_model_type(path: Path, data: Mapping[str, Any]) -> str:
    """tokenizer.json's model type (``data``: its content) when embedrt reproduces it, else a TokenizerError.

    The export calls it before its long steps, so that a model whose tokenizer cannot run is refused at once.
    """
    model = data.get("model")
    kind = model.get("type") if isinstance(model, Mapping) else None
    if kind is None and isinstance(model, Mapping) and isinstance(model.get("vocab"), list):
        kind = "Unigram"  # files without "type": tokenizers recognizes the model by its fields
    elif kind is None and isinstance(model, Mapping) and "merges" in model:
        kind = "BPE"
    if kind in _MODEL_TYPES:
        return str(kind)
    raise TokenizerError(f"{path}: model type is {kind!r}; embedrt supports {', '.join(_MODEL_TYPES)}")
