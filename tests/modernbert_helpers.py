"""Random-weight ModernBERT models (embedders and cross-encoders), saved as sentence-transformers saves them.

The tokenizer is the one choice to switch: ModernBERT's own is a byte-level BPE, which embedrt's runtime does not
read yet, so :func:`write_tokenizer` gives these models MiniLM's WordPiece tokenizer, and config.json's special ids
are that vocabulary's. Once the byte-level BPE tokenizer lands, :func:`write_tokenizer` alone changes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

HIDDEN = 64
# Both kinds of layer: 0 and 3 global (every 3), 1, 2 local; a window of 12 (|i - j| <= 6).
LAYERS = 4
EVERY_N = 3
LOCAL_ATTENTION = 12
MAX_POSITIONS = 512
# Non-default thetas (the defaults are 160000 and 10000): a model built with the wrong ones gives other vectors.
GLOBAL_THETA = 80.0
LOCAL_THETA = 20.0
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def write_tokenizer(minilm_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write the tokenizer of these test models into ``out_dir``; return its special ids for config.json.

    MiniLM's uncased WordPiece (the ``minilm_dir`` fixture): [CLS] 101, [SEP] 102, [PAD] 0, 30522 tokens, with
    ModernBERT's ``model_input_names`` (ids and mask).
    """
    from transformers import AutoTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, out_dir / name)
    # As ModernBERT's own tokenizer_config.json: no token_type_ids, which ModernBertModel.forward does not take.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["model_input_names"] = ["input_ids", "attention_mask"]
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
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
        "initializer_range": 0.2,  # 0.02 leaves attention nearly uniform: positions and windows would hardly matter
        "reference_compile": False,
    }
    return ModernBertConfig(**{**sizes, **overrides})


def save_modernbert(
    root: Path,
    minilm_dir: Path,
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
    special = write_tokenizer(minilm_dir, hf)
    torch.manual_seed(seed)
    ModernBertModel(modernbert_config(special, **config)).save_pretrained(hf, safe_serialization=True)
    kwargs = {"max_seq_length": max_seq_length} if max_seq_length is not None else {}
    modules = [Transformer(str(hf), **kwargs), Pooling(HIDDEN, pooling)]
    if normalize:
        modules.append(Normalize())
    source = root / "st"
    SentenceTransformer(modules=modules, device="cpu", prompts=prompts).save(str(source))
    return source


def save_modernbert_cross_encoder(
    root: Path, minilm_dir: Path, *, seed: int, classifier_pooling: str, num_labels: int = 1, **config: Any
) -> Path:
    """A random ModernBertForSequenceClassification in the plain Hugging Face layout (as the hub's rerankers)."""
    import torch
    from transformers import ModernBertForSequenceClassification

    special = write_tokenizer(minilm_dir, root)
    torch.manual_seed(seed)
    settings = {"classifier_pooling": classifier_pooling, "num_labels": num_labels, "classifier_bias": True, **config}
    model = ModernBertForSequenceClassification(modernbert_config(special, **settings))
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
