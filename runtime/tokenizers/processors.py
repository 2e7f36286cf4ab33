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
    """The post-processor's templates: each item a sequence name ("A"/"B") or the ids of a special token.

    ``pair_types`` holds the token type id of each ``pair`` item (empty: all 0). BertProcessing gives the second
    text and its closing ``[SEP]`` type 1; RobertaProcessing gives every token type 0 (``<s> A </s></s> B </s>``).
    """

    single: tuple[str | tuple[int, ...], ...]
    pair: tuple[str | tuple[int, ...], ...]
    pair_types: tuple[int, ...] = ()

    @classmethod
    def bert(cls, cls_ids: tuple[int, ...], sep_ids: tuple[int, ...]) -> Template:
        """BertProcessing's fixed templates: ``[CLS] A [SEP]``, pairs ``[CLS] A [SEP] B [SEP]`` (types 0, then 1)."""
        return cls((cls_ids, "A", sep_ids), (cls_ids, "A", sep_ids, "B", sep_ids), (0, 0, 0, 1, 1))

    @classmethod
    def roberta(cls, cls_ids: tuple[int, ...], sep_ids: tuple[int, ...]) -> Template:
        """RobertaProcessing's fixed templates: ``<s> A </s>``, pairs ``<s> A </s></s> B </s>`` (types all 0)."""
        pair = (cls_ids, "A", sep_ids, sep_ids, "B", sep_ids)
        return cls((cls_ids, "A", sep_ids), pair, (0,) * len(pair))

    @classmethod
    def from_spec(cls, spec: Any, source: str) -> Template:
        """TemplateProcessing, or RobertaProcessing / BertProcessing (fixed templates)."""
        where = f"{source}: post_processor"
        kind = spec.get("type") if isinstance(spec, Mapping) else spec
        if kind in ("RobertaProcessing", "BertProcessing"):
            cls_ids = (int(require(require(spec, "cls", where, list), 1, where)),)
            sep_ids = (int(require(require(spec, "sep", where, list), 1, where)),)
            return cls.roberta(cls_ids, sep_ids) if kind == "RobertaProcessing" else cls.bert(cls_ids, sep_ids)
        if kind != "TemplateProcessing":
            raise TokenizerError(
                f"{where} is {kind!r}; embedrt supports TemplateProcessing, RobertaProcessing and BertProcessing"
            )
        specials = require(spec, "special_tokens", where, Mapping)

        def parse(name: str) -> tuple[tuple[str | tuple[int, ...], ...], tuple[int, ...]]:
            items: list[str | tuple[int, ...]] = []
            types: list[int] = []
            for item in require(spec, name, where, list):
                if isinstance(item, Mapping) and "Sequence" in item:
                    items.append(str(require(item["Sequence"], "id", f"{where}.{name}")))
                    types.append(_type_id(item["Sequence"], f"{where}.{name}"))
                elif isinstance(item, Mapping) and "SpecialToken" in item:
                    token = str(require(item["SpecialToken"], "id", f"{where}.{name}"))
                    entry = require(specials, token, f"{where}.special_tokens", Mapping)
                    items.append(tuple(int(i) for i in require(entry, "ids", f"{where}.special_tokens.{token}", list)))
                    types.append(_type_id(item["SpecialToken"], f"{where}.{name}"))
                else:
                    raise TokenizerError(f"{where}.{name}: item {item!r} is neither Sequence nor SpecialToken")
            return tuple(items), tuple(types)

        single, _ = parse("single")
        template = cls(single, *parse("pair"))
        if [i for i in template.single if isinstance(i, str)] != ["A"]:
            raise TokenizerError(f"{where}.single must hold the sequence A once, holds {template.single!r}")
        return template

    def around_single(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The special ids before and after the sequence of a single text."""
        at = self.single.index("A")
        before = tuple(chain.from_iterable(i for i in self.single[:at] if isinstance(i, tuple)))
        after = tuple(chain.from_iterable(i for i in self.single[at + 1 :] if isinstance(i, tuple)))
        return before, after


def _type_id(item: Any, where: str) -> int:
    """A template item's ``type_id`` (0 when absent, as the reference's serde default)."""
    value = item.get("type_id", 0) if isinstance(item, Mapping) else 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TokenizerError(f"{where}: type_id {value!r} is not an integer >= 0")
    return value
