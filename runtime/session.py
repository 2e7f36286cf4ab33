"""onnxruntime sessions: provider choice, thread and memory options, clear errors."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class Device(str, Enum):
    """Where the model runs: ``auto`` takes CUDA when onnxruntime has it, else the CPU."""

    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"

    @classmethod
    def parse(cls, value: str | Device) -> Device:
        """Parse a user-given device with an error listing the valid ones."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown device {value!r}; expected one of cpu, cuda, auto") from None


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
        return Device.CUDA if CUDA in available else Device.CPU
    if device is Device.CUDA and CUDA not in available:
        raise RuntimeError(
            f"device='cuda' but onnxruntime offers only {available}; install 'embedrt[gpu]' "
            "(onnxruntime-gpu) with a matching CUDA, or use device='cpu' or 'auto'"
        )
    return device


def session_options(threads: int | None) -> Any:
    """Options for a session shared by many threads with varying input shapes."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Shapes change with every batch: memory patterns never get reused, and the CPU arena keeps every
    # size it ever saw. Without both, resident memory stays flat over thousands of varying calls.
    options.enable_mem_pattern = False
    options.enable_cpu_mem_arena = False
    return options


def create_session(model: bytes, device: Device, threads: int | None, path: Path) -> Any:
    """An InferenceSession on ``device`` (cpu or cuda) from verified model bytes."""
    ort = import_onnxruntime()
    providers = [CUDA, CPU] if device is Device.CUDA else [CPU]
    try:
        session = ort.InferenceSession(model, sess_options=session_options(threads), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ValueError(f"onnxruntime cannot load {path}: {exc}") from exc
    if device is Device.CUDA and session.get_providers()[0] != CUDA:
        raise RuntimeError(
            f"onnxruntime did not start the CUDA provider for {path} (got {session.get_providers()}); "
            "check the CUDA and cuDNN libraries that onnxruntime-gpu needs"
        )
    return session
