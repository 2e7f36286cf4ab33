"""Opening one variant of an export: manifest, kind, file sizes and hashes, the int8 kernel probe, the session.

Shared by ``Encoder.load`` and ``Reranker.load`` so that both refuse a tampered file or an unsafe int8 kernel the
same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from embedrt.bf16 import Bf16Backend, Bf16Check, check_bf16
from embedrt.int8_kernel import Int8Check, check_file, check_int8_kernel
from embedrt.manifest import (
    MANIFEST_NAME,
    Manifest,
    ModelKind,
    Variant,
    VariantInfo,
    check_digest,
    check_listed_file,
    checked_path,
)
from embedrt.session import Device, create_session, resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class OpenedVariant(Generic[T]):
    """A verified session of one variant, what was decided on the way, and the caller's configs."""

    configs: T
    manifest: Manifest
    variant: Variant
    device: Device
    path: Path  # the verified ONNX file the session runs
    session: Any
    int8_check: Int8Check | None
    bf16_check: Bf16Check | None = None


def read_manifest(root: Path, kind: ModelKind) -> Manifest:
    """manifest.json of an export of ``kind``, or an error naming what to do instead."""
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{manifest_path} not found: {root} is not an embedrt export; create one with `embedrt export`"
        )
    manifest = Manifest.from_file(manifest_path)
    manifest.require_kind(kind, root)
    return manifest


def open_variant(
    root: Path,
    kind: ModelKind,
    variant: str | Variant | None,
    device: str | Device,
    threads: int | None,
    read_configs: Callable[[Manifest], T],
) -> OpenedVariant[T]:
    """Open ``variant`` (None: fp16 on CUDA, fp32 on the CPU) of the export in ``root``.

    bf16 runs the fp32 file with the engine the bf16 probe found here (embedrt.bf16), on the CPU only.

    ``read_configs`` runs after the manifest is read and before any file is hashed or a session is built, so that
    config errors surface before that cost; what it returns comes back as ``configs``.
    """
    resolved = resolve_device(Device.parse(device))
    chosen = Variant.parse(variant) if variant is not None else default_variant(resolved)
    if chosen is Variant.BF16 and resolved is not Device.CPU:
        raise ValueError(f"variant 'bf16' runs on the CPU (device='cpu'), not {resolved.value}; on CUDA use fp16")
    manifest = read_manifest(root, kind)
    info = manifest.info(chosen, root)
    configs = read_configs(manifest)
    for name, digest in manifest.files.items():  # Dense weights, read after this by the caller
        check_listed_file(root / name, digest)
    path = checked_path(root, info)
    int8 = check_int8_kernel() if chosen is Variant.INT8 else None  # UnsafeInt8Kernel: refused, never degraded
    if int8:
        check_file(int8, info.recipe, path)
    bf16 = check_bf16() if chosen is Variant.BF16 else None  # NoBf16Kernel where no engine runs bf16 here
    config = int8.session_config if int8 else bf16.session_config if bf16 else {}
    build = _openvino_builder(threads) if bf16 and bf16.backend is Bf16Backend.OPENVINO else None
    session = _verified_session(path, info, resolved, threads, config, build)
    return OpenedVariant(configs, manifest, chosen, resolved, path, session, int8, bf16)


def _openvino_builder(threads: int | None) -> Callable[[Path], Any]:
    """Builds an OpenVINO bf16 session (imported only here: the core install has no openvino)."""
    from embedrt.openvino_session import OpenVinoSession

    return lambda path: OpenVinoSession(path, threads, "bf16")


def _verified_session(
    path: Path,
    info: VariantInfo,
    device: Device,
    threads: int | None,
    config: dict[str, str],
    build: Callable[[Path], Any] | None = None,
) -> Any:
    """A session of ``path`` (onnxruntime's, or what ``build`` makes), returned once its sha256 matches the manifest.

    The hash (0.07 s for the 90 MB fp32 file) runs on a second thread while onnxruntime builds the session
    (0.1 s): fp32's cold start fell by about 0.06 s. A session of a file that fails the check is never used.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="embedrt-sha256") as hasher:
        digest = hasher.submit(check_digest, path, info)
        try:
            session = build(path) if build else create_session(path, device, threads, config)
        except Exception:
            digest.result()  # a corrupted file is reported as a hash mismatch, never as "cannot run here"
            raise
        digest.result()
    return session


def default_variant(device: Device) -> Variant:
    """The variant ``load`` picks when none is given: fp16 on CUDA, fp32 on the CPU."""
    return Variant.FP16 if device is Device.CUDA else Variant.FP32
