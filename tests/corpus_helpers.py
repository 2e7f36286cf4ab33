"""Corpus builders shared by the embed-corpus tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORDS = "the quick brown fox jumps over a lazy dog while embeddings map text to vectors in many languages".split()  # noqa: SIM905


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    """Short sentences and long passages (past the tiny model's 64 tokens), mixed, some non-ASCII."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        length = int(rng.integers(1, 12)) if i % 4 else int(rng.integers(60, 200))
        words = list(rng.choice(WORDS, size=length))
        if i % 7 == 0:
            words.append("café naïve 東京")
        texts.append(" ".join(words))
    return texts


def write_parquet(path: Path, ids: list, texts: list, row_group_size: int | None = None) -> Path:
    """A parquet file with id and text columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ids, "text": texts}), path, row_group_size=row_group_size)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """One JSON object per line (ensure_ascii=True so a lone surrogate survives as an escape)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_output(out: Path) -> tuple[list, np.ndarray]:
    """(ids, vectors) of every part, in part-name order."""
    import pyarrow.parquet as pq

    ids: list = []
    vectors = []
    for part in sorted(out.glob("part-*.parquet")):
        table = pq.read_table(part)
        ids.extend(table.column(0).to_pylist())
        vectors.append(np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(table.num_rows, -1))
    return ids, np.concatenate(vectors) if vectors else np.empty((0, 0), np.float32)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine of two arrays of the same shape."""
    assert a.shape == b.shape, (a.shape, b.shape)
    num = (a * b).sum(axis=1)
    return float((num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


# A job in a subprocess, its keyword arguments as JSON: for kills, concurrent runs and the read-volume measure.
JOB = """
import json, sys
from embedrt.corpus import embed_corpus
result = embed_corpus(**json.loads(sys.argv[1]))
print("RESULT " + json.dumps({"rows_out": result.rows_out, "parts_written": result.parts_written}))
"""


def start_job(env: dict | None = None, **kwargs) -> subprocess.Popen:
    """``embed_corpus(**kwargs)`` in a fresh Python process (stdout and stderr piped)."""
    args = json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()})
    return subprocess.Popen(
        [sys.executable, "-c", JOB, args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` is true; fails if the process ends first or time runs out."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"the job ended before the kill: {proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("the condition for the kill never came")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def finish(proc: subprocess.Popen, timeout: float = 300.0) -> dict:
    """Wait for a job started by ``start_job``; its result, or an AssertionError with its stderr."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.split("RESULT ", 1)[1])


def worker_spec(model_dir: Path, driver_model: Path | None = None, model_sha256: str | None = None):
    """The job spec a driver sends its workers: their model at ``model_dir``, the driver's model identity read from
    ``driver_model`` (default: the same directory) and its ONNX sha256 (default: that identity's)."""
    from embedrt.corpus.identity import ModelIdentity
    from embedrt.corpus.spec import JobSpec
    from embedrt.manifest import Variant

    identity = ModelIdentity.of(driver_model or model_dir, Variant.FP32)
    sha256 = model_sha256 or identity.model_sha256
    fields = ("cpu", "text", "id", (), "int64", (), 32, 32, "fail", "r1", identity.to_dict())
    return JobSpec(str(model_dir), "fp32", sha256, *fields)
