"""What decides a job's vectors: the variant's ONNX file and the whole pipeline around it.

Two exports can share an ONNX file and still embed differently: another pooling, Normalize removed, other Dense
weights, another ``max_seq_length``, prompts or tokenizer. A job's identity is therefore the ONNX file's sha256
(from the export manifest, which each worker checks the file against), the sha256 of every other file the Encoder
reads, and a readable summary of the pipeline those files configure, so that a refusal can say what changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedrt.config import TRANSFORMER_CONFIG_NAMES, ModelConfig, ModuleKind
from embedrt.manifest import MANIFEST_NAME, Manifest, Variant, sha256_file

# The files of the Transformer module's directory that the Encoder reads (configs and tokenizer), when present.
_TRANSFORMER_FILES = (
    *TRANSFORMER_CONFIG_NAMES,
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
_ROOT_FILES = ("modules.json", "config_sentence_transformers.json")


@dataclass(frozen=True)
class ModelIdentity:
    """The model a job embeds with: variant, ONNX sha256, pipeline summary and the sha256 of every file read."""

    variant: str
    model_sha256: str
    pipeline: dict[str, Any]  # pooling, normalize, max_seq_length, dense, prompts: what the files configure
    files: dict[str, str]  # POSIX path relative to the export -> sha256, for every file read besides the ONNX

    @classmethod
    def of(cls, model_dir: Path, variant: Variant) -> ModelIdentity:
        """Read the identity of ``variant`` of the export in ``model_dir`` (errors name the missing file)."""
        manifest_path = model_dir / MANIFEST_NAME
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} not found: {model_dir} is not an embedrt export")
        sha256 = Manifest.from_file(manifest_path).info(variant, model_dir).sha256
        config = ModelConfig.from_dir(model_dir)
        files = {name: sha256_file(model_dir / name) for name in pipeline_files(model_dir, config)}
        return cls(variant.value, sha256, pipeline_summary(config), files)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelIdentity:
        """Inverse of ``to_dict`` (KeyError or TypeError when a field is missing or mistyped)."""
        return cls(str(data["variant"]), str(data["model_sha256"]), dict(data["pipeline"]), dict(data["files"]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (it travels to workers in the job spec and is kept in ``_job.json``)."""
        return {
            "variant": self.variant,
            "model_sha256": self.model_sha256,
            "pipeline": self.pipeline,
            "files": self.files,
        }

    def differences(self, other: ModelIdentity) -> list[str]:
        """What differs from ``other`` (an earlier or the driver's identity), readable first, then file by file."""
        said = [
            f"{key} {other.pipeline.get(key)!r} -> {self.pipeline.get(key)!r}"
            for key in dict.fromkeys([*other.pipeline, *self.pipeline])
            if other.pipeline.get(key) != self.pipeline.get(key)
        ]
        if other.variant != self.variant:
            said.append(f"variant {other.variant} -> {self.variant}")
        if other.model_sha256 != self.model_sha256:
            said.append(f"ONNX file sha256 {other.model_sha256[:12]}... -> {self.model_sha256[:12]}...")
        for name in sorted(set(other.files) | set(self.files)):
            before, now = other.files.get(name), self.files.get(name)
            if before != now:
                said.append(f"{name} {_state(before)} -> {_state(now)}")
        return said


def _state(sha256: str | None) -> str:
    return "absent" if sha256 is None else f"sha256 {sha256[:12]}..."


def pipeline_files(model_dir: Path, config: ModelConfig) -> list[str]:
    """The files the Encoder reads from ``model_dir`` besides the ONNX file, as sorted POSIX relative paths."""
    names = list(_ROOT_FILES)
    transformer = config.transformer_dir.strip("/")
    names += [f"{transformer}/{name}" if transformer else name for name in _TRANSFORMER_FILES]
    pooling = config.modules.path_of(ModuleKind.POOLING).strip("/")
    names.append(f"{pooling}/config.json" if pooling else "config.json")
    for dense in config.modules.paths_of(ModuleKind.DENSE):
        names += [f"{dense.strip('/')}/config.json", f"{dense.strip('/')}/model.safetensors"]
    return sorted({name for name in names if (model_dir / name).is_file()})


def pipeline_summary(config: ModelConfig) -> dict[str, Any]:
    """What the configuration files make of the transformer's output, in words a refusal can name."""
    st = config.sentence_transformer
    return {
        "pooling": "+".join(mode.value for mode in config.pooling.modes),
        "include_prompt": config.pooling.include_prompt,
        "dense": [
            f"{d.in_features}->{d.out_features} {d.activation.value}{'' if d.bias else ' no bias'}"
            for d in config.dense
        ],
        "normalize": config.normalize,
        "max_seq_length": config.max_seq_length,
        "do_lower_case": config.transformer.do_lower_case,
        "prompts": dict(sorted(st.prompts.items())),
        "default_prompt_name": st.default_prompt_name,
        "dimension": config.dimension,
    }
