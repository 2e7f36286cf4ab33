"""manifest.json of an exported model directory: which ONNX files exist, their hashes and parity figures."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedrt.config import Activation, Choice, read_json, require

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class Variant(Choice):
    """How a model runs: the ONNX files an export can write, and bf16, which runs the fp32 file."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    BF16 = "bf16"  # computed at run time from model.fp32.onnx by a bf16 engine (embedrt.bf16): no file of its own

    @property
    def file_variant(self) -> Variant:
        """The variant whose file this one runs (fp32's for bf16, its own for the others)."""
        return Variant("fp32") if self is Variant.BF16 else self

    @property
    def file_name(self) -> str:
        """File name of this variant's ONNX file inside an export directory."""
        return f"model.{self.file_variant.value}.onnx"


class ModelKind(Choice):
    """What an export holds: a sentence embedding model or a cross-encoder (reranker)."""

    EMBEDDING = "embedding"
    CROSS_ENCODER = "cross-encoder"


# The class that runs each kind, for the error that names the right one.
_RUNNER = {ModelKind.EMBEDDING: "embedrt.Encoder", ModelKind.CROSS_ENCODER: "embedrt.Reranker"}


@dataclass(frozen=True)
class CrossEncoderInfo:
    """A cross-encoder's score convention: its labels, the activation ``predict`` applies, the pair token limit."""

    num_labels: int
    activation: Activation
    max_length: int

    @classmethod
    def from_dict(cls, data: Any, source: str | Path) -> CrossEncoderInfo:
        """Build from manifest.json's ``cross_encoder`` object; ``source`` names it in errors."""
        activation = require(data, "activation", source, str)
        try:
            parsed = Activation(activation)
        except ValueError:
            options = ", ".join(a.value for a in Activation)
            raise ValueError(f"{source}: unknown activation {activation!r}; expected one of {options}") from None
        return cls(require(data, "num_labels", source, int), parsed, require(data, "max_length", source, int))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"num_labels": self.num_labels, "activation": self.activation.value, "max_length": self.max_length}


@dataclass(frozen=True)
class FileDigest:
    """A file the export needs, beside the ONNX file itself: its sha256 and size."""

    sha256: str
    size_bytes: int

    @classmethod
    def from_dict(cls, data: Any, source: str | Path) -> FileDigest:
        """Build from ``{"sha256": ..., "size_bytes": ...}``; ``source`` names the entry in errors."""
        return cls(require(data, "sha256", source, str), require(data, "size_bytes", source, int))

    @classmethod
    def of(cls, path: Path) -> FileDigest:
        """The digest of a file on disk."""
        return cls(sha256_file(path), path.stat().st_size)


def _digests(data: Any, source: str | Path) -> dict[str, FileDigest]:
    if not isinstance(data, dict):
        raise ValueError(f"{source} must be a JSON object of file names")
    return {name: FileDigest.from_dict(entry, f"{source}.{name}") for name, entry in data.items()}


@dataclass(frozen=True)
class VariantInfo:
    """One ONNX file of the export, and its external data files when it has any (models past 2 GB)."""

    file: str
    sha256: str
    size_bytes: int
    opset: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    recipe: str = ""
    parity: dict[str, float | int | str] = field(default_factory=dict)
    external_data: dict[str, FileDigest] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path = MANIFEST_NAME) -> VariantInfo:
        """Build from the manifest's JSON object; ``source`` names the file and entry in errors."""
        return cls(
            file=require(data, "file", source, str),
            sha256=require(data, "sha256", source, str),
            size_bytes=require(data, "size_bytes", source, int),
            opset=require(data, "opset", source, int),
            inputs=tuple(require(data, "inputs", source, list)),
            outputs=tuple(require(data, "outputs", source, list)),
            recipe=str(data.get("recipe", "")),
            parity=dict(data.get("parity", {})),
            external_data=_digests(data.get("external_data", {}), f"{source}: external_data"),
        )


