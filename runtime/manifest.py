"""manifest.json of an exported model directory: which ONNX files exist, their hashes and parity figures."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedrt.config import Choice, read_json, require

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class Variant(Choice):
    """The ONNX files an export can write."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"

    @property
    def file_name(self) -> str:
        """File name of this variant inside an export directory."""
        return f"model.{self.value}.onnx"


@dataclass(frozen=True)
class VariantInfo:
    """One ONNX file of the export."""

    file: str
    sha256: str
    size_bytes: int
    opset: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    recipe: str = ""
    parity: dict[str, float | int | str] = field(default_factory=dict)

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
        )


@dataclass(frozen=True)
class Manifest:
    """The whole manifest.json."""

    format_version: int
    source: dict[str, str]
    variants: dict[Variant, VariantInfo]
    embedrt_version: str = ""

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
        return cls(version, dict(data.get("source", {})), variants, str(data.get("embedrt_version", "")))

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        """Read manifest.json."""
        return cls.from_dict(read_json(path), path)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "format_version": self.format_version,
            "embedrt_version": self.embedrt_version,
            "source": self.source,
            "variants": {k.value: asdict(v) for k, v in self.variants.items()},
        }

    def write(self, path: Path) -> None:
        """Write as indented JSON."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def info(self, variant: Variant, model_dir: Path) -> VariantInfo:
        """The entry for ``variant`` or an error listing the variants this export has."""
        if variant not in self.variants:
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
    if not path.is_file():
        raise FileNotFoundError(f"{path} is listed in {MANIFEST_NAME} but missing")
    size = path.stat().st_size
    if size != info.size_bytes:
        raise ValueError(
            f"{path} is {size} bytes but {MANIFEST_NAME} says {info.size_bytes}: "
            "the file is truncated or was replaced; re-run `embedrt export`"
        )
    return path


def check_digest(path: Path, info: VariantInfo) -> None:
    """Raise unless the file's sha256 is the manifest's."""
    digest = sha256_file(path)
    if digest != info.sha256:
        raise ValueError(
            f"{path} has sha256 {digest} but {MANIFEST_NAME} says {info.sha256}: "
            "the file is corrupted or was replaced; re-run `embedrt export`"
        )
