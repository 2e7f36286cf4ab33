"""``embedrt verify``: every variant of an export against the PyTorch reference on the STS benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedrt.bf16_gate import Bf16GateFailed
from embedrt.export.parity import SPEARMAN_TOLERANCE, STS_DIR, TOLERANCE, ParityFigures, StsPairs, compare
from embedrt.manifest import MANIFEST_NAME, Manifest, ModelKind, Variant
from embedrt.session import UnsupportedOnDevice

DEFAULT_STS = STS_DIR / "sts-test.csv"


@dataclass(frozen=True)
class VariantReport:
    """Parity and quality of one variant."""

    variant: str
    figures: ParityFigures | None
    spearman: float | None
    error: str = ""
    skipped: bool = False  # this onnxruntime cannot run the file on the CPU: not a fault of the file
    recipe: str = ""
    size_bytes: int = 0
    int8_kernel: str = ""  # int8: what the load-time kernel probe found and the path taken
    bf16_engine: str = ""  # bf16: the engine the load-time probe chose
    spearman_delta: float | None = None  # Spearman minus the reference's

    @property
    def ok(self) -> bool:
        """Skipped, or ran within the variant's tolerances (a broken file or a miss is not ok)."""
        if self.skipped:
            return True
        variant = Variant(self.variant)
        limit = SPEARMAN_TOLERANCE.get(variant)
        spearman_ok = limit is None or (self.spearman_delta is not None and abs(self.spearman_delta) <= limit)
        return self.figures is not None and self.figures.within(variant) and spearman_ok


@dataclass(frozen=True)
class VerifyReport:
    """The reference's STS Spearman and one row per variant."""

    sts_file: Path
    n_sentences: int
    reference_spearman: float
    rows: tuple[VariantReport, ...]

    @property
    def ok(self) -> bool:
        """Every variant ran within its tolerance or was skipped."""
        return all(row.ok for row in self.rows)

    def to_text(self) -> str:
        """A fixed-width table."""
        lines = [
            f"STS benchmark {self.sts_file} ({self.n_sentences} sentences); "
            f"PyTorch reference Spearman {self.reference_spearman:.2f}",
            f"{'variant':<8}{'min cos':>10}{'p1 cos':>10}{'mean cos':>10}"
            f"{'max |diff|':>12}{'Spearman':>10}{'delta':>8}",
        ]
        for row in self.rows:
            if row.figures is None or row.spearman is None:
                lines.append(f"{row.variant:<8}  {row.error}")
                continue
            f = row.figures
            lines.append(
                f"{row.variant:<8}{f.min_cosine:>10.6f}{f.p1_cosine:>10.6f}{f.mean_cosine:>10.6f}"
                f"{f.max_abs_diff:>12.2e}{row.spearman:>10.2f}{row.spearman - self.reference_spearman:>+8.2f}"
                + ("" if row.ok else f"  OUT OF TOLERANCE ({_tolerance(Variant(row.variant))})")
            )
        lines.append("recipes (from manifest.json):")
        lines += [f"  {row.variant} ({row.size_bytes / 1e6:.1f} MB): {row.recipe}" for row in self.rows]
        lines += [f"int8 on this CPU: {row.int8_kernel}" for row in self.rows if row.int8_kernel]
        lines += [f"bf16 on this CPU: {row.bf16_engine}" for row in self.rows if row.bf16_engine]
        return "\n".join(lines)


def _tolerance(variant: Variant) -> str:
    min_cos, max_abs = TOLERANCE[variant]
    spearman = SPEARMAN_TOLERANCE.get(variant)
    return f"min cos >= {min_cos}, max |diff| <= {max_abs}" + (f", |delta| <= {spearman}" if spearman else "")


def _recorded_source(manifest: Manifest, root: Path) -> Path:
    """The source model the manifest names: its directory, or its hub id at the exported commit."""
    from embedrt.export.source import resolve_source

    if "hub_id" in manifest.source:
        return resolve_source(manifest.source["hub_id"], manifest.source.get("commit")).path
    if "path" not in manifest.source:
        raise ValueError(f"{root / MANIFEST_NAME} names no source model; pass --source DIR")
    return Path(manifest.source["path"])


def verify(model_dir: str | Path, sts_file: str | Path | None = None, source: str | Path | None = None) -> VerifyReport:
    """Embed the STS sentences with every exported variant, bf16 (from fp32's file) and sentence-transformers."""
    from embedrt.export.embedding import EmbeddingModel

    root = Path(model_dir)
    manifest = Manifest.from_file(root / MANIFEST_NAME)
    manifest.require_kind(ModelKind.EMBEDDING, root)  # a cross-encoder's scores are checked at export only
    pairs = StsPairs.from_file(Path(sts_file) if sts_file is not None else DEFAULT_STS)
    sentences = pairs.sentences
    reference_dir = Path(source) if source is not None else _recorded_source(manifest, root)
    if not reference_dir.is_dir():
        raise FileNotFoundError(
            f"the source model {reference_dir} recorded in {root / MANIFEST_NAME} is gone; pass --source DIR"
        )
    # As the export loaded it: a ModernBERT config in transformers 5.x's spelling is translated the same way.
    model = EmbeddingModel.read(reference_dir).sentence_transformer()
    reference = np.asarray(model.encode(sentences, batch_size=32))
    reference_spearman = pairs.spearman(reference)
    variants = [*manifest.variants, *([Variant.BF16] if Variant.FP32 in manifest.variants else [])]
    rows = [_variant_row(root, variant, manifest, pairs, reference, reference_spearman) for variant in variants]
    return VerifyReport(Path(sts_file or DEFAULT_STS), len(sentences), reference_spearman, tuple(rows))


def _variant_row(
    root: Path, variant: Variant, manifest: Manifest, pairs: StsPairs, reference: np.ndarray, reference_spearman: float
) -> VariantReport:
    """One variant's figures, or why it was skipped (cannot run here) or failed (a broken file, a missed gate)."""
    from embedrt import Encoder

    info = manifest.variants[variant.file_variant]
    about: dict[str, Any] = {"recipe": info.recipe, "size_bytes": info.size_bytes}
    if variant is Variant.BF16:
        about["recipe"] = f"the {info.file} file run in bf16 on this machine"
    try:
        encoder = Encoder.load(root, variant=variant, device="cpu")
        embeddings = encoder.encode(pairs.sentences, batch_size=32)
    except UnsupportedOnDevice as exc:  # an int8 kernel that saturates with no exact path, no bf16 engine here
        return VariantReport(variant.value, None, None, f"skipped: {exc}", skipped=True, **about)
    except (ValueError, FileNotFoundError, Bf16GateFailed) as exc:  # a missing or tampered file, a missed gate
        return VariantReport(variant.value, None, None, f"FAILED: {exc}", **about)
    if encoder.int8_check is not None:
        about["int8_kernel"] = encoder.int8_check.describe()
    if encoder.bf16_check is not None:
        about["bf16_engine"] = encoder.bf16_check.describe()
    spearman = pairs.spearman(embeddings)
    figures = compare(reference, embeddings)
    return VariantReport(variant.value, figures, spearman, spearman_delta=spearman - reference_spearman, **about)
