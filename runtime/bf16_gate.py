"""The load-time gate of bf16: its vectors against the fp32 file's, on this machine, before any is returned.

bf16 is checked where it runs, not where the model was exported: the engine and the CPU decide which operations
run in bf16, so a check elsewhere proves nothing here. The gate embeds a fixed set of texts (short and long,
several scripts, numbers, code) with the bf16 session and with onnxruntime's fp32 session of the same verified
file, and refuses bf16 unless every cosine is at least ``GATE_MIN_COSINE`` (int8's gate style; the STS
Spearman check runs in ``embedrt verify``). Measured on all-MiniLM-L6-v2 with OpenVINO 2026.4 on a Xeon with AMX:
min cosine 0.99998 on sts-test sentences and 256-token passages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

GATE_MIN_COSINE = 0.9999

_SENTENCES = (
    "A man is playing a guitar on the stage.",
    "The quick brown fox jumps over the lazy dog.",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates by 0.75 points.",
    "How do I reset my password if I no longer have access to my email?",
    "The patient was given 250 mg of amoxicillin three times a day for 10 days.",
    "def embed(texts: list[str]) -> np.ndarray: return model.encode(texts, batch_size=32)",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le chat dort sur le canapé depuis ce matin.",
    "東京は日本の首都であり、世界最大の都市圏の一つです。",
    "Москва — столица России.",
    "ok",
    "!!! ??? ... ###",
    "Two dogs are running through a field of tall grass while a child watches.",
    "The committee will review all applications submitted before 31 March 2025.",
    "Water boils at 100 degrees Celsius at sea level.",
    "She said she would call back, but she never did.",
)


@dataclass(frozen=True)
class GateFigures:
    """Cosines of the bf16 vectors to the fp32 ones over the gate texts."""

    n: int
    min_cosine: float
    mean_cosine: float

    @property
    def passed(self) -> bool:
        """Every cosine at least GATE_MIN_COSINE."""
        return self.min_cosine >= GATE_MIN_COSINE

    def as_dict(self) -> dict[str, float | int]:
        """For /info and reports."""
        return {"texts": self.n, "min_cosine": self.min_cosine, "mean_cosine": self.mean_cosine}


class Bf16GateFailed(RuntimeError):
    """bf16 vectors strayed from fp32's on this machine: bf16 is refused, never returned degraded."""


def gate_texts() -> tuple[str, ...]:
    """The sentences, then passages of all of them joined (about 250 and 500 word pieces for English models)."""
    passage = " ".join(_SENTENCES)
    return (*_SENTENCES, passage, f"{passage} {passage}")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine in float64; rows of zeros count as cosine 0 (never as a pass)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    dots = (a64 * b64).sum(axis=1)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def run_gate(
    bf16: Callable[[Sequence[str]], np.ndarray], fp32: Callable[[Sequence[str]], np.ndarray], what: str
) -> GateFigures:
    """Embed the gate texts both ways; raise Bf16GateFailed (naming ``what`` and the figures) below the gate."""
    texts = gate_texts()
    cos = cosines(bf16(texts), fp32(texts))
    figures = GateFigures(len(texts), float(cos.min()), float(cos.mean()))
    if not figures.passed:
        worst = int(cos.argmin())
        raise Bf16GateFailed(
            f"bf16 of {what} fails its gate on this machine: min cosine to fp32 {figures.min_cosine:.6f} "
            f"(need >= {GATE_MIN_COSINE}) over {figures.n} gate texts, worst at gate text {worst}. "
            "Use variant='fp32' or 'int8'"
        )
    return figures
