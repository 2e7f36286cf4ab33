"""An export lands whole: a re-export stopped at any step leaves the earlier export loading exactly as before,
and a finished one replaces it entirely (export/landing.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import clone_dir, edit_json

from embedrt import Encoder
from embedrt.export import ParityError, export, exporter, landing, parity
from embedrt.export.embedding import EmbeddingModel
from embedrt.manifest import Variant

TEXTS = ["Hello World, Paris and BERLIN.", "lower case text", "MiXeD CaSe Words Here"]


class Interrupted(BaseException):
    """Stands for Ctrl-C or a kill at one step (a BaseException, like KeyboardInterrupt)."""


@pytest.fixture(scope="module")
def cased_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with a cased tokenizer (no lowercasing) and a shorter max_seq_length: other token ids."""
    source = clone_dir(tiny_model_dir, tmp_path_factory.mktemp("cased") / "tiny-cased")
    tokenizer = json.loads((source / "tokenizer.json").read_text())
    tokenizer["normalizer"]["lowercase"] = False
    (source / "tokenizer.json").write_text(json.dumps(tokenizer))
    edit_json(source / "tokenizer_config.json", do_lower_case=False)
    edit_json(source / "sentence_bert_config.json", max_seq_length=16, do_lower_case=False)
    return source


def snapshot(directory: Path) -> dict[str, str]:
    """Every file of a directory (links followed) with its sha256: what 'exactly as before' compares."""
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def loaded(directory: Path) -> tuple[list[list[int]], np.ndarray]:
    encoder = Encoder.load(directory, variant="fp32", threads=1)
    return encoder.tokenizer.encode_batch(TEXTS, 512), encoder.encode(TEXTS)


def _copy_then_stop(monkeypatch) -> None:
    """Stop in the middle of copying the tokenizer and config files: right after the new tokenizer.json."""
    from embedrt.export import layout

    real = layout.shutil.copy2

    def copy2(source, target, *args, **kwargs):
        copied = real(source, target, *args, **kwargs)
        if Path(target).name == "tokenizer.json":
            raise Interrupted("copying files")
        return copied

    monkeypatch.setattr(layout.shutil, "copy2", copy2)


def _stop_loading_the_reference(monkeypatch) -> None:
    def reference(self):
        raise Interrupted("loading the reference")

    monkeypatch.setattr(EmbeddingModel, "reference", reference)


def _stop_tracing(monkeypatch) -> None:
    def export_plain(*args, **kwargs):
        raise Interrupted("tracing")

    monkeypatch.setattr(exporter, "export_plain", export_plain)


def _stop_in_check(number: int):
    def patch(monkeypatch) -> None:
        real, calls = exporter._check, []

        def check(*args, **kwargs):
            calls.append(args[2])
            if len(calls) == number:
                raise Interrupted(f"checking {args[2].value}")
            return real(*args, **kwargs)

        monkeypatch.setattr(exporter, "_check", check)

    return patch


STAGES = {
    "copying-files": _copy_then_stop,
    "loading-the-reference": _stop_loading_the_reference,
    "tracing": _stop_tracing,
    "checking-fp32": _stop_in_check(1),
    "checking-int8": _stop_in_check(2),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_an_interrupted_re_export_leaves_the_old_export_as_it_was(
    stage: str, tmp_path: Path, tiny_export: Path, cased_model_dir: Path, monkeypatch
) -> None:
    """The issue's case: a cased model exported over an uncased one, stopped at each step."""
    out = clone_dir(tiny_export, tmp_path / "models" / "tiny")
    before_files, (before_ids, before_vectors) = snapshot(out), loaded(out)
    STAGES[stage](monkeypatch)
    with pytest.raises(Interrupted):
        export(cased_model_dir, out, variants=("fp32", "int8"), progress=False)
    assert snapshot(out) == before_files
    ids, vectors = loaded(out)
    assert ids == before_ids and np.array_equal(vectors, before_vectors)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # no staging directory left


def test_a_finished_re_export_replaces_the_whole_directory(
    tmp_path: Path, tiny_export: Path, cased_model_dir: Path
) -> None:
    out = clone_dir(tiny_export, tmp_path / "models" / "tiny")
    (out / "model.int8.onnx").unlink()  # stands for any file of the old export that the new one does not write
    (out / "model.int8.onnx").write_bytes(b"old")
    export(cased_model_dir, out, variants=("fp32",), progress=False)
    assert not (out / "model.int8.onnx").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["variants"]) == ["fp32"] and manifest["source"]["path"] == str(cased_model_dir)
    encoder = Encoder.load(out, variant="fp32", threads=1)
    assert encoder.config.max_seq_length == 16
    old = Encoder.load(tiny_export, threads=1)
    assert encoder.tokenizer.encode_batch(TEXTS, 512) != old.tokenizer.encode_batch(TEXTS, 512)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]


def test_without_an_atomic_exchange_the_export_still_lands(
    tmp_path: Path, tiny_export: Path, cased_model_dir: Path, monkeypatch
) -> None:
    """Where renameat2(RENAME_EXCHANGE) is missing: the old directory is renamed aside, then removed."""
    monkeypatch.setattr(landing, "exchange", lambda first, second: False)
    out = clone_dir(tiny_export, tmp_path / "models" / "tiny")
    export(cased_model_dir, out, variants=("fp32",), progress=False)
    assert Encoder.load(out, threads=1).config.max_seq_length == 16
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]


def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        directory.mkdir()
        (directory / "name").write_text(directory.name)
    if not landing.exchange(first, second):
        pytest.skip("this kernel or filesystem has no renameat2(RENAME_EXCHANGE); land() renames instead")
    assert (first / "name").read_text() == "second" and (second / "name").read_text() == "first"


def test_a_first_variant_out_of_tolerance_lands_nothing(
    tmp_path: Path, tiny_export: Path, cased_model_dir: Path, monkeypatch
) -> None:
    """No variant passed: the earlier export stays whole (it used to lose its files and keep an empty manifest)."""
    monkeypatch.setitem(parity.TOLERANCE, Variant.FP32, (1.1, 0.0))
    out = clone_dir(tiny_export, tmp_path / "models" / "tiny")
    before = snapshot(out)
    with pytest.raises(ParityError, match=r"tiny/model\.fp32\.onnx disagrees with the PyTorch reference"):
        export(cased_model_dir, out, variants=("fp32", "int8"), progress=False)
    assert snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]
    with pytest.raises(ParityError):
        export(cased_model_dir, tmp_path / "fresh", variants=("fp32",), progress=False)
    assert not (tmp_path / "fresh").exists()


def test_a_directory_that_is_no_export_is_not_replaced(tmp_path: Path, tiny_model_dir: Path) -> None:
    target = tmp_path / "notes"
    target.mkdir()
    (target / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes is not empty and has no manifest\.json"):
        export(tiny_model_dir, target, variants=("fp32",), progress=False)
    assert (target / "todo.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        export(tiny_model_dir, tmp_path / "file", variants=("fp32",), progress=False)
