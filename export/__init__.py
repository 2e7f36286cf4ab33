"""Export sentence-transformers models and cross-encoders to ONNX (needs the ``export`` extra and onnxruntime).

The families are in ``embedrt.export.architectures``: BERT, XLM-RoBERTa, RoBERTa, CamemBERT, DistilBERT, MPNet,
ModernBERT.
"""

from embedrt.export.exporter import ParityError, export

__all__ = ["ParityError", "export"]
