"""The sentence-transformers configuration files of a model directory, one frozen dataclass per file.

Two on-disk formats exist and both load: sentence-transformers <= 5.1 (module types
``sentence_transformers.models.*``, ``max_seq_length`` in ``sentence_bert_config.json``, boolean
``pooling_mode_*_tokens`` flags) and >= 5.2 (module types such as
``sentence_transformers.sentence_transformer.modules.pooling.Pooling``, the length limit in
``tokenizer_config.json``'s ``model_max_length``, a single ``pooling_mode`` key).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

# transformers' stand-in for "no limit" (tokenization_utils_base.VERY_LARGE_INTEGER).
_NO_LIMIT = int(1e30)


class Choice(str, Enum):
    """A closed set of string options, parsed with an error that lists them."""

    @classmethod
    def parse(cls, value: str | Choice) -> Any:
        """The member for ``value``, or a ValueError naming the value and the valid options."""
        try:
            return cls(value)
        except ValueError:
            options = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown {cls.__name__.lower()} {value!r}; expected one of {options}") from None


class PoolingMode(str, Enum):
    """Pooling strategies of sentence-transformers' Pooling module, in its concatenation order."""

    CLS = "cls"
    MAX = "max"
    MEAN = "mean"
    MEAN_SQRT_LEN_TOKENS = "mean_sqrt_len_tokens"
    WEIGHTEDMEAN = "weightedmean"
    LASTTOKEN = "lasttoken"


class ModuleKind(str, Enum):
    """The sentence-transformers modules this runtime implements."""

    TRANSFORMER = "Transformer"
    POOLING = "Pooling"
    DENSE = "Dense"
    NORMALIZE = "Normalize"


class Activation(str, Enum):
    """Dense activations: the ``torch.nn`` classes sentence-transformers instantiates with their defaults."""

    IDENTITY = "Identity"
    TANH = "Tanh"
    RELU = "ReLU"
    GELU = "GELU"
    SIGMOID = "Sigmoid"
    SILU = "SiLU"
    LEAKY_RELU = "LeakyReLU"
    ELU = "ELU"
    SOFTPLUS = "Softplus"


class SimilarityFn(str, Enum):
    """Similarity functions sentence-transformers can declare in config_sentence_transformers.json."""

    COSINE = "cosine"
    DOT = "dot"
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"


