"""What ``transformers.AutoTokenizer`` adds to tokenizer.json: the class's special tokens, added tokens, pad token.

``AutoTokenizer.from_pretrained`` picks a tokenizer class (tokenizer_config.json's ``tokenizer_class``, else
config.json's model type), whose ``__init__`` defaults and tokenizer_config.json / special_tokens_map.json settle the
special tokens; the fast class then re-adds tokens to the backend. The classes embedrt reproduces are listed per
model (:data:`UNIGRAM_CLASSES`, :data:`BPE_CLASSES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from embedrt.config import require
from embedrt.tokenizers.added_vocabulary import AddedToken
from embedrt.tokenizers.base import TokenizerError
from embedrt.tokenizers.files import read_json_or_empty

__all__ = ["BPE_CLASSES", "UNIGRAM_CLASSES", "TokenizerClasses", "TransformersView"]

_ROBERTA_DEFAULTS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


@dataclass(frozen=True)
class TokenizerClasses:
    """The transformers classes embedrt reproduces for one model type of tokenizer.json.

    ``defaults``: each class's special-token ``__init__`` defaults; ``additional``: its additional_special_tokens
    default, where it has one; ``masks``: the AddedToken its ``__init__`` makes of a plain-string mask token;
    ``model_types``: the class AutoTokenizer picks for a config.json model type when tokenizer_config.json names
    none.
    """

    model: str
    defaults: Mapping[str, Mapping[str, str]]
    model_types: Mapping[str, str]
    additional: Mapping[str, list[str]] = field(default_factory=dict)
    masks: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)


UNIGRAM_CLASSES = TokenizerClasses(
    "Unigram",
    {"XLMRobertaTokenizer": _ROBERTA_DEFAULTS, "CamembertTokenizer": _ROBERTA_DEFAULTS, "PreTrainedTokenizer": {}},
    {"xlm-roberta": "XLMRobertaTokenizer", "camembert": "CamembertTokenizer"},
    {"CamembertTokenizer": ["<s>NOTUSED", "</s>NOTUSED", "<unk>NOTUSED"]},
    {
        # "Mask token behave like a normal word, i.e. include the space before it"
        "XLMRobertaTokenizer": {"lstrip": True},
        # CamembertTokenizerFast: the same lstrip, but a special token (so not normalized)
        "CamembertTokenizer": {"lstrip": True, "normalized": False, "special": True},
    },
)
BPE_CLASSES = TokenizerClasses(
    "BPE",
    {"RobertaTokenizer": _ROBERTA_DEFAULTS, "PreTrainedTokenizer": {}},
    {"roberta": "RobertaTokenizer"},
    {},
    {"RobertaTokenizer": {"lstrip": True, "normalized": False}},  # RobertaTokenizerFast.__init__
)
# transformers' SPECIAL_TOKENS_ATTRIBUTES, in its order.
_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _tokenizer_class(root: Path, tok_config: Mapping[str, Any], classes: TokenizerClasses) -> str:
    """The transformers class AutoTokenizer picks: tokenizer_config.json's, else config.json's model type's."""
    name = tok_config.get("tokenizer_class")
    supported = " or ".join(f"{c}(Fast)" for c in classes.defaults)
    if name is None:
        model_type = read_json_or_empty(root / "config.json").get("model_type")
        name = classes.model_types.get(str(model_type)) if model_type is not None else "PreTrainedTokenizer"
        if name is None:
            raise TokenizerError(
                f"{root}: no tokenizer_class in tokenizer_config.json and model_type {model_type!r} in config.json; "
                f"embedrt reproduces {classes.model} files only as {supported}"
            )
    base = str(name).removesuffix("Fast")
    if base not in classes.defaults:
        raise TokenizerError(
            f"{root / 'tokenizer_config.json'}: tokenizer_class {name!r}; embedrt reproduces {classes.model} files "
            f"only as {supported}"
        )
    return base


def _as_token(value: Any, where: str, *, special: bool | None = None) -> AddedToken | str:
    """A special-token value as transformers holds it: a string, or an AddedToken from a serialized object."""
    return AddedToken.from_spec(value, where, special=special) if isinstance(value, Mapping) else str(value)


