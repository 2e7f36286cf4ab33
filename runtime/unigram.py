"""The former home of the Unigram tokenizer: now :mod:`embedrt.tokenizers.unigram` and the steps beside it.

Kept so that ``from embedrt.unigram import ...`` goes on working; new code imports from ``embedrt.tokenizers``.
"""

from embedrt.tokenizers.files import _serde_f64, read_tokenizer_json
from embedrt.tokenizers.normalizers.precompiled import Precompiled as _Precompiled
from embedrt.tokenizers.unigram import UnigramTokenizer

__all__ = ["UnigramTokenizer", "_Precompiled", "_serde_f64", "read_tokenizer_json"]
