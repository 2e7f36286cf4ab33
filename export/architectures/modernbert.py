"""ModernBERT: ``ModernBertModel`` embedders and ``ModernBertForSequenceClassification`` cross-encoders.

Embedders such as gte-modernbert-base and modernbert-embed-base; rerankers such as gte-reranker-modernbert-base.

Inputs are ids and mask only; positions are rotary, ``0 .. length - 1``, computed inside the traced graph, so
nothing depends on the pad id and the usable length is ``max_position_embeddings`` (8192).

What is ModernBERT's own, all traced from transformers' eager attention (loaded with ``attn_implementation="eager"``;
flash-attention's unpadded rotary path does not trace, and ``reference_compile=False`` keeps torch.compile out):

- layer ``i`` is global (full attention, rotary theta ``global_rope_theta``) when ``i % global_attn_every_n_layers
  == 0``, else local: a query sees the keys with ``|i - j| <= local_attention // 2``, rotary theta
  ``local_rope_theta``;
- a GeGLU MLP (``Wi`` gives input and gate; ``act(input) * gate``), LayerNorms with or without bias (``norm_bias``);
- the classifier pools the first token or the mask-weighted mean (``classifier_pooling``), then dense -> act ->
  norm -> classifier.

config.json comes in two spellings. transformers 4.x writes ``global_rope_theta`` / ``local_rope_theta`` and
``global_attn_every_n_layers``; transformers 5.x writes ``rope_parameters`` (``{"full_attention": {"rope_theta":
...}, "sliding_attention": {...}}``) and ``layer_types``. transformers 4.57 ignores the 5.x keys and would build the
model with the default thetas, silently: :func:`config_overrides` reads config.json itself and translates the 5.x
keys into the 4.x ones (refusing a ``layer_types`` pattern that 4.x cannot express, or a rope type other than
``default``), and both the traced model and the sentence-transformers reference are loaded with them.

transformers 5.7's masking utilities broke ``torch.onnx.export`` of this model (5.25's trace and match), so the
export refuses transformers versions outside the tested ranges (:data:`TESTED_TRANSFORMERS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedrt.config import read_json
from embedrt.export.architectures import Architecture

# transformers versions the ModernBERT export accepts (ModernBERT arrived in 4.48; 5.0 to 5.24 are refused: 5.7's
# masking utilities fail in torch.onnx.export with an IndexError in sdpa_mask, 5.25 traces), and those tested.
TESTED_TRANSFORMERS = ((4, 48), (5, 0)), ((5, 25), (6, 0))
TESTED_VERSIONS = "4.57.6 (what CI runs) and 5.25.0; 5.7.0 fails to trace"
PIP_COMMAND = 'pip install "transformers>=4.48,<5"'
FULL, SLIDING = "full_attention", "sliding_attention"


def check_transformers_version(version: str | None = None) -> None:
    """Refuse a transformers version outside :data:`TESTED_TRANSFORMERS`, naming the pip command that fixes it."""
    import transformers

    found = version if version is not None else transformers.__version__
    if any(low <= _release(found) < high for low, high in TESTED_TRANSFORMERS):
        return
    raise RuntimeError(
        f"exporting ModernBERT needs transformers >=4.48,<5 or >=5.25,<6 (tested: {TESTED_VERSIONS}); "
        f"transformers {found} is installed (ModernBERT is not in transformers before 4.48, and the masking "
        f"utilities of 5.0 to 5.24 break torch.onnx.export of this model). Run: {PIP_COMMAND}"
    )


def _release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as ``4.57.6`` or ``5.0.0rc1``."""
    parts = [int("".join(c for c in part if c.isdigit()) or 0) for part in version.split("+")[0].split(".")[:2]]
    major, minor = [*parts, 0, 0][:2]
    return major, minor


def reads_its_own_spelling() -> bool:
    """Whether the installed transformers reads config.json's 5.x keys itself (5.x: no translation needed)."""
    import transformers

    return _release(transformers.__version__) >= (5, 0)


