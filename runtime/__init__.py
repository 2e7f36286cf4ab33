"""embedrt: sentence embeddings from exported ONNX files with numpy + onnxruntime."""

from embedrt.encoder import Encoder

__all__ = ["Encoder"]
