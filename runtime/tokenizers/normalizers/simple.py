"""tokenizers' small normalizers: ``Strip``, ``Replace`` and ``Lowercase``.

Each step maps str -> str; ``track`` also maps the alignments (see ``alignments``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from embedrt.tokenizers.charsets import WHITE_SPACE
from embedrt.tokenizers.normalizers.alignments import Origins, transform
from embedrt.tokenizers.tables import unicode as _tables

__all__ = ["LOWER", "LOWERCASE", "Lowercase", "Replace", "Strip"]

LOWER: dict[int, str] = dict(_tables.LOWERCASE)


@dataclass(frozen=True)
class Strip:
    """tokenizers' ``Strip``: White_Space off either end."""

    left: bool
    right: bool

    def __call__(self, text: str) -> str:
        """The normalized text."""
        if self.left:
            text = text.lstrip(WHITE_SPACE)
        return text.rstrip(WHITE_SPACE) if self.right else text

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """``lrstrip``: kept characters keep their alignments.

        The trailing count goes to the character at the *byte* length minus the trailing count, as the reference
        computes it.
        """
        out = self(text)
        if out == text:
            return out, origins
        leading = len(text) - len(text.lstrip(WHITE_SPACE)) if self.left else 0
        trailing = len(text) - len(text.rstrip(WHITE_SPACE)) if self.right else 0
        marked = len(text.encode("utf-8")) - trailing - 1
        changes = [-trailing if i == marked else 0 for i in range(leading, len(text) - trailing)]
        return out, transform(origins, changes, leading)


@dataclass(frozen=True)
class Replace:
    """tokenizers' ``Replace``: every leftmost match of a literal or a regex becomes ``content``."""

    pattern: re.Pattern[str]
    content: str

    def __call__(self, text: str) -> str:
        """The normalized text."""
        return self.pattern.sub(self._content, text)

    def _content(self, _: re.Match[str]) -> str:
        return self.content

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """Replacement characters all take the alignment of the match's last character."""
        out_origins: Origins = []
        done = 0
        for match in self.pattern.finditer(text):
            start, stop = match.span()
            out_origins += origins[done:start]
            out_origins += [origins[stop - 1]] * len(self.content)
            done = stop
        return self(text), out_origins + origins[done:]


class Lowercase:
    """tokenizers' ``Lowercase``: Rust's per-character lowercase (frozen with the WordPiece tables)."""

    def __call__(self, text: str) -> str:
        """The normalized text."""
        return text.translate(LOWER)

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """Extra characters of a lowercase expansion are insertions after the first."""
        changes: list[int] = []
        for char in text:
            changes += [0] + [1] * (len(char.translate(LOWER)) - 1)
        return self(text), transform(origins, changes)


LOWERCASE = Lowercase()