@dataclass(frozen=True)
class Manifest:
    """The whole manifest.json."""

    format_version: int
    source: dict[str, Any]
    variants: dict[Variant, VariantInfo]
    embedrt_version: str = ""
    files: dict[str, FileDigest] = field(default_factory=dict)
    """Files every variant needs (Dense weights), by path relative to the export directory."""
    kind: ModelKind = ModelKind.EMBEDDING  # type: ignore[assignment]  # (mypy reads embedrt imports as Any)
    cross_encoder: CrossEncoderInfo | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> Manifest:
        """Build from parsed JSON; ``path`` names the file in errors."""
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        entries = require(data, "variants", path, dict)
        variants = {
            Variant.parse(k): VariantInfo.from_dict(require(entries, k, path, dict), f"{path}: variants.{k}")
            for k in entries
        }
        files = _digests(data.get("files", {}), f"{path}: files")
        kind = ModelKind.parse(data.get("kind", "embedding"))
        cross = data.get("cross_encoder")
        if (kind is ModelKind.CROSS_ENCODER) != (cross is not None):
            raise ValueError(f"{path}: 'cross_encoder' settings go with kind 'cross-encoder' and only with it")
        return cls(
            version,
            dict(data.get("source", {})),
            variants,
            str(data.get("embedrt_version", "")),
            files,
            kind,
            CrossEncoderInfo.from_dict(cross, f"{path}: cross_encoder") if cross is not None else None,
        )

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        """Read manifest.json."""
        return cls.from_dict(read_json(path), path)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "format_version": self.format_version,
            "embedrt_version": self.embedrt_version,
            "kind": self.kind.value,
            **({"cross_encoder": self.cross_encoder.to_dict()} if self.cross_encoder else {}),
            "source": self.source,
            "files": {k: asdict(v) for k, v in self.files.items()},
            "variants": {k.value: asdict(v) for k, v in self.variants.items()},
        }

    def require_kind(self, kind: ModelKind, model_dir: Path) -> None:
        """Raise a ValueError, naming the class to use instead, unless this export holds a model of ``kind``."""
        if self.kind is not kind:
            raise ValueError(
                f"{model_dir} holds a {self.kind.value} model, not a {kind.value} model: "
                f"load it with {_RUNNER[self.kind]}.load"
            )

    def write(self, path: Path) -> None:
        """Write as indented JSON."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def info(self, variant: Variant, model_dir: Path) -> VariantInfo:
        """The entry of ``variant``'s file (fp32's for bf16) or an error listing the variants this export has."""
        wanted, variant = variant, variant.file_variant
        if variant not in self.variants:
            if wanted is not variant:
                raise ValueError(f"{model_dir} has no fp32 file, which {wanted.value} runs; run `embedrt export`")
            have = ", ".join(v.value for v in self.variants) or "none"
            raise ValueError(
                f"{model_dir} has no {variant.value} variant (exported: {have}); "
                f"run `embedrt export --variants {variant.value}`"
            )
        return self.variants[variant]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a large model never sits in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def checked_path(model_dir: Path, info: VariantInfo) -> Path:
    """The variant's file, refused when it is missing or its size differs from the manifest's."""
    path = model_dir / info.file
    _check_size(path, info.size_bytes)
    return path


def check_digest(path: Path, info: VariantInfo) -> None:
    """Raise unless the file's sha256, and its external data files' sizes and hashes, are the manifest's."""
    _check_sha256(path, info.sha256)
    for name, digest in info.external_data.items():
        check_listed_file(path.parent / name, digest)


def check_listed_file(path: Path, digest: FileDigest) -> None:
    """Raise unless ``path`` exists with the size and sha256 of ``digest``."""
    _check_size(path, digest.size_bytes)
    _check_sha256(path, digest.sha256)


def _check_size(path: Path, expected: int) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is listed in {MANIFEST_NAME} but missing")
    size = path.stat().st_size
    if size != expected:
        raise ValueError(
            f"{path} is {size} bytes but {MANIFEST_NAME} says {expected}: "
            "the file is truncated or was replaced; re-run `embedrt export`"
        )


def _check_sha256(path: Path, expected: str) -> None:
    digest = sha256_file(path)
    if digest != expected:
        raise ValueError(
            f"{path} has sha256 {digest} but {MANIFEST_NAME} says {expected}: "
            "the file is corrupted or was replaced; re-run `embedrt export`"
        )
