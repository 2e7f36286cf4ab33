"""embedrt: sentence embeddings and reranking from exported ONNX files with numpy + onnxruntime."""

from embedrt.embedder import Embedder
from embedrt.encoder import Encoder
from embedrt.reranker import Reranker

__all__ = ["Embedder", "Encoder", "Reranker"]