# Legacy boolean flags in the order sentence-transformers concatenates the pooled vectors.
_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": PoolingMode.CLS,
    "pooling_mode_max_tokens": PoolingMode.MAX,
    "pooling_mode_mean_tokens": PoolingMode.MEAN,
    "pooling_mode_mean_sqrt_len_tokens": PoolingMode.MEAN_SQRT_LEN_TOKENS,
    "pooling_mode_weightedmean_tokens": PoolingMode.WEIGHTEDMEAN,
    "pooling_mode_lasttoken": PoolingMode.LASTTOKEN,
}


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 1 (not a bool), else a ValueError naming ``name`` and the value."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def read_json(path: Path, expect: type = dict) -> Any:
    """Read a JSON file holding an ``expect`` (object by default), with errors that name the file.

    Every configuration file of a model or export directory is read here, so a malformed one is reported the same
    way wherever it is read.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, expect):
        raise ValueError(f"{path} must hold a JSON {_JSON_NAMES[expect]}, found {_json_name(data)}")
    return data


def require(data: Any, key: str | int, source: str | Path, expect: type | tuple[type, ...] = object) -> Any:
    """``data[key]``, or a ValueError naming the file, the missing (or mistyped) key and what was expected."""
    try:
        value = data[key]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{source}: missing {key!r} (in {_json_name(data)} {_short(data)})") from None
    if not isinstance(value, expect):
        names = expect if isinstance(expect, tuple) else (expect,)
        wanted = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in names)
        raise ValueError(f"{source}: {key!r} must be a JSON {wanted}, found {_json_name(value)}")
    return value


_JSON_NAMES: dict[type, str] = {dict: "object", list: "list", str: "string", int: "integer", bool: "boolean"}


def _json_name(value: object) -> str:
    return "null" if value is None else _JSON_NAMES.get(type(value), type(value).__name__)


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _enum_value(enum: type[Enum], value: object, what: str, path: Path) -> Any:
    try:
        return enum(value)
    except ValueError:
        options = ", ".join(repr(m.value) for m in enum)  # type: ignore[attr-defined]
        raise ValueError(f"{path}: unsupported {what} {value!r}; expected one of {options}") from None


@dataclass(frozen=True)
class ModuleEntry:
    """One entry of modules.json."""

    kind: ModuleKind
    path: str
    type_name: str


# The pipeline shapes this runtime runs, as a regex over one letter per module: T(ransformer), P(ooling),
# D(ense), N(ormalize).
_PIPELINE = re.compile("TPD*N?")
_PIPELINE_TEXT = "Transformer -> Pooling [-> Dense ...] [-> Normalize]"


@dataclass(frozen=True)
class ModulesConfig:
    """modules.json: the module pipeline, restricted to Transformer -> Pooling [-> Dense ...] [-> Normalize]."""

    modules: tuple[ModuleEntry, ...]

    @classmethod
    def from_file(cls, path: Path) -> ModulesConfig:
        """Read modules.json, accepting both the old and the new module type names."""
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a sentence-transformers model directory")
        entries = []
        for index, item in enumerate(read_json(path, list)):
            if not isinstance(item, dict):
                raise ValueError(f"{path}: module {index} must be a JSON object, found {_json_name(item)}")
            type_name = require(item, "type", f"{path}: module {index}", str)
            short = type_name.rsplit(".", 1)[-1]
            kinds = [k.value for k in ModuleKind]
            if short not in kinds or not type_name.startswith("sentence_transformers."):
                # Router, StaticEmbedding, sparse and multi-vector modules, or a class outside sentence-transformers
                # (which sentence-transformers >= 6 loads only with trust_remote_code).
                raise ValueError(
                    f"{path}: module {index} has type {type_name!r}; embedrt runs sentence-transformers' "
                    f"{', '.join(kinds)} modules only, and does not run custom module code"
                )
            entries.append(ModuleEntry(ModuleKind(short), str(item.get("path", "")), type_name))
        if not _PIPELINE.fullmatch("".join(e.kind.value[0] for e in entries)):
            found = " -> ".join(e.kind.value for e in entries) or "no modules"
            raise ValueError(f"{path}: expected {_PIPELINE_TEXT}, found {found}")
        return cls(tuple(entries))

    @property
    def normalize(self) -> bool:
        """Whether the pipeline ends with a Normalize module."""
        return self.modules[-1].kind is ModuleKind.NORMALIZE

    def path_of(self, kind: ModuleKind) -> str:
        """The sub-directory of the (first) module of this kind ("" for the model root)."""
        return next(e.path for e in self.modules if e.kind is kind)

    def paths_of(self, kind: ModuleKind) -> tuple[str, ...]:
        """The sub-directories of every module of this kind, in pipeline order."""
        return tuple(e.path for e in self.modules if e.kind is kind)


# The Transformer module's config names, in the order sentence-transformers (and text-embeddings-inference)
# try them; older models were saved with the architecture's own name.
TRANSFORMER_CONFIG_NAMES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)


def transformer_config_path(model_dir: Path) -> Path | None:
    """The first of ``TRANSFORMER_CONFIG_NAMES`` in ``model_dir``, or None."""
    return next((p for p in (model_dir / n for n in TRANSFORMER_CONFIG_NAMES) if p.is_file()), None)


@dataclass(frozen=True)
class TransformerConfig:
    """sentence_bert_config.json, with the sequence limit resolved as sentence-transformers resolves it."""

    max_seq_length: int
    do_lower_case: bool

    @classmethod
    def from_dir(cls, model_dir: Path) -> TransformerConfig:
        """Read the Transformer's config (``TRANSFORMER_CONFIG_NAMES``), tokenizer_config.json and config.json."""
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir / 'config.json'} not found: the Transformer module's directory")
        sbert_path = transformer_config_path(model_dir)
        sbert = read_json(sbert_path) if sbert_path is not None else {}
        return cls(
            max_seq_length=_resolve_max_seq_length(model_dir, sbert),
            do_lower_case=bool(sbert.get("do_lower_case", False)),
        )


# Families whose position ids start after the pad id (transformers' create_position_ids_from_input_ids): real
# tokens take positions pad + 1 onwards, so pad + 1 of max_position_embeddings are never a token's.
_OFFSET_POSITIONS = frozenset({"xlm-roberta", "roberta", "camembert", "mpnet"})
# Families whose embeddings hard-code the pad id instead of reading config.json's pad_token_id (MPNetEmbeddings:
# padding_idx = 1).
_FIXED_PAD = {"mpnet": 1}


