"""embedrt: sentence embeddings from exported ONNX files with numpy + onnxruntime."""

from embedrt.embedder import Embedder
from embedrt.encoder import Encoder

__all__ = ["Embedder", "Encoder"]
