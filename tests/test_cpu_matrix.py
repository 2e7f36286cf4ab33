"""int8 on CPUs this machine is not, under QEMU user mode, prepared by scripts/cpu_matrix.py (the tiny model).

- Haswell (AVX2, no VNNI): without the fix the probe finds the saturating kernel, so the probe can fail; with
  the fix (what ``Encoder.load`` picks there) the vectors equal the native ones.
- cortex-a72 (ARMv8.0): ``embedrt[cpu]`` installs from wheels only, imports, and its int8 kernel is exact.
- bf16: Neoverse V1 (BF16) runs it with onnxruntime's own bf16 GEMM; Neoverse N1 (no BF16) refuses it.

A machine that cannot run QEMU skips with the reason; CI sets EMBEDRT_REQUIRE_EMULATION=1, which makes that
a failure instead, so the check is never silently skipped there.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedrt import Encoder

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "cpu_matrix.py"
TEXTS = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "A man is playing a guitar on a stage in front of a large crowd of people.",
    "word " * 80,  # past the tiny model's 64 tokens
    "Ünïcödé, CJK 東京, emoji 🚀 and [SEP] inside.",
] * 4
pytestmark = pytest.mark.slow


def _matrix():
    spec = importlib.util.spec_from_file_location("cpu_matrix", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cpu_matrix"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _unavailable(reason: str):
    if os.environ.get("EMBEDRT_REQUIRE_EMULATION") == "1":
        pytest.fail(f"EMBEDRT_REQUIRE_EMULATION=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def matrix():
    return _matrix()


@pytest.fixture(scope="module")
def tools(matrix):
    if platform.machine() != "x86_64":
        _unavailable(f"the emulated matrix runs on x86-64 hosts; this is {platform.machine()}")
    version = importlib.metadata.version("onnxruntime")
    try:
        toolchain = matrix.prepare(matrix.DEFAULT_CACHE, [version], [])
    except (OSError, subprocess.CalledProcessError) as exc:
        _unavailable(f"cannot prepare QEMU and the arm64 Python (apt-get, dpkg-deb, pip): {exc}")
    probe = subprocess.run([str(toolchain.qemu_bin / "qemu-x86_64"), "/bin/true"], capture_output=True)
    if probe.returncode != 0:
        _unavailable(f"QEMU user mode cannot run programs here: {probe.stderr.decode(errors='replace')[-300:]}")
    return toolchain


def _run(
    matrix, tools, cpu: str, path: str, model: Path, tmp_path: Path, variant: str = "int8", error: bool = False
) -> tuple[dict, np.ndarray | None]:
    texts, out = tmp_path / "texts.json", tmp_path / f"{cpu}-{path}-{variant}.npy"
    texts.write_text(json.dumps(TEXTS), encoding="utf-8")
    version = importlib.metadata.version("onnxruntime") if matrix.CPUS[cpu].arch == "aarch64" else None
    report = matrix.run_worker(tools, matrix.CPUS[cpu], version, [str(model), variant, str(texts), str(out), path])
    assert ("error" in report) is error, report
    return report, None if error else np.load(out)


@pytest.fixture(scope="module")
def native(tiny_export):
    return Encoder.load(tiny_export, variant="int8", threads=1).encode(TEXTS, batch_size=16)


def test_haswell_probe_finds_the_saturating_kernel_and_the_fix_is_exact(matrix, tools, tiny_export, native, tmp_path):
    report, unfixed = _run(matrix, tools, "haswell", "default", tiny_export, tmp_path)
    assert report["machine"] == "x86_64"
    assert report["probe"] == {"default": False, "u8u8": True}  # the probe fails where the kernel clips
    assert np.abs(unfixed - native).max() > 1e-3  # and the unfixed vectors really differ
    report, fixed = _run(matrix, tools, "haswell", "auto", tiny_export, tmp_path)
    assert report["int8_kernel"]["kernel"] == "saturating" and report["int8_kernel"]["path"] == "u8u8"
    np.testing.assert_allclose(fixed, native, atol=1e-6)


def test_aarch64_installs_from_wheels_only_and_its_int8_kernel_is_exact(matrix, tools, tiny_export, native, tmp_path):
    report, vectors = _run(matrix, tools, "cortex-a72", "auto", tiny_export, tmp_path)
    assert report["machine"] == "aarch64"
    assert report["probe"]["default"] is True and report["int8_kernel"]["path"] == "default"
    # Same integers, other float code for LayerNorm, GELU and softmax: equal to float rounding.
    np.testing.assert_allclose(vectors, native, atol=1e-4)


def test_bf16_runs_on_neoverse_v1_with_onnxruntime_and_is_refused_on_neoverse_n1(matrix, tools, tiny_export, tmp_path):
    fp32 = Encoder.load(tiny_export, variant="fp32", threads=1).encode(TEXTS, batch_size=16)
    report, vectors = _run(matrix, tools, "neoverse-v1", "auto", tiny_export, tmp_path, "bf16")
    assert report["machine"] == "aarch64" and report["bf16"]["backend"] == "onnxruntime"
    assert report["bf16"]["gate"]["min_cosine"] >= 0.9999
    cos = (vectors * fp32).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cos.min() >= 0.9999 and np.abs(vectors - fp32).max() > 1e-6  # bf16 really ran, within its gate
    report, _ = _run(matrix, tools, "neoverse-n1", "auto", tiny_export, tmp_path, "bf16", error=True)
    assert "NoBf16Kernel" in report["error"] and "onnxruntime: fp32" in report["error"]