def config_overrides(config_path: Path) -> dict[str, Any]:
    """The 4.x config keys for a config.json written in transformers 5.x's spelling ({} when it has none of it).

    ``rope_parameters`` gives ``global_rope_theta`` (full_attention) and ``local_rope_theta`` (sliding_attention);
    ``layer_types`` gives ``global_attn_every_n_layers``. As in transformers 5.x, they win over the 4.x keys.
    """
    hf_config = read_json(config_path)
    overrides: dict[str, Any] = {}
    rope = hf_config.get("rope_parameters")
    if rope is not None:
        if not isinstance(rope, dict):
            raise ValueError(f"{config_path}: 'rope_parameters' must be a JSON object, found {rope!r}")
        for kind, key in ((FULL, "global_rope_theta"), (SLIDING, "local_rope_theta")):
            params = rope.get(kind)
            if params is None:
                continue
            rope_type = params.get("rope_type", params.get("type", "default")) if isinstance(params, dict) else None
            if rope_type != "default" or not isinstance(params.get("rope_theta"), int | float):
                raise ValueError(
                    f"{config_path}: rope_parameters[{kind!r}] is {params!r}; embedrt exports ModernBERT with "
                    "rope_type 'default' and a numeric rope_theta only"
                )
            overrides[key] = float(params["rope_theta"])
    layer_types = hf_config.get("layer_types")
    if layer_types is not None:
        overrides["global_attn_every_n_layers"] = _every_n(layer_types, config_path)
    return overrides


def _every_n(layer_types: object, config_path: Path) -> int:
    """The ``n`` of transformers 4.x's pattern (layer ``i`` is global iff ``i % n == 0``) for ``layer_types``."""
    valid = isinstance(layer_types, list) and layer_types and all(t in (FULL, SLIDING) for t in layer_types)
    if valid:
        assert isinstance(layer_types, list)
        for n in range(1, len(layer_types) + 1):
            if all((t == FULL) == (i % n == 0) for i, t in enumerate(layer_types)):
                return n
    raise ValueError(
        f"{config_path}: 'layer_types' is {layer_types!r}; transformers 4.x (which the export runs) places full "
        f"attention on every n-th layer from layer 0 only ('{FULL}' exactly where i % n == 0, else '{SLIDING}'), "
        "and this pattern is not one of those"
    )


@dataclass(frozen=True)
class ModernBertArchitecture(Architecture):
    """ModernBERT: loaded with the 5.x config keys translated, eager attention, no torch.compile."""

    def load(self, model_dir: Path, classifier: bool, **kwargs: Any) -> Any:
        """The transformers model in ``model_dir``, in eval mode, as it computes without torch.compile."""
        kwargs = {**kwargs, **self.config_overrides(model_dir)}
        if kwargs.get("attn_implementation") not in ("eager", "sdpa"):
            kwargs["attn_implementation"] = "eager"  # flash-attention's unpadded rotary does not trace
        if not reads_its_own_spelling():  # transformers 5 has no reference_compile (it never compiles by itself)
            kwargs["reference_compile"] = False
        model = super().load(model_dir, classifier, **kwargs)
        if not reads_its_own_spelling():
            # The local layers' attention in the band only: 1.7x the whole model at 2,048 tokens, no L x L mask
            # (benchmarks/modernbert_attention.py). Its padded rows stay finite in fp16 too, where transformers'
            # L x L mask clipped to -65504 makes a padded row -inf, NaN after softmax, spreading through P @ V.
            from embedrt.export.banded_attention import patch_local_attention

            patch_local_attention(model)
        return model

    def config_overrides(self, model_dir: Path) -> dict[str, Any]:
        """The config keys every load of the model in ``model_dir`` needs (see :func:`config_overrides`).

        Refuses a transformers version outside the tested range first: every load (the reference's too) comes here.
        """
        check_transformers_version()
        overrides = config_overrides(model_dir / "config.json")  # validated under any version
        return {} if reads_its_own_spelling() else overrides


MODERNBERT = ModernBertArchitecture(
    model_type="modernbert",
    classes=frozenset(
        {
            "ModernBertModel",
            "ModernBertForMaskedLM",
            "ModernBertForSequenceClassification",
            "ModernBertForTokenClassification",
            "ModernBertForQuestionAnswering",
            "ModernBertForMultipleChoice",
        }
    ),
    inputs=("input_ids", "attention_mask"),
    model_class="ModernBertModel",
    classifier_class="ModernBertForSequenceClassification",
    has_pooler=False,
)
