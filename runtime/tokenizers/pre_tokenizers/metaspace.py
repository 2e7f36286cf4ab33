"""tokenizers' ``Metaspace`` pre-tokenizer (SentencePiece's ``▁``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from embedrt.config import require
from embedrt.tokenizers.base import TokenizerError

__all__ = ["Metaspace"]


@dataclass(frozen=True)
class Metaspace:
    """tokenizers' ``Metaspace`` pre-tokenizer: spaces become ``replacement``, which starts every piece."""

    replacement: str = "▁"
    prepend_scheme: str = "always"  # always | first | never
    split: bool = True

    @classmethod
    def from_spec(cls, spec: Any, source: str) -> Metaspace:
        """Read the pre_tokenizer: a Metaspace, or a Sequence holding only one."""
        where = f"{source}: pre_tokenizer"
        kind = spec.get("type") if isinstance(spec, Mapping) else spec
        if kind == "Sequence":
            inner = require(spec, "pretokenizers", where, list)
            kinds = [p.get("type") if isinstance(p, Mapping) else p for p in inner]
            if kinds != ["Metaspace"]:
                raise TokenizerError(f"{where} is a Sequence of {kinds}; embedrt supports only [Metaspace] there")
            spec, where = inner[0], f"{where}.pretokenizers[0]"
        elif kind != "Metaspace":
            raise TokenizerError(f"{where} is {kind!r}; embedrt's Unigram tokenizer supports only Metaspace")
        replacement = require(spec, "replacement", where, str)
        if len(replacement) != 1:
            raise TokenizerError(f"{where}: replacement {replacement!r} is not one character")
        scheme = str(spec.get("prepend_scheme", "always"))
        if scheme not in ("always", "first", "never"):
            raise TokenizerError(f"{where}: prepend_scheme {scheme!r} is not always, first or never")
        # tokenizers: add_prefix_space=false means "never", and contradicts any other declared scheme
        # (prepend_scheme defaults to "always", so the older files that only say false are refused too).
        if spec.get("add_prefix_space") is False and scheme != "never":
            raise TokenizerError(f"{where}: add_prefix_space does not match declared prepend_scheme")
        split = spec.get("split")
        return cls(replacement, scheme, True if split is None else bool(split))

    def pieces(self, segment: str, first: bool) -> list[str]:
        """The pieces of one normalized segment; ``first``: it starts the text (for prepend_scheme "first")."""
        rep = self.replacement
        text = segment.replace(" ", rep)
        if not text.startswith(rep) and (self.prepend_scheme == "always" or (first and self.prepend_scheme == "first")):
            text = rep + text
        if not self.split:
            return [text]
        parts = text.split(rep)
        head = [parts[0]] if parts[0] else []
        return head + [rep + p for p in parts[1:]]
