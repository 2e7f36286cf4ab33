"""tokenizers' ``AddedVocabulary``: added tokens, their ids, and splitting text at them."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Protocol

from embedrt.config import require
from embedrt.tokenizers.charsets import WHITE_SPACE

__all__ = ["AddedToken", "AddedVocabulary"]


class _Model(Protocol):
    """What the added vocabulary needs of a model: its pieces (by id) and their ids."""

    pieces: list[str]
    ids: dict[str, int]


@dataclass(frozen=True)
class AddedToken:
    """tokenizers' ``AddedToken`` (its defaults: normalized unless special)."""

    content: str
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = True
    special: bool = False

    @classmethod
    def from_spec(cls, spec: Any, where: str, *, special: bool | None = None) -> AddedToken:
        """From tokenizer.json's added_tokens entry, a tokenizer_config.json token object, or a plain string."""
        if isinstance(spec, str):
            is_special = bool(special)
            return cls(spec, normalized=not is_special, special=is_special)
        content = require(spec, "content", where, str)
        is_special = bool(spec.get("special", False)) if special is None else special
        return cls(
            content,
            single_word=bool(spec.get("single_word", False)),
            lstrip=bool(spec.get("lstrip", False)),
            rstrip=bool(spec.get("rstrip", False)),
            normalized=bool(spec.get("normalized", not is_special)),
            special=is_special,
        )


_Split = tuple["int | None", int, int]  # (added token id or None, start, stop)


@functools.cache
def _word_char() -> re.Pattern[str]:
    """The Rust regex crate's word class (measured on the reference): whether a single_word token touches a word."""
    from embedrt.tokenizers.tables import byte_level as _tables

    return re.compile("[" + "".join(f"\\U{a:08X}-\\U{b:08X}" for a, b in _tables.WORD) + "]")


@dataclass
class AddedVocabulary:
    """tokenizers' ``AddedVocabulary``: ids, the two patterns (raw text / normalized segments) and their splits."""

    ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[int, AddedToken] = field(default_factory=dict)
    special: list[AddedToken] = field(default_factory=list)
    added: list[AddedToken] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)  # the texts matched, raw and normalized
    _raw: tuple[re.Pattern[str] | None, list[int]] = (None, [])
    _normalized: tuple[re.Pattern[str] | None, list[int]] = (None, [])

    def add(self, tokens: Sequence[AddedToken], model: _Model, normalizer: Callable[[str], str]) -> None:
        """``add_tokens``: ids from the vocabulary where the content is there, else the next free ones."""
        special_set = {t.content for t in self.special}
        for token in tokens:
            if token.special and token.content and token.content not in special_set:
                self.special.append(token)
                special_set.add(token.content)
        existing = set(self.tokens.values())
        size = len(model.pieces)
        top = max(self.tokens, default=None)
        next_id = size if top is None else (top + 1 if top >= size or size == 0 else size)
        for token in tokens:
            if not token.content or token in existing:
                continue
            known = self.ids.get(token.content, model.ids.get(token.content))
            if known is None:
                known, next_id = next_id, next_id + 1
            self.ids[token.content] = known
            self.tokens[known] = token
            if token.content not in special_set:
                self.added.append(token)
            existing.add(token)
        self._refresh(normalizer)

    def _refresh(self, normalizer: Callable[[str], str]) -> None:
        """Rebuild both patterns; normalized tokens are matched in their normalized form."""
        tokens = list(chain(self.special, self.added))
        raw = [(t.content, self.ids[t.content]) for t in tokens if not t.normalized]
        normalized = [(normalizer(t.content), self.ids[t.content]) for t in tokens if t.normalized]
        self.patterns = [p for p, _ in raw + normalized]
        self._raw = self._pattern(raw)
        self._normalized = self._pattern(normalized)

    @staticmethod
    def _pattern(patterns: list[tuple[str, int]]) -> tuple[re.Pattern[str] | None, list[int]]:
        """One group per pattern, longest first (stable), so re's leftmost-first is Aho-Corasick's leftmost-longest."""
        patterns = sorted((p for p in patterns if p[0]), key=lambda p: len(p[0]), reverse=True)
        if not patterns:
            return None, []
        return re.compile("|".join(f"({re.escape(p)})" for p, _ in patterns)), [i for _, i in patterns]

    def split_raw(self, text: str) -> list[_Split] | None:
        """Splits of the raw text at non-normalized tokens, or None when none occurs."""
        return self._split(text, *self._raw)

    def split_normalized(self, text: str) -> list[_Split] | None:
        """Splits of one normalized segment at normalized tokens, or None when none occurs."""
        return self._split(text, *self._normalized)

    def _split(self, text: str, pattern: re.Pattern[str] | None, ids: list[int]) -> list[_Split] | None:
        """``find_matches``: lstrip/rstrip move a token's edges over the whitespace next to it.

        A ``single_word`` token is matched only where no word character (the Rust regex crate's class) touches it.
        """
        if pattern is None:
            return None
        splits: list[_Split] = []
        done = 0
        for match in pattern.finditer(text):
            start, stop = match.span()
            token_id = ids[(match.lastindex or 1) - 1]
            token = self.tokens[token_id]
            if token.single_word and (
                (start > 0 and _word_char().match(text, start - 1))
                or (stop < len(text) and _word_char().match(text, stop))
            ):
                continue  # a single_word token inside a word is plain text
            if token.lstrip:
                # The previous match may already own some of that whitespace.
                start = max(len(text[:start].rstrip(WHITE_SPACE)), done)
            if token.rstrip:
                stop += len(text[stop:]) - len(text[stop:].lstrip(WHITE_SPACE))
            if done < start:
                splits.append((None, done, start))
            splits.append((token_id, start, stop))
            done = stop
        if not splits:
            return None
        if done != len(text):
            splits.append((None, done, len(text)))
        return splits
