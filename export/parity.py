"""Parity figures of embeddings against the PyTorch reference, and the fixed sentence set of the export check."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedrt.manifest import Variant

# The STS benchmark as this repository's CI and sessions see it (../shared beside the checkout).
STS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsbenchmark"
# A fixed, varied set: short and long, punctuation, accents, CJK, numbers, special-token text.
CHECK_SENTENCES = (
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "Two dogs run across a snowy field, chasing a red ball.",
    "The stock market fell 3.5% on Tuesday after the central bank raised rates.",
    "Où est la bibliothèque ? Je cherche un livre d'Émile Zola.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "I ❤️ embeddings 🚀🚀 #nlp @user https://example.com/path?q=1",
    "[CLS] special tokens [SEP] inside [MASK] the text",
    "   leading and trailing spaces   ",
    "",
    "a",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "Sentence embeddings map text to dense vectors for semantic search and clustering. " * 12,
    "How do I reset my password if I no longer have access to my email account?",
    "The quick brown fox jumps over the lazy dog; the dog did not react.",
    "COVID-19 vaccines were developed in record time (less than a year).",
    "Él comió 12 tacos y 3 quesadillas, ¡increíble!",
)


# Minimum agreement with the PyTorch reference, per variant: (min cosine, max abs difference). The export checks
# CHECK_SENTENCES against it and `embedrt verify` the STS benchmark.
TOLERANCE = {
    Variant.FP32: (0.99999, 1e-4),
    Variant.FP16: (0.999, 1e-2),
    Variant.INT8: (0.98, 0.1),
    Variant.BF16: (0.9999, 1e-2),  # the fp32 file run in bf16 (embedrt.bf16); its load-time gate is the same cosine
}
# Most STS Spearman (x100) a variant may lose or gain against the reference in `embedrt verify` (bf16: 0.001).
SPEARMAN_TOLERANCE = {Variant.BF16: 0.1}


@dataclass(frozen=True)
class ParityFigures:
    """How close candidate embeddings are to the reference, row by row."""

    n: int
    min_cosine: float
    p1_cosine: float
    mean_cosine: float
    max_abs_diff: float

    def within(self, variant: Variant) -> bool:
        """Whether these figures meet ``variant``'s tolerance."""
        min_cos, max_abs = TOLERANCE[variant]
        return self.min_cosine >= min_cos and self.max_abs_diff <= max_abs

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready, rounded for reading."""
        return {k: (round(v, 7) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b`` (float64)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.maximum(np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1), 1e-12)
    return np.einsum("ij,ij->i", a64, b64) / norms


def compare(reference: np.ndarray, candidate: np.ndarray) -> ParityFigures:
    """Parity figures of ``candidate`` against ``reference`` (same shape)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape}, candidate {candidate.shape}")
    cos = row_cosines(reference, candidate)
    return ParityFigures(
        n=len(cos),
        min_cosine=float(cos.min()),
        p1_cosine=float(np.percentile(cos, 1)),
        mean_cosine=float(cos.mean()),
        max_abs_diff=float(np.abs(reference.astype(np.float64) - candidate).max()),
    )


@dataclass(frozen=True)
class ScoreFigures:
    """How close candidate scores (a cross-encoder's logits) are to the reference's."""

    n: int
    max_abs_diff: float
    spearman: float

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready, rounded for reading."""
        return {k: (round(v, 7) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def compare_scores(reference: np.ndarray, candidate: np.ndarray) -> ScoreFigures:
    """Score figures of ``candidate`` against ``reference`` (same shape), over all values."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape}, candidate {candidate.shape}")
    a, b = reference.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
    spearman = _spearman(a, b) if len(a) > 1 and a.std() > 0 and b.std() > 0 else 1.0
    return ScoreFigures(len(reference), float(np.abs(a - b).max(initial=0.0)), spearman)


@dataclass(frozen=True)
class StsPairs:
    """The STS benchmark: sentence pairs with gold scores (0-5)."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    scores: np.ndarray

    @classmethod
    def from_file(cls, path: Path) -> StsPairs:
        """Read an STS benchmark csv: tab-separated, unquoted; column 5 is the score, 6 and 7 the sentences."""
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (the STS benchmark, e.g. sts-test.csv)")
        with path.open(encoding="utf-8", newline="") as handle:
            rows = [r for r in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
        if not rows:
            raise ValueError(f"{path}: no tab-separated rows with a score and two sentences")
        return cls(tuple(r[5] for r in rows), tuple(r[6] for r in rows), np.array([float(r[4]) for r in rows]))

    @property
    def sentences(self) -> list[str]:
        """All sentences, first of each pair then second, duplicates kept."""
        return [*self.first, *self.second]

    def spearman(self, embeddings: np.ndarray) -> float:
        """Spearman (x100) of pair cosine vs gold, for embeddings laid out as in ``sentences``."""
        n = len(self.first)
        cos = row_cosines(embeddings[:n], embeddings[n:])
        return 100.0 * _spearman(cos, self.scores)


def _rank(x: np.ndarray) -> np.ndarray:
    # Average ranks for ties, as scipy.stats.rankdata does.
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    boundaries = np.flatnonzero(np.diff(sorted_x)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e - 1) / 2.0 + 1
    return ranks


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_rank(a), _rank(b))[0, 1])