@dataclass(frozen=True)
class TransformersView:
    """What ``AutoTokenizer.from_pretrained`` hands the backend beyond tokenizer.json (transformers 4.x).

    ``special``: the special-token attributes (bos ... mask, additional_special_tokens); ``decoder``: the
    added tokens it re-adds (tokenizer_config.json's added_tokens_decoder, or tokenizer.json's own in legacy
    directories); ``pad``: the pad token's text; ``add_prefix_space``: tokenizer_config.json's flag (default
    false), which PreTrainedTokenizerFast writes over a top-level pre-tokenizer's own.
    """

    special: dict[str, Any]
    decoder: list[AddedToken]
    pad: str | None
    add_prefix_space: bool = False

    @classmethod
    def read(cls, root: Path, data: Mapping[str, Any], classes: TokenizerClasses) -> TransformersView:
        """Resolve the directory's files as transformers does, for a class among ``classes``."""
        config_path = root / "tokenizer_config.json"
        tok_config = read_json_or_empty(config_path)
        class_name = _tokenizer_class(root, tok_config, classes)
        special: dict[str, Any] = {}
        for key in (*_SPECIAL_NAMES, "additional_special_tokens"):
            value = tok_config.get(key)
            if key == "additional_special_tokens" and value is not None:
                special[key] = [_as_token(v, f"{config_path}: {key}") for v in value]
            elif value is not None:
                special[key] = _as_token(value, f"{config_path}: {key}")
        if "added_tokens_decoder" in tok_config:
            entries = require(tok_config, "added_tokens_decoder", config_path, Mapping)
            decoder = [AddedToken.from_spec(entries[k], f"{config_path}: added_tokens_decoder[{k}]") for k in entries]
            decoder = [t for _, t in sorted(zip(map(int, entries), decoder, strict=True), key=lambda p: p[0])]
        else:  # legacy directory: special_tokens_map.json overrides, tokenizer.json's added tokens are re-read
            map_path = root / "special_tokens_map.json"
            for key, value in read_json_or_empty(map_path).items():
                if key == "additional_special_tokens" and isinstance(value, list):
                    merged = list(special.pop(key, None) or [])
                    merged += [t for t in (_as_token(v, str(map_path), special=True) for v in value) if t not in merged]
                    special[key] = merged
                elif value is not None:
                    special[key] = _as_token(value, f"{map_path}: {key}", special=True)
            where = f"{root / 'tokenizer.json'}: added_tokens"
            decoder = [AddedToken.from_spec(t, where) for t in data.get("added_tokens") or []]
        by_content = {t.content: t for t in decoder}
        for key in _SPECIAL_NAMES:
            if key in special:
                special[key] = by_content.get(_token_content(special[key]), special[key])
        for key, default in classes.defaults[class_name].items():
            special.setdefault(key, default)
        if class_name in classes.additional:
            special.setdefault("additional_special_tokens", list(classes.additional[class_name]))
        mask = classes.masks.get(class_name)
        if mask is not None and isinstance(special["mask_token"], str):
            special["mask_token"] = AddedToken(special["mask_token"], **mask)
        pad = special.get("pad_token")
        if pad is None:  # PreTrainedTokenizerFast falls back to tokenizer.json's padding token
            padding = data.get("padding")
            pad = padding.get("pad_token") if isinstance(padding, Mapping) else None
        prefix = tok_config.get("add_prefix_space", False)
        return cls(special, decoder, None if pad is None else _token_content(pad), prefix is True)

    def tokens_to_add(self, known: set[str]) -> list[AddedToken]:
        """PreTrainedTokenizerFast.__init__'s ``tokens_to_add``.

        Every decoder token (the backend skips identical ones), then the special tokens whose text it does not
        know yet; special tokens are marked special.
        """
        special_texts = set()
        extended: list[Any] = []
        for key in (*_SPECIAL_NAMES, "additional_special_tokens"):
            value = self.special.get(key)
            for token in value if isinstance(value, list) else [] if value is None else [value]:
                if _token_content(token) not in special_texts:
                    special_texts.add(_token_content(token))
                    extended.append(token)
        tokens = [replace(t, special=t.special or t.content in special_texts) for t in self.decoder]
        known = known | {t.content for t in tokens}
        for token in extended:
            if _token_content(token) not in known:
                known.add(_token_content(token))
                if isinstance(token, str):
                    tokens.append(AddedToken(token, normalized=False, special=True))
                else:
                    tokens.append(replace(token, special=True))
        return tokens

    @property
    def unk(self) -> str | None:
        """The unk token's text, if any."""
        value = self.special.get("unk_token")
        return None if value is None else _token_content(value)


def _token_content(value: Any) -> str:
    if isinstance(value, AddedToken):
        return value.content
    return str(value["content"]) if isinstance(value, Mapping) else str(value)
