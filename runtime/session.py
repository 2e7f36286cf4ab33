"""onnxruntime sessions: provider choice, thread and memory options, clear errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from embedrt.config import Choice

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class UnsupportedOnDevice(RuntimeError):
    """The onnxruntime build has no kernel for some node of a valid file on the chosen device.

    Kept apart from ValueError (a broken file): only this one may be reported as "cannot run here, skipped".
    """


class Device(Choice):
    """Where the model runs: ``auto`` takes CUDA when onnxruntime has it, else the CPU."""

    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"


def import_onnxruntime() -> ModuleType:
    """Import onnxruntime, or say which extra installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "embedrt needs onnxruntime to run a model: pip install 'embedrt[cpu]' "
            "(or 'embedrt[gpu]' for CUDA; install only one of them)"
        ) from None
    return onnxruntime


def resolve_device(device: Device) -> Device:
    """Turn ``auto`` into cpu or cuda; refuse cuda when this onnxruntime build cannot use it."""
    available = import_onnxruntime().get_available_providers()
    if device is Device.AUTO:
        return Device("cuda" if CUDA_PROVIDER in available else "cpu")
    if device is Device.CUDA and CUDA_PROVIDER not in available:
        raise RuntimeError(
            f"device='cuda' but onnxruntime offers only {available}; install 'embedrt[gpu]' "
            "(onnxruntime-gpu) with a matching CUDA, or use device='cpu' or 'auto'"
        )
    return device


def session_options(threads: int | None, config: Mapping[str, str] | None = None) -> Any:
    """Options for a session shared by many threads with varying input shapes, plus config entries."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Shapes change with every batch, so a memory pattern (planned per input shape) is never reused and
    # only piles up. The CPU arena stays on: measured over 1,500 int8 calls of 1-8 texts of 1-250 words,
    # RSS held at 211-213 MB with it, and wandered 224-296 MB without it (malloc fragmentation) or
    # crept 187-263 MB with per-run arena shrinkage (benchmarks/memory_growth.py).
    options.enable_mem_pattern = False
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return options


def create_session(path: Path, device: Device, threads: int | None, config: Mapping[str, str] | None = None) -> Any:
    """An InferenceSession on ``device`` (cpu or cuda) for a verified model file, with session config entries."""
    ort = import_onnxruntime()
    providers = [CUDA_PROVIDER, CPU_PROVIDER] if device is Device.CUDA else [CPU_PROVIDER]
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(threads, config), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types, one per status code
        if type(exc).__name__ == "NotImplemented":  # NOT_IMPLEMENTED: no kernel for a node on this device
            raise UnsupportedOnDevice(
                f"this onnxruntime ({ort.__version__}) cannot run {path} on {device.value}: {exc}"
            ) from exc
        raise ValueError(f"onnxruntime cannot load {path}: {exc}") from exc
    if device is Device.CUDA and session.get_providers()[0] != CUDA_PROVIDER:
        raise RuntimeError(
            f"onnxruntime did not start the CUDA provider for {path} (got {session.get_providers()}); "
            "check the CUDA and cuDNN libraries that onnxruntime-gpu needs"
        )
    return session
