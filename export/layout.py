"""What the exporter reads and copies: the Transformer's architecture and weights, Dense weights, config files."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from embedrt.config import TRANSFORMER_CONFIG_NAMES, read_json
from embedrt.export.architectures import Architecture, families

SAFE_WEIGHTS = "model.safetensors"
PICKLE_WEIGHTS = "pytorch_model.bin"
# The model root's pipeline files, and the Transformer module's (in the root, or in 0_Transformer/ in older
# models): what defines tokenization and the pipeline. Transformer weights are never copied.
ROOT_FILES = ("modules.json", "config_sentence_transformers.json")
TRANSFORMER_FILES = (
    *TRANSFORMER_CONFIG_NAMES,
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def copy_files(source: Path, target: Path, names: Iterable[str]) -> None:
    """Copy those of ``names`` that exist in ``source`` into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def check_transformer(
    transformer_dir: Path, allow_pickle: bool, cross_encoder: bool = False
) -> tuple[Architecture, dict[str, int]]:
    """Refuse what this exporter cannot convert; return the family and the sizes the graph optimizer needs.

    ``transformer_dir`` is the Transformer module's directory: the model root, or ``0_Transformer/`` in models
    saved by older sentence-transformers versions. ``cross_encoder``: the model is exported with its classifier.
    """
    config_path = transformer_dir / "config.json"
    hf_config = read_json(config_path)
    supported = families()
    architecture = supported.get(str(hf_config.get("model_type")))
    if architecture is None:
        raise ValueError(
            f"{config_path}: model_type {hf_config.get('model_type')!r} is not supported; embedrt exports "
            + ", ".join(f"{a.model_class} (model_type {t!r})" for t, a in supported.items())
        )
    check_not_custom(config_path, hf_config, architecture.classes)
    if cross_encoder and architecture.classifier_class is None:
        raise ValueError(
            f"{config_path}: a cross-encoder of model_type {architecture.model_type!r} "
            f"({', '.join(hf_config.get('architectures') or [])}) is not supported yet; embedrt exports "
            f"{architecture.model_class} embedding models of this family, and cross-encoders of "
            + ", ".join(a.classifier_class for a in supported.values() if a.classifier_class)
        )
    _weights(transformer_dir, allow_pickle, sharded=True)
    architecture.config_overrides(transformer_dir)  # a config or transformers version it refuses fails here, early
    return architecture, architecture.sizes(hf_config, config_path)


_CUSTOM_CODE = "the model needs custom code (trust_remote_code), which embedrt does not run"


def check_not_custom(config_path: Path, hf_config: dict[str, Any], architectures: frozenset[str]) -> None:
    """Refuse a lookalike: a config that declares a supported model_type but is another model.

    jina-embeddings-v2 and jina-reranker-v1 declare ``"model_type": "bert"`` but are ALiBi + GEGLU models loaded
    through ``auto_map`` custom code; transformers would build a plain BertModel from their weights, and a parity
    check against that wrong model would pass. jina-embeddings-v3 declares ``xlm-roberta`` / ``XLMRobertaModel``
    with rotary positions and LoRA adapters, the same way. So: no ``auto_map``, absolute positions only, and
    architectures from transformers' own classes of the family.
    """
    if "auto_map" in hf_config:
        raise ValueError(f"{config_path}: 'auto_map' is set: {_CUSTOM_CODE}")
    positions = hf_config.get("position_embedding_type", "absolute")
    if positions != "absolute":
        raise ValueError(
            f"{config_path}: 'position_embedding_type' is {positions!r}; embedrt exports absolute position "
            f"embeddings only ({_CUSTOM_CODE}, or positions embedrt's graph does not reproduce)"
        )
    declared = hf_config.get("architectures") or []
    unknown = [a for a in declared if a not in architectures] if isinstance(declared, list) else declared
    if unknown:
        raise ValueError(
            f"{config_path}: 'architectures' holds {unknown or declared!r}, not one of transformers' "
            f"{', '.join(sorted(architectures))}: {_CUSTOM_CODE}"
        )


def _weights(directory: Path, allow_pickle: bool, sharded: bool = False) -> Path:
    """The module's weight file: safetensors, or pickle only when allowed (pickle can run code when loaded)."""
    safe = directory / SAFE_WEIGHTS
    if safe.is_file() or (sharded and (directory / f"{SAFE_WEIGHTS}.index.json").is_file()):
        return safe
    pickle = directory / PICKLE_WEIGHTS
    if not pickle.is_file():
        raise FileNotFoundError(f"{directory} has neither {SAFE_WEIGHTS} nor {PICKLE_WEIGHTS}")
    if not allow_pickle:
        raise ValueError(
            f"{directory} has only pickle weights ({PICKLE_WEIGHTS}), which can run code when loaded; "
            "convert them to safetensors or pass allow_pickle=True (--allow-pickle) if you trust the source"
        )
    return pickle


def write_dense_weights(module_dir: Path, out_file: Path, allow_pickle: bool) -> None:
    """Write a Dense module's ``linear.weight`` / ``linear.bias`` as float32 safetensors, whatever the source had."""
    import torch
    from safetensors.torch import load_file, save_file

    source = _weights(module_dir, allow_pickle)
    if source.name == SAFE_WEIGHTS:
        tensors = load_file(str(source))
    else:  # weights_only refuses pickled objects other than tensors, even behind --allow-pickle
        tensors = torch.load(str(source), map_location="cpu", weights_only=True)
    wanted = {k: v for k, v in tensors.items() if k in ("linear.weight", "linear.bias")}
    if "linear.weight" not in wanted:
        raise ValueError(f"{source}: no 'linear.weight' tensor (has {sorted(tensors)})")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in wanted.items()}, str(out_file))


def check_tokenizer(transformer_dir: Path) -> None:
    """Refuse, before the long steps, a tokenizer.json whose model embedrt does not reproduce (WordLevel ...).

    Only the model type is read here; the tokenizer itself is built, and checked in full, after the copy.
    """
    import json

    from embedrt.tokenizers import supported_model_type

    path = transformer_dir / "tokenizer.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return  # the tokenizer's own reading names what is wrong, after the copy
        if isinstance(data, dict):
            supported_model_type(path, data)


# Families whose vocab.txt the export converts to tokenizer.json rather than letting the runtime read it.
_CONVERTED_VOCAB_TXT = frozenset({"mpnet"})


def ensure_tokenizer_json(transformer_dir: Path, target: Path) -> None:
    """Write tokenizer.json into ``target`` when the source has only a slow tokenizer (sentencepiece.bpe.model ...).

    RoBERTa's vocab.json + merges.txt (byte-level BPE) are such files too. sentence-transformers runs the fast
    tokenizer that transformers converts from those files; saving that conversion gives the runtime the very
    tokenizer the reference uses. A BERT WordPiece vocab.txt is read as it
    is; MPNet's is converted too, as its conversion differs from BERT's (``<s> A </s>``, added tokens matched after
    normalization, ``<mask>`` with lstrip).
    """
    if (target / "tokenizer.json").is_file():
        return
    model_type = read_json(transformer_dir / "config.json").get("model_type")
    if (target / "vocab.txt").is_file() and model_type not in _CONVERTED_VOCAB_TXT:
        return
    import tempfile

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir), use_fast=True)
    if not tokenizer.is_fast:
        raise ValueError(f"{transformer_dir}: transformers has no fast tokenizer for it; embedrt needs tokenizer.json")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (Path(tmp) / name).is_file() and not (target / name).is_file():
                shutil.copy2(Path(tmp) / name, target / name)
