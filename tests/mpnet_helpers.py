"""An MPNet tokenizer built offline: MiniLM's uncased WordPiece vocabulary with MPNet's special tokens.

The real MPNet vocabulary is BERT's uncased one shifted by four: ``<s> <pad> </s> <unk>`` take ids 0-3 (so the pad
id is 1), BERT's ``[PAD]`` ... follow, and ``<mask>`` is last (30526). ``MPNetTokenizerFast`` converts that
vocab.txt and writes the tokenizer files as transformers does today (added tokens ``normalized: true``,
``TemplateProcessing``). The hub files of all-mpnet-base-v2 were written by an older version: special tokens
``normalized: false``, ``RobertaProcessing``, no ``added_tokens_decoder``; ``hub_layout`` rewrites a directory so.
"""

from __future__ import annotations

import json
from pathlib import Path

MPNET_HEAD = ["<s>", "<pad>", "</s>", "<unk>"]


def build_mpnet_tokenizer(minilm_dir: Path, out: Path, model_max_length: int = 512) -> Path:
    """Write an MPNet tokenizer (vocab.txt, tokenizer.json ...) into ``out`` with ``MPNetTokenizerFast``."""
    from transformers import MPNetTokenizerFast

    lines = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()
    build = out.with_name(out.name + "-vocab")
    build.mkdir(parents=True, exist_ok=True)
    (build / "vocab.txt").write_text("\n".join([*MPNET_HEAD, *lines, "<mask>"]) + "\n", encoding="utf-8")
    tokenizer = MPNetTokenizerFast(vocab_file=str(build / "vocab.txt"), model_max_length=model_max_length)
    tokenizer.save_pretrained(str(out))
    return out


def hub_layout(directory: Path) -> Path:
    """Rewrite ``directory``'s tokenizer files the way the hub's all-mpnet-base-v2 holds them."""
    path = directory / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for entry in data["added_tokens"]:
        entry["normalized"] = False
    ids = {e["content"]: e["id"] for e in data["added_tokens"]}
    data["post_processor"] = {
        "type": "RobertaProcessing",
        "sep": ["</s>", ids["</s>"]],
        "cls": ["<s>", ids["<s>"]],
        "trim_offsets": True,
        "add_prefix_space": False,
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("added_tokens_decoder", None)
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory
