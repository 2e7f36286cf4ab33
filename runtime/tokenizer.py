"""The former home of the WordPiece tokenizer and the shared batching: now :mod:`embedrt.tokenizers`.

Kept so that ``from embedrt.tokenizer import ...`` goes on working; new code imports from ``embedrt.tokenizers``.
"""

from embedrt.tokenizers import load_tokenizer
from embedrt.tokenizers.base import (
    _CACHE_CHARS,
    BatchEncoder,
    TokenizerError,
    TruncationSide,
    cache_add,
    check_texts,
)
from embedrt.tokenizers.files import read_vocab_txt
from embedrt.tokenizers.wordpiece import Tokenizer, TokenizerConfig

__all__ = [
    "_CACHE_CHARS",
    "BatchEncoder",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerError",
    "TruncationSide",
    "cache_add",
    "check_texts",
    "load_tokenizer",
    "read_vocab_txt",
]