def usable_positions(hf_config: dict[str, Any]) -> int | None:
    """How many tokens the model's position table can place (None: no limit), from its config.json.

    max_position_embeddings, less ``pad_token_id + 1`` for XLM-R, RoBERTa and CamemBERT (514 -> 512, 8194 -> 8192)
    and MPNet (pad id 1 whatever config.json says: 514 -> 512); max_position_embeddings itself for the others
    (BERT, DistilBERT, and ModernBERT, whose rotary positions never depend on its pad id: 8192).
    """
    positions = hf_config.get("max_position_embeddings", -1)
    if positions == -1:  # xlnet's way of saying: no limit
        return None
    if hf_config.get("model_type") in _OFFSET_POSITIONS:
        pad = _FIXED_PAD.get(hf_config["model_type"], hf_config.get("pad_token_id", 1))
        return int(positions) - int(pad) - 1
    return int(positions)


def checked_length(requested: int, model_dir: Path, what: str) -> int:
    """A token limit asked for at load (``what`` names the argument), if the model's positions can place it.

    Like setting ``max_seq_length`` on a SentenceTransformer (or ``max_length`` on a CrossEncoder): shorter than the
    model's own limit saves time and memory on long texts; longer is allowed up to ``usable_positions`` of
    ``model_dir``'s config.json, past which the model has no position for a token.
    """
    positive_int(what, requested)
    path = model_dir / "config.json"
    positions = usable_positions(read_json(path)) if path.is_file() else None
    if positions is not None and requested > positions:
        raise ValueError(f"{what} {requested} is more than the {positions} tokens the model can place ({path})")
    return requested


def _resolve_max_seq_length(model_dir: Path, sbert: dict[str, Any]) -> int:
    """Resolve the token limit by sentence-transformers' rule.

    An explicit max_seq_length wins; otherwise the tokenizer's model_max_length, capped at the positions the model
    can place (``usable_positions``; sentence-transformers caps at max_position_embeddings, which for XLM-R lets
    the last two lengths fail in PyTorch with an index error).
    """
    explicit = None
    # A model_max_length passed to the tokenizer overrides max_seq_length in sentence-transformers.
    for kwargs_key in ("processor_kwargs", "tokenizer_args", "tokenizer_kwargs"):
        explicit = explicit or (sbert.get(kwargs_key) or {}).get("model_max_length")
    explicit = explicit or sbert.get("max_seq_length")
    if explicit is not None:
        return int(explicit)
    tok_path = model_dir / "tokenizer_config.json"
    limit = int(read_json(tok_path).get("model_max_length") or _NO_LIMIT) if tok_path.is_file() else _NO_LIMIT
    positions = usable_positions(read_json(model_dir / "config.json"))
    if positions is not None:
        limit = min(limit, positions)
    if limit >= _NO_LIMIT:
        raise ValueError(f"{model_dir}: no max_seq_length in sentence_bert_config.json and no limit elsewhere")
    return limit


@dataclass(frozen=True)
class PoolingConfig:
    """1_Pooling/config.json in either format."""

    dimension: int
    modes: tuple[PoolingMode, ...]
    include_prompt: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> PoolingConfig:
        """Build from the parsed JSON; ``path`` only names the file in errors."""
        dimension = data.get("embedding_dimension", data.get("word_embedding_dimension"))
        if not isinstance(dimension, int):
            raise ValueError(f"{path}: missing integer 'embedding_dimension' / 'word_embedding_dimension'")
        raw = data.get("pooling_mode")
        if raw is None:
            modes = tuple(mode for key, mode in _LEGACY_POOLING_FLAGS.items() if data.get(key, False))
            modes = modes or (PoolingMode.MEAN,)
        else:
            names = [raw] if isinstance(raw, str) else list(raw)
            modes = tuple(_enum_value(PoolingMode, name, "pooling_mode", path) for name in names)
        return cls(dimension=dimension, modes=modes, include_prompt=bool(data.get("include_prompt", True)))

    @classmethod
    def from_file(cls, path: Path) -> PoolingConfig:
        """Read a Pooling config.json."""
        return cls.from_dict(read_json(path), path)

    @property
    def output_dimension(self) -> int:
        """Width of the pooled vector (modes are concatenated)."""
        return self.dimension * len(self.modes)


