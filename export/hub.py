"""Hugging Face hub ids for ``embedrt export``: the local hub cache first, then a download of only what an export reads.

Everything but the download is standard library, so a model already in the cache resolves without network and
without huggingface_hub installed; huggingface_hub is imported only when files must be fetched. The cache location,
the offline switch and the id rules mirror huggingface_hub (``constants``, ``validate_repo_id``) and
sentence-transformers (``SentenceTransformer.__init__``), but are read at call time rather than at import time.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ORGANIZATION = "sentence-transformers"
DEFAULT_REVISION = "main"
INSTALL_HINT = "pip install 'embedrt[export]'"

# huggingface_hub.utils._validators.REPO_ID_REGEX; its validate_repo_id also refuses "--", ".." and a ".git" end.
_REPO_ID = re.compile(r"^(\b[\w\-.]+\b/)?\b[\w\-.]{1,96}\b$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# huggingface_hub.constants.ENV_VARS_TRUE_VALUES
_TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})

# sentence-transformers' util.misc.ORIGINAL_TRANSFORMER_MODELS: bare names it does not prefix with its organization,
# because they are (redirected) transformers checkpoints. Copied so that resolving ids never imports
# sentence-transformers (and torch).
ORIGINAL_TRANSFORMER_MODELS = frozenset(
    {
        "albert-base-v1",
        "albert-base-v2",
        "albert-large-v1",
        "albert-large-v2",
        "albert-xlarge-v1",
        "albert-xlarge-v2",
        "albert-xxlarge-v1",
        "albert-xxlarge-v2",
        "bert-base-cased-finetuned-mrpc",
        "bert-base-cased",
        "bert-base-chinese",
        "bert-base-german-cased",
        "bert-base-german-dbmdz-cased",
        "bert-base-german-dbmdz-uncased",
        "bert-base-multilingual-cased",
        "bert-base-multilingual-uncased",
        "bert-base-uncased",
        "bert-large-cased-whole-word-masking-finetuned-squad",
        "bert-large-cased-whole-word-masking",
        "bert-large-cased",
        "bert-large-uncased-whole-word-masking-finetuned-squad",
        "bert-large-uncased-whole-word-masking",
        "bert-large-uncased",
        "camembert-base",
        "ctrl",
        "distilbert-base-cased-distilled-squad",
        "distilbert-base-cased",
        "distilbert-base-german-cased",
        "distilbert-base-multilingual-cased",
        "distilbert-base-uncased-distilled-squad",
        "distilbert-base-uncased-finetuned-sst-2-english",
        "distilbert-base-uncased",
        "distilgpt2",
        "distilroberta-base",
        "gpt2-large",
        "gpt2-medium",
        "gpt2-xl",
        "gpt2",
        "openai-gpt",
        "roberta-base-openai-detector",
        "roberta-base",
        "roberta-large-mnli",
        "roberta-large-openai-detector",
        "roberta-large",
        "t5-11b",
        "t5-3b",
        "t5-base",
        "t5-large",
        "t5-small",
        "transfo-xl-wt103",
        "xlm-clm-ende-1024",
        "xlm-clm-enfr-1024",
        "xlm-mlm-100-1280",
        "xlm-mlm-17-1280",
        "xlm-mlm-en-2048",
        "xlm-mlm-ende-1024",
        "xlm-mlm-enfr-1024",
        "xlm-mlm-enro-1024",
        "xlm-mlm-tlm-xnli15-1024",
        "xlm-mlm-xnli15-1024",
        "xlm-roberta-base",
        "xlm-roberta-large-finetuned-conll02-dutch",
        "xlm-roberta-large-finetuned-conll02-spanish",
        "xlm-roberta-large-finetuned-conll03-english",
        "xlm-roberta-large-finetuned-conll03-german",
        "xlm-roberta-large",
        "xlnet-base-cased",
        "xlnet-large-cased",
    }
)

# What an export reads from a module directory (the Transformer's, in the root or 0_Transformer/ in old models;
# Pooling's and Dense's config.json and weights). Tokenizer: tokenizer.json, or vocab.txt for models without one;
# never sentencepiece or BPE files (BERT only). Weights: safetensors, single or sharded.
MODULE_FILES = (
    "config.json",
    "sentence_*_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
)
# Pickle weights: loading them can run code, so they are fetched and read only with allow_pickle.
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin")
ROOT_ONLY_FILES = ("modules.json", "config_sentence_transformers.json")
# sentence-transformers saves module i of class C in "{i}_{C}/" (1_Pooling, 2_Dense, 0_Transformer).
MODULE_DIR = "[0-9]*_*/"
# fnmatch's "*" also matches "/", so "[0-9]*_*/config.json" would match "1_Pooling/onnx/config.json": files more
# than one directory deep are never needed.
IGNORE_PATTERNS = ("*/*/*",)


def allow_patterns(allow_pickle: bool = False) -> list[str]:
    """The ``allow_patterns`` for huggingface_hub's ``snapshot_download``: the files an export reads, nothing else.

    Used together with ``IGNORE_PATTERNS`` (as ``ignore_patterns``).
    """
    module_files = MODULE_FILES + (PICKLE_FILES if allow_pickle else ())
    return [*ROOT_ONLY_FILES, *module_files, *(MODULE_DIR + name for name in module_files)]


def is_needed(relative_path: str, allow_pickle: bool = False) -> bool:
    """Whether a repo file (POSIX path relative to the repo root) is one an export reads.

    The same test as huggingface_hub's ``filter_repo_objects(allow_patterns=..., ignore_patterns=...)``.
    """
    if any(fnmatch.fnmatch(relative_path, pattern) for pattern in IGNORE_PATTERNS):
        return False
    return any(fnmatch.fnmatch(relative_path, pattern) for pattern in allow_patterns(allow_pickle))


def needed_files(model_dir: Path, allow_pickle: bool = False) -> list[str]:
    """The files of ``model_dir`` that an export reads, as sorted POSIX paths relative to it."""
    found = []
    for entry in model_dir.iterdir():
        if entry.is_dir() and not fnmatch.fnmatch(f"{entry.name}/", MODULE_DIR):
            continue  # onnx/, .git/ ...: nothing there is read, so not even listed
        children = entry.iterdir() if entry.is_dir() else [entry]
        for item in children:
            relative = item.relative_to(model_dir).as_posix()
            if item.is_file() and is_needed(relative, allow_pickle):
                found.append(relative)
    return sorted(found)


def missing_files(model_dir: Path, allow_pickle: bool = False) -> list[str]:
    """What an export needs that ``model_dir`` lacks: modules.json and, per module it lists, config and weights.

    A plain Hugging Face cross-encoder (no modules.json, see ``is_plain_cross_encoder``) needs what a Transformer
    module at the root needs: config.json, tokenizer.json or vocab.txt, and its weights.

    An empty list means the directory is complete enough to export or to fail with the exporter's own message (a
    malformed modules.json or an unsupported module is left to the exporter to report).
    """
    if not (model_dir / "modules.json").is_file():
        if is_plain_cross_encoder(model_dir):  # the hub's cross-encoder/* layout: one Transformer at the root
            return _module_missing(model_dir, "", "Transformer", allow_pickle)
        return ["modules.json"]
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    missing: list[str] = []
    for entry in modules if isinstance(modules, list) else []:
        if isinstance(entry, dict):
            kind = str(entry.get("type", "")).rsplit(".", 1)[-1]
            missing += _module_missing(model_dir, str(entry.get("path") or ""), kind, allow_pickle)
    return missing


def is_plain_cross_encoder(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a Hugging Face ``*ForSequenceClassification`` without modules.json.

    That is how the hub's cross-encoder/ms-marco-* models are saved; the exporter reads them as a cross-encoder
    (``embedrt.export.cross_encoder``), with the same test on config.json's ``architectures``.
    """
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(architectures, list) and any(str(a).endswith("ForSequenceClassification") for a in architectures)


