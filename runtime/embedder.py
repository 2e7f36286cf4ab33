"""A picklable embedding function for data engines (Ray, Dask, Spark): texts in, float32 vectors out."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedrt.config import positive_int

if TYPE_CHECKING:
    from embedrt.encoder import Encoder


class Embedder:
    """``Embedder(model_dir)(texts) -> (n, dim) float32``, cheap to pickle and to ship to workers.

    Only the arguments travel: the onnxruntime session is created on the first call in each process and reused
    for every later call there (a forked child builds its own, since a session must not cross a fork). Threads
    of one process share one session.
    """

    def __init__(
        self,
        model_dir: str | Path,
        variant: str = "fp32",
        threads: int | None = 1,
        workers: int = 1,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        """Describe the model; nothing is loaded until the first call.

        Args:
            model_dir: a directory written by ``embedrt export``; on a cluster, a path every worker can read.
            variant: ``fp32``, ``fp16`` or ``int8``.
            threads: onnxruntime intra-op threads per session (None: one per physical core). One thread per
                worker process is the fastest bulk setting when an engine runs one process per core.
            workers: batches of one call run at once on threads sharing the session (see ``Encoder.load``).
            batch_size: most texts per onnxruntime call.
            device: ``cpu``, ``cuda`` or ``auto``.

        """
        positive_int("batch_size", batch_size)
        self.model_dir = str(model_dir)
        self.variant = variant
        self.threads = threads
        self.workers = workers
        self.batch_size = batch_size
        self.device = device
        self._encoder: Encoder | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the arguments only; the session is rebuilt where the object lands."""
        state = self.__dict__.copy()
        state["_encoder"] = state["_pid"] = state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore the arguments with no session yet."""
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def encoder(self) -> Encoder:
        """The Encoder of the current process, loaded on first use."""
        encoder = self._encoder
        if encoder is not None and self._pid == os.getpid():
            return encoder
        with self._lock:
            if self._encoder is None or self._pid != os.getpid():
                from embedrt.encoder import Encoder

                self._encoder = Encoder.load(
                    self.model_dir, variant=self.variant, device=self.device, threads=self.threads, workers=self.workers
                )
                self._pid = os.getpid()
            return self._encoder

    @property
    def dimension(self) -> int:
        """Width of the vectors (loads the model in this process if needed)."""
        return self.encoder.dimension

    def info(self) -> dict[str, Any]:
        """``Encoder.info()`` of this process's Encoder (loads the model here if needed)."""
        return self.encoder.info()

    def __call__(self, texts: Sequence[str] | Any) -> np.ndarray:
        """Embed ``texts`` (a list/tuple of str, or a numpy array, pandas Series or pyarrow array of str).

        Returns:
            float32 array of shape ``(len(texts), dim)`` in input order (the model's normalization applied).

        Raises:
            TypeError: a text is not a str (the message names its index).
            ValueError: a text holds a lone surrogate (the message names its index and position).

        """
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"texts must be a sequence of str, got {type(texts).__name__}; wrap one text in a list")
        if not isinstance(texts, (list, tuple)):
            # numpy arrays and pandas Series have tolist(), pyarrow arrays to_pylist(): engines hand over columns.
            if hasattr(texts, "to_pylist"):
                texts = texts.to_pylist()
            elif hasattr(texts, "tolist"):
                texts = texts.tolist()
            else:
                texts = list(texts)
        return self.encoder.encode(texts, batch_size=self.batch_size)

    def __repr__(self) -> str:
        """Show the arguments, which are all that an Embedder carries."""
        return (
            f"Embedder({self.model_dir!r}, variant={self.variant!r}, threads={self.threads!r}, "
            f"workers={self.workers!r}, batch_size={self.batch_size!r}, device={self.device!r})"
        )
