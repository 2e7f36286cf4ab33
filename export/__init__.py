"""Export sentence-transformers BERT and XLM-RoBERTa models to ONNX (needs the ``export`` extra and onnxruntime)."""

from embedrt.export.exporter import ParityError, export

__all__ = ["ParityError", "export"]