def _module_missing(model_dir: Path, module_path: str, kind: str, allow_pickle: bool) -> list[str]:
    """The files a module of this kind needs that its directory lacks (Normalize and others need none)."""
    directory = model_dir / module_path
    prefix = f"{module_path.strip('/')}/" if module_path.strip("/") else ""
    needs: list[tuple[str, ...]] = []
    if kind in ("Transformer", "Pooling", "Dense"):
        needs.append(("config.json",))
    if kind == "Transformer":
        needs.append(("tokenizer.json", "vocab.txt"))
    missing = [" or ".join(prefix + name for name in names) for names in needs if not _any_file(directory, names)]
    if kind in ("Transformer", "Dense") and not _has_weights(directory, allow_pickle):
        missing.append(" or ".join(prefix + name for name in _weight_names(allow_pickle)))
    return missing


def _any_file(directory: Path, names: Iterable[str]) -> bool:
    return any((directory / name).is_file() for name in names)


def _weight_names(allow_pickle: bool) -> tuple[str, ...]:
    return ("model.safetensors", "pytorch_model.bin") if allow_pickle else ("model.safetensors",)


def _has_weights(directory: Path, allow_pickle: bool) -> bool:
    """A single weights file, or a shard index whose shards are all present."""
    for name in _weight_names(allow_pickle):
        if (directory / name).is_file() or _has_shards(directory, directory / f"{name}.index.json"):
            return True
    return False