@dataclass(frozen=True)
class DenseConfig:
    """A Dense module's config.json: ``activation(x @ W.T + b)`` on the sentence embedding."""

    in_features: int
    out_features: int
    bias: bool = True
    activation: Activation = Activation.TANH

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> DenseConfig:
        """Build from the parsed JSON; ``path`` only names the file in errors."""
        if data.get("use_residual"):
            raise ValueError(
                f"{path}: 'use_residual' is true (a Dense that adds its input to its output, written since "
                "sentence-transformers 5.4); embedrt runs Dense modules without it"
            )
        for key in ("module_input_name", "module_output_name"):
            if data.get(key, "sentence_embedding") not in ("sentence_embedding", None):
                raise ValueError(
                    f"{path}: {key} {data[key]!r} is not supported; embedrt applies Dense to the sentence embedding"
                )
        return cls(
            in_features=positive_int(f"{path}: in_features", require(data, "in_features", path, int)),
            out_features=positive_int(f"{path}: out_features", require(data, "out_features", path, int)),
            bias=bool(data.get("bias", True)),
            activation=parse_activation(data.get("activation_function"), path),
        )

    @classmethod
    def from_file(cls, path: Path) -> DenseConfig:
        """Read a Dense config.json."""
        return cls.from_dict(read_json(path), path)


def parse_activation(name: object, path: Path | str, default: Activation = Activation.TANH) -> Activation:
    """The Activation for a ``torch.nn`` class path (``torch.nn.modules.activation.Tanh``); None means ``default``.

    ``path`` names the file in errors.
    """
    if name is None:
        return default
    options = ", ".join(f"torch.nn.{a.value}" for a in Activation)
    if not isinstance(name, str) or not name.startswith("torch."):
        # sentence-transformers would fall back to Tanh with a warning; a silent change of function is refused here.
        raise ValueError(f"{path}: activation_function {name!r} is not a torch.nn class; supported: {options}")
    short = name.rsplit(".", 1)[-1]
    try:
        return Activation(short)
    except ValueError:
        raise ValueError(f"{path}: unsupported activation_function {name!r}; supported: {options}") from None


@dataclass(frozen=True)
class SentenceTransformerConfig:
    """config_sentence_transformers.json: prompts and the similarity function."""

    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn: SimilarityFn = SimilarityFn.COSINE

    @classmethod
    def from_file(cls, path: Path) -> SentenceTransformerConfig:
        """Read the file; a missing file means the defaults, as in sentence-transformers."""
        if not path.is_file():
            return cls()
        data = read_json(path)
        prompts = data.get("prompts") or {}
        if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
            raise ValueError(f"{path}: 'prompts' must map names to strings")
        default = data.get("default_prompt_name")
        if default is not None and default not in prompts:
            raise ValueError(f"{path}: default_prompt_name {default!r} is not one of the prompts {sorted(prompts)}")
        fn = data.get("similarity_fn_name") or SimilarityFn.COSINE.value
        return cls(dict(prompts), default, _enum_value(SimilarityFn, fn, "similarity_fn_name", path))


@dataclass(frozen=True)
class ModelConfig:
    """Everything the runtime needs from a sentence-transformers model directory."""

    modules: ModulesConfig
    transformer: TransformerConfig
    pooling: PoolingConfig
    sentence_transformer: SentenceTransformerConfig
    dense: tuple[DenseConfig, ...] = ()

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> ModelConfig:
        """Read and validate all configuration files of ``model_dir``."""
        root = Path(model_dir)
        modules = ModulesConfig.from_file(root / "modules.json")
        transformer = TransformerConfig.from_dir(root / modules.path_of(ModuleKind.TRANSFORMER))
        pooling = PoolingConfig.from_file(root / modules.path_of(ModuleKind.POOLING) / "config.json")
        dense = tuple(DenseConfig.from_file(root / p / "config.json") for p in modules.paths_of(ModuleKind.DENSE))
        width = pooling.output_dimension
        for path, layer in zip(modules.paths_of(ModuleKind.DENSE), dense, strict=True):
            if layer.in_features != width:
                raise ValueError(
                    f"{root / path / 'config.json'}: in_features {layer.in_features} does not match the "
                    f"{width} values the module before it gives"
                )
            width = layer.out_features
        st = SentenceTransformerConfig.from_file(root / "config_sentence_transformers.json")
        return cls(modules, transformer, pooling, st, dense)

    @property
    def dimension(self) -> int:
        """Width of the embeddings: the last Dense module's out_features, else the pooled width."""
        return self.dense[-1].out_features if self.dense else self.pooling.output_dimension

    @property
    def transformer_dir(self) -> str:
        """The Transformer module's sub-directory ("" for the model root, "0_Transformer" in older models)."""
        return self.modules.path_of(ModuleKind.TRANSFORMER)

    @property
    def normalize(self) -> bool:
        """Whether the model L2-normalizes its output."""
        return self.modules.normalize

    @property
    def max_seq_length(self) -> int:
        """Token limit, including [CLS] and [SEP]."""
        return self.transformer.max_seq_length
