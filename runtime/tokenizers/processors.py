"""Post-processors: the special tokens a tokenizer.json puts around one text or a pair.

``BertProcessing``, ``RobertaProcessing`` and ``TemplateProcessing``, read here for every model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

from embedrt.config import require
from embedrt.tokenizers.base import TokenizerError

__all__ = ["Template"]


@dataclass(frozen=True)
class Template:
    """The post-processor's templates: each item a sequence name ("A"/"B") or the ids of a special token."""

    single: tuple[str | tuple[int, ...], ...]
    pair: tuple[str | tuple[int, ...], ...]

    @classmethod
    def from_spec(cls, spec: Any, source: str) -> Template:
        """TemplateProcessing, or RobertaProcessing / BertProcessing (fixed templates)."""
        where = f"{source}: post_processor"
        kind = spec.get("type") if isinstance(spec, Mapping) else spec
        if kind in ("RobertaProcessing", "BertProcessing"):
            cls_ids = (int(require(require(spec, "cls", where, list), 1, where)),)
            sep_ids = (int(require(require(spec, "sep", where, list), 1, where)),)
            middle = (sep_ids,) if kind == "RobertaProcessing" else ()
            return cls((cls_ids, "A", sep_ids), (cls_ids, "A", sep_ids, *middle, "B", sep_ids))
        if kind != "TemplateProcessing":
            raise TokenizerError(
                f"{where} is {kind!r}; embedrt supports TemplateProcessing, RobertaProcessing and BertProcessing"
            )
        specials = require(spec, "special_tokens", where, Mapping)

        def parse(name: str) -> tuple[str | tuple[int, ...], ...]:
            items: list[str | tuple[int, ...]] = []
            for item in require(spec, name, where, list):
                if isinstance(item, Mapping) and "Sequence" in item:
                    items.append(str(require(item["Sequence"], "id", f"{where}.{name}")))
                elif isinstance(item, Mapping) and "SpecialToken" in item:
                    token = str(require(item["SpecialToken"], "id", f"{where}.{name}"))
                    entry = require(specials, token, f"{where}.special_tokens", Mapping)
                    items.append(tuple(int(i) for i in require(entry, "ids", f"{where}.special_tokens.{token}", list)))
                else:
                    raise TokenizerError(f"{where}.{name}: item {item!r} is neither Sequence nor SpecialToken")
            return tuple(items)

        template = cls(parse("single"), parse("pair"))
        if [i for i in template.single if isinstance(i, str)] != ["A"]:
            raise TokenizerError(f"{where}.single must hold the sequence A once, holds {template.single!r}")
        return template

    def around_single(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The special ids before and after the sequence of a single text."""
        at = self.single.index("A")
        before = tuple(chain.from_iterable(i for i in self.single[:at] if isinstance(i, tuple)))
        after = tuple(chain.from_iterable(i for i in self.single[at + 1 :] if isinstance(i, tuple)))
        return before, after
