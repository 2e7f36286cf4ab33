"""Attention's memory at the configured length, and a warning when the machine does not have it.

The exported graphs run eager attention: each layer materializes ``batch x heads x length x length`` float32 scores
and as many probabilities, and the masks are ``length x length`` too, so memory grows with the square of the
length. At ModernBERT's 8192 tokens one text needs gigabytes where BERT's 512 needed megabytes. The estimate is
checked against MemAvailable when a model loads, so a long-context model on a small machine says so at once
instead of being killed by the OOM killer on its first long text.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

FLOAT_BYTES = 4


class AttentionMemoryWarning(UserWarning):
    """The configured max_seq_length needs more memory for attention than the machine has available.

    A UserWarning, which Python shows by default (a ResourceWarning would be hidden by the default filters).
    """


def attention_peak_bytes(batch: int, length: int, heads: int) -> int:
    """Estimated peak bytes of one eager attention layer over ``batch`` texts of ``length`` tokens.

    Scores and softmax probabilities (``batch x heads x length^2`` float32 each, alive together), the two additive
    masks of ModernBERT (global and sliding window: ``batch x length^2`` float32 each) and the ``length^2``
    int64 distance and boolean window matrices they are built from. Weights and the (small) hidden states are not
    counted: at long lengths these terms dominate.
    """
    square = length * length
    return FLOAT_BYTES * batch * square * (2 * heads + 2) + 9 * square


def available_memory_bytes() -> int | None:
    """Memory the system can give without swapping: /proc/meminfo's MemAvailable, else free pages; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def batch_at(length: int, batch_size: int, max_batch_tokens: int) -> int:
    """Texts per onnxruntime call at ``length`` tokens, as the Encoder batches (``max_batch_tokens`` budget)."""
    return max(1, min(batch_size, max_batch_tokens // length))


def check_attention_memory(
    length: int, heads: int, batch_size: int, max_batch_tokens: int, where: str | Path
) -> str | None:
    """Warn (:class:`AttentionMemoryWarning`) when texts of ``length`` tokens need more than the available memory.

    Returns the warning's text, or None when it fits (or the available memory is unknown). ``where`` names the
    model in the message.
    """
    available = available_memory_bytes()
    if available is None:
        return None
    batch = batch_at(length, batch_size, max_batch_tokens)
    need = attention_peak_bytes(batch, length, heads)
    if need <= available:
        return None
    message = (
        f"{where}: texts of max_seq_length {length} tokens need about {need / 2**30:.1f} GiB for attention alone "
        f"({batch} text(s) per call x {heads} heads x {length}^2 scores and probabilities, float32), and "
        f"{available / 2**30:.1f} GiB is available: a text that long may be killed for memory. Load it with a "
        "lower limit (Encoder.load(..., max_seq_length=N), Reranker.load(..., max_length=N), --max-seq-length on "
        "the command line), or run on a machine with more memory"
    )
    warnings.warn(message, AttentionMemoryWarning, stacklevel=4)
    return message


def warn_for_attention_memory(transformer_dir: Path, length: int, batch_size: int, max_batch_tokens: int) -> str | None:
    """:func:`check_attention_memory` for the model whose config.json is in ``transformer_dir`` (at load time)."""
    from embedrt.config import read_json

    path = transformer_dir / "config.json"
    heads = heads_of(read_json(path)) if path.is_file() else None
    if heads is None:
        return None
    return check_attention_memory(length, heads, batch_size, max_batch_tokens, transformer_dir)


def heads_of(hf_config: dict[str, object]) -> int | None:
    """Attention heads in a config.json (``n_heads`` for DistilBERT), or None."""
    for key in ("num_attention_heads", "n_heads"):
        value = hf_config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
