"""Export sentence-transformers BERT models to ONNX (needs the ``export`` extra: torch, transformers, optimum)."""

from embedrt.export.exporter import ParityError, export

__all__ = ["ParityError", "export"]
