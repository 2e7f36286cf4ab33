"""Random-weight ModernBERT models (embedders and cross-encoders), saved as sentence-transformers saves them.

The tokenizer is ModernBERT's kind, a byte-level BPE (:func:`write_tokenizer`), trained here on sts-train; config.json's
special ids are that vocabulary's.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bpe_tokenizer import modernbert_tokenizer  # noqa: E402

HIDDEN = 64
# Both kinds of layer: 0 and 3 global (every 3), 1, 2 local; a window of 12 (|i - j| <= 6).
LAYERS = 4
EVERY_N = 3
LOCAL_ATTENTION = 12
MAX_POSITIONS = 512
# Non-default thetas (the defaults are 160000 and 10000): a model built with the wrong ones gives other vectors.
GLOBAL_THETA = 80.0
LOCAL_THETA = 20.0
_TRAINED: list[Path] = []  # the trained tokenizer directory, once per process


def write_tokenizer(out_dir: Path) -> dict[str, int]:
    """Write the tokenizer of these test models into ``out_dir``; return its special ids for config.json.

    ModernBERT's shape of tokenizer (benchmarks/bpe_tokenizer.py): a byte-level BPE trained on sts-train, ``[CLS] A
    [SEP]``, ``[MASK]`` with lstrip, added tokens, ids and mask only. Trained once per process, then copied.
    """
    from transformers import AutoTokenizer

    if not _TRAINED:
        _TRAINED.append(modernbert_tokenizer(Path(tempfile.mkdtemp(prefix="modernbert-bpe-")), 3000, MAX_POSITIONS))
    shutil.copytree(_TRAINED[0], out_dir, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    return {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }


def modernbert_config(special: dict[str, int], **overrides: Any) -> Any:
    """A tiny ModernBertConfig: 4 layers (global every 3), hidden 64, 4 heads, GeGLU 93 wide, window 12."""
    from transformers import ModernBertConfig

    sizes: dict[str, Any] = {
        **special,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 4,
        "intermediate_size": 93,
        "max_position_embeddings": MAX_POSITIONS,
        "global_attn_every_n_layers": EVERY_N,
        "local_attention": LOCAL_ATTENTION,
        "global_rope_theta": GLOBAL_THETA,
        "local_rope_theta": LOCAL_THETA,
        "initializer_range": 0.1,  # 0.02 leaves attention nearly uniform; 0.2 put fp16 past its 1e-2 gate (CLS, norm 8)
        "reference_compile": False,
    }
    return ModernBertConfig(**{**sizes, **overrides})


def save_modernbert(
    root: Path,
    *,
    seed: int,
    pooling: str = "mean",
    normalize: bool = True,
    max_seq_length: int | None = 256,
    prompts: dict[str, str] | None = None,
    **config: Any,
) -> Path:
    """A random ModernBertModel -> Pooling(``pooling``) [-> Normalize], saved by sentence-transformers (safetensors).

    ``max_seq_length`` None leaves it out of sentence_bert_config.json; ``prompts`` go to
    config_sentence_transformers.json as modernbert-embed-base's ``search_query: `` / ``search_document: ``.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import ModernBertModel

    hf = root / "hf"
    special = write_tokenizer(hf)
    torch.manual_seed(seed)
    perturb(ModernBertModel(modernbert_config(special, **config))).save_pretrained(hf, safe_serialization=True)
    kwargs = {"max_seq_length": max_seq_length} if max_seq_length is not None else {}
    modules = [Transformer(str(hf), **kwargs), Pooling(HIDDEN, pooling)]
    if normalize:
        modules.append(Normalize())
    source = root / "st"
    SentenceTransformer(modules=modules, device="cpu", prompts=prompts).save(str(source))
    return source


def save_modernbert_cross_encoder(
    root: Path, *, seed: int, classifier_pooling: str, num_labels: int = 1, **config: Any
) -> Path:
    """A random ModernBertForSequenceClassification in the plain Hugging Face layout (as the hub's rerankers)."""
    import torch
    from transformers import ModernBertForSequenceClassification

    special = write_tokenizer(root)
    torch.manual_seed(seed)
    settings = {"classifier_pooling": classifier_pooling, "num_labels": num_labels, "classifier_bias": True, **config}
    model = perturb(ModernBertForSequenceClassification(modernbert_config(special, **settings)))
    model.save_pretrained(root, safe_serialization=True)
    return root


def to_transformers5_spelling(config_path: Path, every_n: int | None = None) -> dict[str, Any]:
    """Rewrite config.json as transformers 5.x writes it: ``layer_types`` and ``rope_parameters``, no 4.x thetas.

    ``global_attn_every_n_layers`` is set to 1 (every layer global) so that a reader of the 4.x key alone gets
    another model; the true pattern is in ``layer_types``. Returns the new config.
    """
    data = json.loads(config_path.read_text(encoding="utf-8"))
    n = every_n if every_n is not None else int(data["global_attn_every_n_layers"])
    data["layer_types"] = [
        "full_attention" if i % n == 0 else "sliding_attention" for i in range(int(data["num_hidden_layers"]))
    ]
    data["rope_parameters"] = {
        "full_attention": {"rope_theta": data.pop("global_rope_theta"), "rope_type": "default"},
        "sliding_attention": {"rope_theta": data.pop("local_rope_theta"), "rope_type": "default"},
    }
    data["global_attn_every_n_layers"] = 1
    config_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return data


