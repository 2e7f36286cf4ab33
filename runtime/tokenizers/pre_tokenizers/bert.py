"""tokenizers' ``BertPreTokenizer``: punctuation alone, runs of anything but whitespace or punctuation."""

from __future__ import annotations

import re

from embedrt.tokenizers.charsets import char_class
from embedrt.tokenizers.tables import unicode as _tables

__all__ = ["PIECES"]

# One compiled regex: ``PIECES.findall(normalized)`` is the pre-tokenized pieces.
PIECES = re.compile(
    f"[{char_class(_tables.PUNCTUATION)}]|[^{char_class(_tables.WHITESPACE)}{char_class(_tables.PUNCTUATION)}]+"
)
