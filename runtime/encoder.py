"""The public entry point: text in, sentence embeddings out."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedrt import pooling
from embedrt.attention_memory import warn_for_attention_memory
from embedrt.bf16 import Bf16Backend, Bf16Check
from embedrt.bf16_gate import GateFigures, run_gate
from embedrt.config import ModelConfig, ModuleKind, checked_length, positive_int
from embedrt.dense import DenseLayer, load_dense
from embedrt.int8_kernel import Int8Check
from embedrt.loading import open_variant
from embedrt.manifest import ModelKind, Variant
from embedrt.pooling import exclude_prompt, normalize, pool
from embedrt.precision import Precision, quantize
from embedrt.progress import Progress
from embedrt.session import Device, create_session
from embedrt.similarity import SIMILARITY
from embedrt.token_view import TokenView
from embedrt.tokenizers import BPETokenizer, Tokenizer, TruncationSide, UnigramTokenizer, check_texts, load_tokenizer

# Measured at batch_size 32, 2 threads: 128 passages of 256 tokens ran int8 at 101-103 passages/s with a budget
# of 512 or 1,024 tokens and fp32 at 49 / 47, against 69 and 38 with no budget; STS sentences ran within 2%
# either way. 512 keeps int8's peak RSS at 127 MB instead of 152 MB (smaller transient buffers in the arena).
DEFAULT_MAX_BATCH_TOKENS = 512
# bf16 on OpenVINO (AMX, AVX512-BF16) gains from longer matrix products: all-MiniLM-L6-v2, 2 threads, in one run,
# 256-token docs at 55-62/s with 512 tokens per call, 71-74 with 2,048, 72-76 with 8,192; sentences 877-941/s
# against 1,134-1,166 and 1,111-1,126 (int8 in the same run gained nothing: 53-58 docs/s at 512 or 2,048).
OPENVINO_MAX_BATCH_TOKENS = 2048


@dataclass(frozen=True)
class Embedding:
    """What ``Encoder.embed`` returns: the vectors, and what each text cost, from one tokenization."""

    vectors: np.ndarray  # (n, dim) float32, in input order
    tokens: list[int]  # tokens each text was embedded with: [CLS], prompt and [SEP] included, after truncation
    truncated: list[bool]  # whether the text (with its prompt) had more tokens than max_seq_length


class Encoder(TokenView):
    """A sentence-transformers model exported by ``embedrt export``, run with onnxruntime.

    One Encoder may be shared by many threads: onnxruntime sessions are thread-safe and the
    tokenizer's cache only ever adds complete entries.
    """

    def __init__(
        self,
        model_dir: Path,
        config: ModelConfig,
        tokenizer: Tokenizer | UnigramTokenizer | BPETokenizer,
        session: Any,
        variant: Variant,
        device: Device,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        workers: int = 1,
        int8_check: Int8Check | None = None,
        dense: tuple[DenseLayer, ...] = (),
        bf16_check: Bf16Check | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.config = config
        self.tokenizer = tokenizer
        self.variant = variant
        self.device = device
        self._session = session
        self._input_names = {i.name for i in session.get_inputs()}
        self._output_name = session.get_outputs()[0].name
        self.max_batch_tokens = positive_int("max_batch_tokens", max_batch_tokens)
        self.workers = positive_int("workers", workers)
        self.int8_check = int8_check
        """For int8: what the load-time kernel probe found and the exact path taken (None for other variants)."""
        self.bf16_check = bf16_check
        """For bf16: the engine the load-time probe chose (None for other variants)."""
        self.bf16_gate: GateFigures | None = None
        """For bf16 from ``load``: its gate figures against fp32 on this machine (embedrt.bf16_gate)."""
        self._dense = dense

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        variant: str | Variant | None = None,
        device: str | Device = "cpu",
        threads: int | None = None,
        max_batch_tokens: int | None = None,
        workers: int = 1,
        max_seq_length: int | None = None,
    ) -> Encoder:
        """Load an export directory.

        Args:
            model_dir: a directory written by ``embedrt export`` (it holds manifest.json).
            variant: ``fp32``, ``fp16``, ``int8`` or ``bf16`` (the fp32 file run in bf16 by the engine that the
                load-time probe finds: onnxruntime on ARM64 CPUs with BF16, OpenVINO on x86 CPUs with
                AVX512-BF16 or AMX; ``NoBf16Kernel`` where neither runs it); None picks fp16 on CUDA and fp32
                on the CPU.
            device: ``cpu``, ``cuda`` (an error when onnxruntime cannot use CUDA) or ``auto``.
            threads: intra-op threads of the session; None lets onnxruntime use one per physical core.
            max_batch_tokens: cap on padded tokens per onnxruntime call; a batch holds at most
                ``batch_size`` texts and, for long texts, fewer, since attention cost grows with length squared.
                None: 512, or 2,048 for bf16 on OpenVINO (which gains from longer products).
            workers: batches run at once, each on its own thread sharing the session. For bulk throughput
                on the CPU, ``threads=1, workers=<cores>`` beats one batch at a time on all cores, but a single
                text then runs on one core (see the README's Performance section).
            max_seq_length: token limit instead of the model's own (as setting ``max_seq_length`` on a
                SentenceTransformer): lower it to bound the time and memory of long texts (attention memory grows
                with its square); at most what the model's positions can place.

        """
        root = Path(model_dir)
        opened = open_variant(root, ModelKind.EMBEDDING, variant, device, threads, lambda _: ModelConfig.from_dir(root))
        config = opened.configs
        if max_seq_length is not None:
            length = checked_length(max_seq_length, root / config.transformer_dir, "max_seq_length")
            config = replace(config, transformer=replace(config.transformer, max_seq_length=length))
        if max_batch_tokens is None:
            openvino = opened.bf16_check is not None and opened.bf16_check.backend is Bf16Backend.OPENVINO
            max_batch_tokens = OPENVINO_MAX_BATCH_TOKENS if openvino else DEFAULT_MAX_BATCH_TOKENS
        warn_for_attention_memory(root / config.transformer_dir, config.max_seq_length, 32, max_batch_tokens)
        encoder = cls.from_session(
            root,
            opened.session,
            opened.variant,
            opened.device,
            max_batch_tokens,
            workers,
            config=config,
            int8_check=opened.int8_check,
            bf16_check=opened.bf16_check,
        )
        if opened.bf16_check:  # Bf16GateFailed: refused, never degraded
            encoder.bf16_gate = encoder._gate_bf16(opened.path, threads)
        return encoder

    @classmethod
    def from_session(
        cls,
        model_dir: str | Path,
        session: Any,
        variant: str | Variant,
        device: str | Device = "cpu",
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        workers: int = 1,
        *,
        config: ModelConfig | None = None,
        int8_check: Int8Check | None = None,
        bf16_check: Bf16Check | None = None,
    ) -> Encoder:
        """An Encoder around a session built by the caller, with the tokenizer and configs of ``model_dir``.

        The export uses it to check a file before manifest.json lists it; ``load`` is the way to run an export.
        ``int8_check`` is the kernel probe's finding that the caller built an int8 session with.
        """
        root = Path(model_dir)
        config = config if config is not None else ModelConfig.from_dir(root)
        tokenizer = load_tokenizer(root / config.transformer_dir, do_lower_case=config.transformer.do_lower_case)
        dense = load_dense(root, config.modules.paths_of(ModuleKind.DENSE), config.dense)
        return cls(
            root,
            config,
            tokenizer,
            session,
            Variant.parse(variant),
            Device.parse(device),
            max_batch_tokens,
            workers,
            int8_check,
            dense,
            bf16_check,
        )

    @property
    def dimension(self) -> int:
        """Width of the embeddings (before ``truncate_dim``)."""
        return self.config.dimension

    @property
    def max_seq_length(self) -> int:
        """Longest token sequence, [CLS] and [SEP] included; longer texts are truncated."""
        return self.config.max_seq_length

    @property
    def providers(self) -> list[str]:
        """The execution providers the onnxruntime session really got, in priority order."""
        return list(self._session.get_providers())

    def info(self) -> dict[str, Any]:
        """What runs: variant, device, providers and, for int8, the kernel probe's finding and the path taken.

        ``int8_kernel`` is ``{"kernel": "exact" | "saturating", "path": "default" | "u8u8", "onnxruntime": ...}``
        (see ``embedrt.int8_kernel``): vectors from the two paths agree to float rounding, not bit for bit.
        """
        return {
            "variant": self.variant.value,
            "device": self.device.value,
            "providers": self.providers,
            "int8_kernel": self.int8_check.as_dict() if self.int8_check else None,
            "bf16": self._bf16_info(),
        }

    def _bf16_info(self) -> dict[str, Any] | None:
        if self.bf16_check is None:
            return None
        gate = {"gate": self.bf16_gate.as_dict()} if self.bf16_gate else {}
        return {**self.bf16_check.as_dict(), **gate}

    def _gate_bf16(self, path: Path, threads: int | None) -> GateFigures:
        """bf16's load-time gate: the gate texts against onnxruntime's fp32 session of the same verified file."""
        fp32 = copy.copy(self)
        fp32._session = create_session(path, Device.CPU, threads)
        return run_gate(self.encode, fp32.encode, str(self.model_dir))

    @property
    def _token_limit(self) -> int:
        return self.max_seq_length

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids and attention mask (int64), padded to the longest text, truncated to max_seq_length."""
        input_ids, attention_mask = self.tokenizer(texts, self.max_seq_length)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool | None = None,
        show_progress_bar: bool = False,
        precision: str | Precision = "float32",
        truncate_dim: int | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> np.ndarray:
        """Embed one text (1-D result) or a sequence of texts ((n, dim) result, rows in input order).

        Args:
            sentences: a string or a list/tuple of strings.
            batch_size: most texts per onnxruntime call; texts are grouped by token length first, and
                long texts go in smaller batches (``max_batch_tokens`` of ``Encoder.load``).
            normalize_embeddings: None follows the model (a Normalize module gives unit vectors);
                True always L2-normalizes; False returns the pooled vectors unnormalized.
            show_progress_bar: print progress on stderr.
            precision: float32, int8, uint8, binary or ubinary (sentence-transformers' quantization).
            truncate_dim: keep the first dimensions only (Matryoshka models); like sentence-transformers,
                after the model's Normalize module and before ``normalize_embeddings=True``.
            prompt_name: key of the model's ``prompts``; ignored when ``prompt`` is given.
            prompt: text put before every sentence.

        """
        single = isinstance(sentences, str)
        texts = list(check_texts([sentences] if single else sentences))  # type: ignore[list-item]
        positive_int("batch_size", batch_size)
        out_precision = Precision.parse(precision)
        dim = self._check_truncate_dim(truncate_dim)
        prompt_text = self.resolve_prompt(prompt_name, prompt)
        embeddings = self._embed(texts, batch_size, prompt_text, show_progress_bar)[0]
        if normalize_embeddings is None and self.config.normalize:
            embeddings = normalize(embeddings)  # the model's Normalize module, before truncation as in the reference
        if dim < self.dimension:
            embeddings = np.ascontiguousarray(embeddings[:, :dim])
        if normalize_embeddings:
            embeddings = normalize(embeddings)
        embeddings = quantize(embeddings, out_precision)
        return embeddings[0] if single else embeddings

    def embed(
        self,
        texts: Sequence[str],
        *,
        prompt: str = "",
        normalize: bool | None = None,
        dimensions: int | None = None,
        batch_size: int = 32,
        truncation: str | TruncationSide = "right",
    ) -> Embedding:
        """Vectors plus each text's token count and truncation, from one tokenization: what a server needs.

        Args:
            texts: a list/tuple of strings (a long text costs only the prefix its tokens need).
            prompt: text put before every text (``resolve_prompt`` turns a prompt name into it).
            normalize: None follows the model (its Normalize module); True or False decides.
            dimensions: keep the first values only; normalized vectors are normalized again after the cut,
                so they stay unit vectors, as OpenAI's ``dimensions`` returns them.
            batch_size: most texts per onnxruntime call.
            truncation: which end of a text longer than max_seq_length is kept (prompt included): its start
                (``right``, as sentence-transformers truncates) or its end (``left``, as text-embeddings-inference's
                ``truncation_direction``).

        Raises:
            ValueError: ``left`` with a prompt on a model whose pooling leaves the prompt out (the prompt's
                tokens may be cut, so they could not be told apart), or a bad option.

        """
        texts = list(check_texts(texts))
        positive_int("batch_size", batch_size)
        dim = self._check_truncate_dim(dimensions)
        side = self.check_truncation(prompt, truncation)
        vectors, ids, truncated = self._embed(texts, batch_size, prompt, False, side)
        if dim < self.dimension:
            vectors = vectors[:, :dim]
        if self.config.normalize if normalize is None else normalize:
            vectors = pooling.normalize(vectors)  # the argument ``normalize`` hides the function here
        return Embedding(np.ascontiguousarray(vectors), [len(row) for row in ids], truncated)

    def check_truncation(self, prompt: str, truncation: str | TruncationSide) -> TruncationSide:
        """The truncation side for texts embedded with ``prompt``; a ValueError where the two cannot go together.

        ``left`` with a prompt is refused on a model whose pooling leaves the prompt out (include_prompt false):
        left truncation may cut the prompt, and its tokens could not be told apart from the text's.
        """
        side = TruncationSide.parse(truncation)
        if side is TruncationSide.LEFT and self._prompt_length(prompt):
            raise ValueError(
                "'left' truncation with a prompt is not supported for this model: its pooling leaves the prompt "
                "out (include_prompt false), and left truncation may cut the prompt"
            )
        return side

    def resolve_prompt(self, prompt_name: str | None = None, prompt: str | None = None) -> str:
        """The prompt text: ``prompt`` when given, else the model's prompt ``prompt_name`` (or its default one).

        Raises:
            ValueError: ``prompt_name`` is not one of the model's prompts (the message lists them).

        """
        if prompt is not None:
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
            return prompt
        st = self.config.sentence_transformer
        name = prompt_name if prompt_name is not None else st.default_prompt_name
        if name is None:
            return ""
        if name not in st.prompts:
            raise ValueError(f"prompt_name {name!r} is not one of this model's prompts {sorted(st.prompts)}")
        return st.prompts[name]

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Pairwise similarity with the model's similarity function (cosine unless the model says otherwise)."""
        return SIMILARITY[self.config.sentence_transformer.similarity_fn](a, b)

    def _embed(
        self,
        texts: list[str],
        batch_size: int,
        prompt: str,
        progress: bool,
        side: TruncationSide = TruncationSide.RIGHT,
    ) -> tuple[np.ndarray, list[list[int]], list[bool]]:
        """Pooled (not normalized) float32 embeddings in input order, the token ids and the truncation flags."""
        if prompt:
            texts = [prompt + t for t in texts]
        ids, truncated = self.tokenizer.encode_batch_truncated(texts, self.max_seq_length, side)
        prompt_length = self._prompt_length(prompt)
        bar = Progress("encode", len(texts), enabled=progress)
        if len(ids) == 1:  # the latency path: no ordering, no copy into a result array
            pooled = self._run_batch(ids, prompt_length)
            bar.update(1)
            return pooled, ids, truncated
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for index, pooled in self._run_batches(ids, list(self._batches(ids, batch_size)), prompt_length):
            out[index] = pooled
            bar.update(len(index))
        return out, ids, truncated

    def _run_batches(
        self, ids: list[list[int]], batches: list[np.ndarray], prompt_length: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row indices, pooled rows) per batch: in order, or as they finish when ``workers`` > 1."""
        if self.workers == 1 or len(batches) <= 1:  # no batches (no texts) must not start a pool of zero threads
            for index in batches:
                yield index, self._run_batch([ids[i] for i in index], prompt_length)
            return
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(min(self.workers, len(batches)), thread_name_prefix="embedrt") as executor:
            futures = {
                executor.submit(self._run_batch, [ids[i] for i in index], prompt_length): index for index in batches
            }
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:
                for future in futures:
                    future.cancel()  # after a failed batch (or Ctrl-C), the queued ones do not start

    def _batches(self, ids: list[list[int]], batch_size: int) -> Iterator[np.ndarray]:
        """Row indices per onnxruntime call: longest first, so padding inside each batch stays small."""
        order = np.argsort([-len(row) for row in ids], kind="stable")
        start = 0
        while start < len(ids):
            # Token budget: long rows make the attention matrices (rows x length^2) large and slow.
            width = len(ids[order[start]])
            size = min(batch_size, max(1, self.max_batch_tokens // width))
            yield order[start : start + size]
            start += size

    def _run_batch(self, ids: list[list[int]], prompt_length: int) -> np.ndarray:
        input_ids, attention_mask = self.tokenizer.pad(ids)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        (hidden,) = self._session.run([self._output_name], feeds)
        if prompt_length:
            attention_mask = exclude_prompt(attention_mask, prompt_length)
        pooled = pool(hidden.astype(np.float32, copy=False), attention_mask, self.config.pooling.modes)
        for layer in self._dense:
            pooled = layer(pooled)
        return pooled

    def _prompt_length(self, prompt: str) -> int:
        """[CLS] + prompt tokens, the span include_prompt=False leaves out of pooling."""
        if not prompt or self.config.pooling.include_prompt:
            return 0
        return len(self.tokenizer.encode_batch([prompt], self.max_seq_length)[0]) - 1

    def _check_truncate_dim(self, truncate_dim: int | None) -> int:
        if truncate_dim is None:
            return self.dimension
        if (
            not isinstance(truncate_dim, int)
            or isinstance(truncate_dim, bool)
            or not 1 <= truncate_dim <= self.dimension
        ):
            raise ValueError(f"truncate_dim must be an integer in [1, {self.dimension}], got {truncate_dim!r}")
        return truncate_dim
