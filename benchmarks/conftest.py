"""Fixtures of the micro benchmarks: the exported default model (exported once if missing) and the corpora."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.compare import EMBEDRT_DIR, passages, prepare, sts_sentences


@pytest.fixture(scope="session")
def model_dir() -> Path:
    prepare(["embedrt-fp32"])
    return EMBEDRT_DIR


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    return sts_sentences()


@pytest.fixture(scope="session")
def long_passages(sentences) -> list[str]:
    return passages(sentences)
