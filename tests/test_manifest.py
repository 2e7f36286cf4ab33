"""manifest.json: round trip, and refusal of missing, truncated, corrupted or replaced ONNX files."""

from __future__ import annotations

import json
import shutil

import pytest

from embedrt import Encoder
from embedrt.manifest import Manifest, Variant


def _copy(tiny_export, tmp_path):
    out = tmp_path / "export"
    shutil.copytree(tiny_export, out)
    return out


def test_round_trip(tiny_export):
    manifest = Manifest.from_file(tiny_export / "manifest.json")
    assert set(manifest.variants) == {Variant.FP32, Variant.INT8}
    again = Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())), tiny_export / "manifest.json")
    assert again == manifest


def test_truncated_file_is_refused(tiny_export, tmp_path):
    out = _copy(tiny_export, tmp_path)
    data = (out / "model.fp32.onnx").read_bytes()
    (out / "model.fp32.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.fp32\.onnx.*truncated"):
        Encoder.load(out)


def test_corrupted_file_is_refused(tiny_export, tmp_path):
    out = _copy(tiny_export, tmp_path)
    data = bytearray((out / "model.fp32.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "model.fp32.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.fp32\.onnx has sha256 .* but manifest\.json says"):
        Encoder.load(out)


def test_unparsable_replacement_is_reported_as_a_hash_mismatch(tiny_export, tmp_path):
    # onnxruntime reads the file while its hash is computed; the hash mismatch is the error the user sees.
    out = _copy(tiny_export, tmp_path)
    size = (out / "model.fp32.onnx").stat().st_size
    (out / "model.fp32.onnx").write_bytes(b"\xff" * size)
    with pytest.raises(ValueError, match=r"model\.fp32\.onnx has sha256 .* but manifest\.json says"):
        Encoder.load(out)


def test_corrupted_file_with_matching_manifest_gets_a_clear_error(tiny_export, tmp_path):
    out = _copy(tiny_export, tmp_path)
    (out / "model.fp32.onnx").write_bytes(b"not an onnx file")
    manifest = json.loads((out / "manifest.json").read_text())
    import hashlib

    manifest["variants"]["fp32"].update(sha256=hashlib.sha256(b"not an onnx file").hexdigest(), size_bytes=16)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"onnxruntime cannot load .*model\.fp32\.onnx"):
        Encoder.load(out)


def test_missing_file_and_variant(tiny_export, tmp_path):
    out = _copy(tiny_export, tmp_path)
    with pytest.raises(ValueError, match=r"no fp16 variant \(exported: fp32, int8\)"):
        Encoder.load(out, variant="fp16")
    (out / "model.int8.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.int8\.onnx is listed in manifest\.json but missing"):
        Encoder.load(out, variant="int8")


def test_not_an_export(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"manifest\.json not found"):
        Encoder.load(tmp_path)


def test_unknown_format_version(tiny_export, tmp_path):
    out = _copy(tiny_export, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format_version 99"):
        Encoder.load(out)


def _listed(out, variant: str, data: bytes) -> None:
    """Replace a variant's file and list the new bytes in manifest.json, as a faithful export would."""
    import hashlib

    (out / f"model.{variant}.onnx").write_bytes(data)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["variants"][variant].update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_a_valid_file_without_a_kernel_here_is_unsupported_not_broken(tiny_export, tmp_path):
    from onnx import TensorProto, helper

    from embedrt.session import UnsupportedOnDevice

    out = _copy(tiny_export, tmp_path)
    value = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2])  # the CPU provider has no bf16 Mul
    graph = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["y"])], "g", [value], [value])
    graph.output[0].name = "y"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _listed(out, "fp32", model.SerializeToString())
    with pytest.raises(UnsupportedOnDevice, match=r"cannot run .*model\.fp32\.onnx on cpu"):
        Encoder.load(out)
    _listed(out, "fp32", model.SerializeToString()[:40])  # a broken file, though its manifest entry matches
    with pytest.raises(ValueError, match="onnxruntime cannot load") as info:
        Encoder.load(out)
    assert not isinstance(info.value, UnsupportedOnDevice)