def perturb(model: Any) -> Any:
    """Random LayerNorm scales and biases, and Linear biases (the init leaves them 1 and 0): make each one matter."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.3)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.3)
            elif isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0.0, 0.1)
    return model


@dataclass(frozen=True)
class Rules:
    """ModernBERT's rules as this numpy model applies them: the true ones by default, a mutant when changed."""

    global_layer: Callable[[int, int], bool] = lambda i, n: i % n == 0
    in_window: Callable[[np.ndarray, int], np.ndarray] = lambda distance, local: distance <= local // 2
    swap_thetas: bool = False
    gate_first: bool = False  # GeGLU reads (input, gate) from Wi's output; True swaps them
    tanh_gelu: bool = False  # the erf GELU (hidden_activation "gelu"); True takes the tanh approximation
    drop_norm_bias: bool = False


def numpy_modernbert(
    weights: dict[str, np.ndarray], config: dict[str, Any], ids: np.ndarray, mask: np.ndarray, rules: Rules = Rules()
) -> np.ndarray:
    """last_hidden_state of a ModernBertModel in float64 numpy, written from the rules (not traced from torch).

    ``weights``: the model's state dict (prefix stripped) as arrays; ``config``: its config.json (4.x spelling).
    """
    from math import erf

    erf_v = np.vectorize(erf)
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    head_dim = hidden // heads
    eps = float(config["norm_eps"])

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        out = (x - mean) / np.sqrt(var + eps) * weights[f"{name}.weight"]
        bias = weights.get(f"{name}.bias")
        return out if bias is None or rules.drop_norm_bias else out + bias

    def linear(x: np.ndarray, name: str) -> np.ndarray:
        out = x @ weights[f"{name}.weight"].T
        bias = weights.get(f"{name}.bias")
        return out if bias is None else out + bias

    def gelu(x: np.ndarray) -> np.ndarray:
        if rules.tanh_gelu:
            return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1 + erf_v(x / np.sqrt(2)))

    def rotary(theta: float, length: int) -> tuple[np.ndarray, np.ndarray]:
        inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
        freqs = np.arange(length, dtype=np.float64)[:, None] * inv_freq[None, :]
        angles = np.concatenate([freqs, freqs], axis=-1)
        return np.cos(angles), np.sin(angles)

    def rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        half = x.shape[-1] // 2
        return x * cos + np.concatenate([-x[..., half:], x[..., :half]], axis=-1) * sin

    batch, length = ids.shape
    thetas = (float(config["global_rope_theta"]), float(config["local_rope_theta"]))
    if rules.swap_thetas:
        thetas = thetas[::-1]
    positions = np.arange(length)
    distance = np.abs(positions[:, None] - positions[None, :])
    key_ok = mask[:, None, None, :].astype(bool)  # (batch, 1, 1, keys)
    window = rules.in_window(distance, int(config["local_attention"]))[None, None]
    h = norm(weights["embeddings.tok_embeddings.weight"][ids].astype(np.float64), "embeddings.norm")
    for i in range(int(config["num_hidden_layers"])):
        is_global = rules.global_layer(i, int(config["global_attn_every_n_layers"]))
        x = h if i == 0 else norm(h, f"layers.{i}.attn_norm")
        qkv = linear(x, f"layers.{i}.attn.Wqkv").reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        cos, sin = rotary(thetas[0] if is_global else thetas[1], length)
        q, k, v = rotate(qkv[0], cos, sin), rotate(qkv[1], cos, sin), qkv[2]
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim)
        allowed = key_ok if is_global else key_ok & window
        scores = np.where(allowed, scores, -1e300)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        h = h + linear(context.transpose(0, 2, 1, 3).reshape(batch, length, hidden), f"layers.{i}.attn.Wo")
        wide = linear(norm(h, f"layers.{i}.mlp_norm"), f"layers.{i}.mlp.Wi")
        first, second = np.split(wide, 2, axis=-1)
        if rules.gate_first:
            first, second = second, first
        h = h + linear(gelu(first) * second, f"layers.{i}.mlp.Wo")
    return norm(h, "final_norm")


def load_weights(hf_dir: Path) -> dict[str, np.ndarray]:
    """A ModernBertModel's safetensors as float64 arrays, without the ``model.`` prefix of a classifier's."""
    from safetensors.numpy import load_file

    tensors = load_file(str(hf_dir / "model.safetensors"))
    return {k.removeprefix("model."): v.astype(np.float64) for k, v in tensors.items()}