def _has_shards(directory: Path, index: Path) -> bool:
    """Whether a (safetensors or pickle) shard index exists and every shard its weight_map names is present."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(weight_map, dict) or not weight_map:
        return False
    return all(isinstance(name, str) and (directory / name).is_file() for name in weight_map.values())


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub uses, from the environment now.

    ``HF_HUB_CACHE``, else the legacy ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, where ``HF_HOME`` defaults to
    ``$XDG_CACHE_HOME/huggingface`` and ``XDG_CACHE_HOME`` to ``~/.cache`` (huggingface_hub.constants' rules).
    """
    env = os.environ
    home = _expand(
        env.get("HF_HOME", os.path.join(env.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"))
    )
    legacy = env.get("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub"))
    return Path(_expand(env.get("HF_HUB_CACHE", legacy)))


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


def offline_setting() -> str | None:
    """``"NAME=value"`` of the variable that puts huggingface_hub offline now, or None when downloads are allowed.

    huggingface_hub reads ``HF_HUB_OFFLINE``, and ``TRANSFORMERS_OFFLINE`` only when the former is unset or empty.
    """
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(name)
        if value:
            return f"{name}={value}" if value.upper() in _TRUE_VALUES else None
    return None


def hub_repo_id(src: str) -> str:
    """The hub repo id ``src`` names, by sentence-transformers' rules for a ``src`` that is not a directory.

    ``org/name`` as it is; a bare name gets the ``sentence-transformers/`` organization (unless it is one of
    ``ORIGINAL_TRANSFORMER_MODELS``). A file, a path with more than one ``/`` (or a backslash on Windows) or anything
    the hub would refuse as an id raises FileNotFoundError naming it.
    """
    local = Path(src).absolute()
    if local.is_file():
        raise FileNotFoundError(f"{src} ({local}) is a file, not a sentence-transformers model directory")
    if (os.sep == "\\" and "\\" in src) or src.count("/") > 1:
        raise FileNotFoundError(f"{src}: no such model directory ({local}), and not a hub id (org/name)")
    repo_id = src
    if "/" not in src and src.lower() not in ORIGINAL_TRANSFORMER_MODELS:
        repo_id = f"{DEFAULT_ORGANIZATION}/{src}"
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise FileNotFoundError(
            f"{src}: no such model directory ({local}), and not a valid hub id "
            "(org/name or name: letters, digits, '-', '_', '.'; no '--' or '..')"
        )
    return repo_id


def check_revision(revision: str) -> str:
    """``revision`` if it can name a branch, tag or commit; refs/<revision> is a path, so no '..' or absolute path."""
    parts = revision.replace("\\", "/").split("/")
    if not revision or revision.startswith(("/", "\\")) or ".." in parts or "" in parts:
        raise ValueError(f"invalid revision {revision!r}: expected a branch, tag or commit sha")
    return revision


@dataclass(frozen=True)
class HubSnapshot:
    """A hub model's files at one commit, in the local cache."""

    repo_id: str
    revision: str
    commit: str
    path: Path

    def info(self) -> dict[str, Any]:
        """The provenance fields for the export manifest's ``source`` (without file hashes)."""
        return {"hub_id": self.repo_id, "revision": self.revision, "commit": self.commit}


class HubModelNotFoundError(FileNotFoundError):
    """A hub id that is neither usable in the local cache nor downloadable (offline, or the download failed)."""


def repo_cache_dir(repo_id: str, cache_dir: Path) -> Path:
    """``models--{org}--{name}`` in the cache, as huggingface_hub's ``repo_folder_name`` names it."""
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(
    repo_id: str, revision: str, cache_dir: Path, allow_pickle: bool = False
) -> tuple[HubSnapshot | None, str]:
    """The cached snapshot of ``repo_id`` at ``revision`` if it holds what an export needs, else None and why not."""
    commit, why = _cached_commit(repo_cache_dir(repo_id, cache_dir), revision)
    if commit is None:
        return None, why
    path = repo_cache_dir(repo_id, cache_dir) / "snapshots" / commit
    if not path.is_dir():
        return None, f"no {path}"
    missing = missing_files(path, allow_pickle)
    if missing:
        return None, f"{path} lacks {', '.join(missing)}{_pickle_hint(missing, allow_pickle)}"
    return HubSnapshot(repo_id, revision, commit, path), ""


def _cached_commit(repo_dir: Path, revision: str) -> tuple[str | None, str]:
    """The commit ``revision`` names: itself when it is a sha, else what ``refs/<revision>`` holds; or None and why."""
    if _COMMIT.match(revision):
        return revision, ""
    ref = repo_dir / "refs" / revision
    if not ref.is_file():
        return None, f"no {ref}"
    commit = ref.read_text(encoding="utf-8").strip()  # huggingface_hub writes it without a newline; git may not
    if not _COMMIT.match(commit):
        return None, f"{ref} holds {commit[:60]!r}, not a commit sha"
    return commit, ""


def _pickle_hint(missing: list[str], allow_pickle: bool) -> str:
    if allow_pickle or not any("model.safetensors" in item for item in missing):
        return ""
    return " (pickle weights, pytorch_model.bin, are only used with allow_pickle=True / --allow-pickle)"


def resolve_hub(src: str, revision: str | None = None, allow_pickle: bool = False) -> HubSnapshot:
    """The cached snapshot of the hub model ``src`` names, downloading only the needed files when it is not cached.

    Args:
        src: ``org/name`` or a bare name (``sentence-transformers/name``), not an existing directory.
        revision: branch, tag or 40-hex commit sha; None means ``main``.
        allow_pickle: also fetch and require-or-accept ``pytorch_model.bin`` weights.

    Raises:
        FileNotFoundError: ``src`` is no hub id (see ``hub_repo_id``).
        HubModelNotFoundError: not usable in the cache, and offline or the download failed (or lacked files).
        ImportError: a download is needed and huggingface_hub is not installed.

    """
    repo_id = hub_repo_id(src)
    revision = check_revision(revision or DEFAULT_REVISION)
    cache_dir = hub_cache_dir()
    snapshot, why = cached_snapshot(repo_id, revision, cache_dir, allow_pickle)
    if snapshot is not None:
        return snapshot
    where = (
        f"{src}: no such model directory ({Path(src).absolute()}), and {repo_id} at revision {revision} "
        f"is not in the Hugging Face cache {cache_dir} ({why})"
    )
    offline = offline_setting()
    if offline is not None:
        raise HubModelNotFoundError(f"{where}; {offline} is set, so it was not downloaded (unset it to download)")
    path = _download(repo_id, revision, cache_dir, allow_pickle, where)
    return _downloaded_snapshot(repo_id, revision, cache_dir, path, allow_pickle)


def _download(repo_id: str, revision: str, cache_dir: Path, allow_pickle: bool, where: str) -> Path:
    """Fetch the needed files into ``cache_dir`` (passed explicitly: huggingface_hub reads its env at import)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(f"{where}; downloading it needs huggingface_hub: {INSTALL_HINT}") from None
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=str(cache_dir),
            allow_patterns=allow_patterns(allow_pickle),
            ignore_patterns=list(IGNORE_PATTERNS),
        )
    except Exception as exc:  # any failure (network, auth, unknown repo or revision) is reported the same way
        raise HubModelNotFoundError(f"{where}; downloading it failed: {type(exc).__name__}: {exc}") from exc
    return Path(path)


def _downloaded_snapshot(repo_id: str, revision: str, cache_dir: Path, path: Path, allow_pickle: bool) -> HubSnapshot:
    """The snapshot ``snapshot_download`` returned (``snapshots/<commit>``), checked for the needed files."""
    # snapshot_download returns snapshots/<commit>; refs/<revision> is the fallback should that ever change.
    commit = path.name if _COMMIT.match(path.name) else _cached_commit(repo_cache_dir(repo_id, cache_dir), revision)[0]
    missing = missing_files(path, allow_pickle) if path.is_dir() else ["modules.json"]
    if missing:
        not_st = (
            " (not a sentence-transformers model, nor a Hugging Face *ForSequenceClassification cross-encoder)"
            if missing == ["modules.json"]
            else ""
        )
        raise HubModelNotFoundError(
            f"{repo_id} at revision {revision}, downloaded to {path}, lacks "
            f"{', '.join(missing)}{_pickle_hint(missing, allow_pickle)}{not_st}"
        )
    if commit is None:
        raise HubModelNotFoundError(f"{path}: cannot tell which commit of {repo_id} snapshot_download fetched")
    return HubSnapshot(repo_id, revision, commit, path)
