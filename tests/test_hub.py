"""Hub ids for `embedrt export`: the local cache first (built by hand here), then a download of only the needed
files (huggingface_hub.snapshot_download replaced by a fake); never the network."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import save_hf_cross_encoder

from embedrt.export import hub
from embedrt.export.hub import IGNORE_PATTERNS, HubModelNotFoundError, allow_patterns, hub_repo_id, is_needed
from embedrt.export.source import DEFAULT_NAME, ResolvedSource, default_model_path, resolve_source

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40
# The packaged model's small files, with a fake model.safetensors: what an export reads of all-MiniLM-L6-v2.
NEEDED = {
    "config.json",
    "config_sentence_transformers.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "1_Pooling/config.json",
}
# Files in the repo that no export reads.
EXTRA = {"README.md", "data_config.json", "onnx/model.onnx", "openvino/openvino_model.xml"}
ENV_KEYS = (
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_HOME",
    "XDG_CACHE_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HUGGINGFACE_CO_STAGING",
)

# The hub's listing of sentence-transformers/all-MiniLM-L6-v2.
MINILM_LISTING = [
    ".gitattributes",
    "1_Pooling/config.json",
    "README.md",
    "config.json",
    "config_sentence_transformers.json",
    "data_config.json",
    "model.safetensors",
    "modules.json",
    "onnx/model.onnx",
    "onnx/model_O1.onnx",
    "onnx/model_O2.onnx",
    "onnx/model_O3.onnx",
    "onnx/model_O4.onnx",
    "onnx/model_qint8_arm64.onnx",
    "onnx/model_qint8_avx512.onnx",
    "onnx/model_qint8_avx512_vnni.onnx",
    "onnx/model_quint8_avx2.onnx",
    "openvino/openvino_model.bin",
    "openvino/openvino_model.xml",
    "openvino/openvino_model_qint8_quantized.bin",
    "openvino/openvino_model_qint8_quantized.xml",
    "pytorch_model.bin",
    "rust_model.ot",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tf_model.h5",
    "tokenizer.json",
    "tokenizer_config.json",
    "train_script.py",
    "vocab.txt",
]
MINILM_NEEDED = [
    "1_Pooling/config.json",
    "config.json",
    "config_sentence_transformers.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
]
# LaBSE-style: a Dense module with its own weights, a sentencepiece file, onnx/openvino/tf copies.
LABSE_LISTING = [
    ".gitattributes",
    "1_Pooling/config.json",
    "2_Dense/config.json",
    "2_Dense/model.safetensors",
    "2_Dense/pytorch_model.bin",
    "README.md",
    "config.json",
    "config_sentence_transformers.json",
    "model.safetensors",
    "modules.json",
    "onnx/config.json",
    "onnx/model.onnx",
    "onnx/model.onnx_data",
    "openvino/openvino_model.bin",
    "openvino/openvino_model.xml",
    "pytorch_model.bin",
    "sentence_bert_config.json",
    "sentencepiece.bpe.model",
    "special_tokens_map.json",
    "tf_model.h5",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
]
LABSE_NEEDED = [
    "1_Pooling/config.json",
    "2_Dense/config.json",
    "2_Dense/model.safetensors",
    "config.json",
    "config_sentence_transformers.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
]
# The old layout: the Transformer in 0_Transformer/, pickle weights only, a nested export that is never needed.
OLD_LISTING = [
    ".gitattributes",
    "0_Transformer/added_tokens.json",
    "0_Transformer/config.json",
    "0_Transformer/onnx/config.json",
    "0_Transformer/onnx/model.onnx",
    "0_Transformer/pytorch_model.bin",
    "0_Transformer/sentence_bert_config.json",
    "0_Transformer/special_tokens_map.json",
    "0_Transformer/tf_model.h5",
    "0_Transformer/tokenizer_config.json",
    "0_Transformer/vocab.txt",
    "1_Pooling/config.json",
    "README.md",
    "modules.json",
]
OLD_NEEDED = [
    "0_Transformer/added_tokens.json",
    "0_Transformer/config.json",
    "0_Transformer/sentence_bert_config.json",
    "0_Transformer/special_tokens_map.json",
    "0_Transformer/tokenizer_config.json",
    "0_Transformer/vocab.txt",
    "1_Pooling/config.json",
    "modules.json",
]
# Sharded safetensors beside sharded pickle and flax weights.
SHARDED_LISTING = [
    "1_Pooling/config.json",
    "config.json",
    "flax_model.msgpack",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "modules.json",
    "pytorch_model-00001-of-00002.bin",
    "pytorch_model-00002-of-00002.bin",
    "pytorch_model.bin.index.json",
    "sentence_xlm-roberta_config.json",
    "tokenizer.json",
]
SHARDED_NEEDED = [
    "1_Pooling/config.json",
    "config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "modules.json",
    "sentence_xlm-roberta_config.json",
    "tokenizer.json",
]
PICKLE_FILES = {"pytorch_model.bin", "2_Dense/pytorch_model.bin", "0_Transformer/pytorch_model.bin"}
SHARDED_PICKLE = [
    "pytorch_model-00001-of-00002.bin",
    "pytorch_model-00002-of-00002.bin",
    "pytorch_model.bin.index.json",
]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache in HF_HUB_CACHE, offline, with the working directory where no model directory exists."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    cache_dir = tmp_path / "hub-cache"
    cache_dir.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return cache_dir


def model_files(commit: str, drop: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The packaged model's small files, a fake model.safetensors tied to ``commit``, and files no export reads."""
    source = default_model_path()
    files = {name: (source / name).read_bytes() for name in NEEDED if name != "model.safetensors"}
    files["model.safetensors"] = b"not really safetensors, commit " + commit.encode()
    files.update({name: f"unused {name}".encode() for name in EXTRA})
    return {name: data for name, data in files.items() if name not in drop}


def write_snapshot(cache_dir: Path, repo_id: str, commit: str, files: dict[str, bytes], refs: tuple[str, ...] = ()):
    """Lay out files as huggingface_hub does: blobs/<sha256>, snapshots/<commit>/<file> -> ../blobs, refs/<name>."""
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    for name, data in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    snapshot.mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo_dir / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return snapshot


def expected_hashes(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items() if name in NEEDED}


# --- ids -------------------------------------------------------------------------------------------------------


def test_org_name_resolves_through_refs_main(cache):
    files = model_files(SHA_A)
    snapshot = write_snapshot(cache, MINILM, SHA_A, files, refs=("main",))
    resolved = resolve_source(MINILM)
    assert isinstance(resolved, ResolvedSource)
    assert resolved.path == snapshot
    assert resolved.name == "all-MiniLM-L6-v2"
    assert resolved.info == {
        "hub_id": MINILM,
        "revision": "main",
        "commit": SHA_A,
        "files": expected_hashes(files),
    }
    assert set(resolved.info["files"]) == NEEDED  # README, onnx/, openvino/ ... are not read, so not hashed


def test_bare_name_is_a_sentence_transformers_model(cache):
    snapshot = write_snapshot(cache, MINILM, SHA_A, model_files(SHA_A), refs=("main",))
    resolved = resolve_source("all-MiniLM-L6-v2")
    assert resolved.path == snapshot
    assert resolved.info["hub_id"] == MINILM


def test_hub_ids_follow_sentence_transformers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub_repo_id("all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    assert hub_repo_id("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    # transformers' original checkpoints keep their bare name, as in SentenceTransformer.__init__
    assert hub_repo_id("bert-base-uncased") == "bert-base-uncased"
    assert hub_repo_id("Bert-Base-Uncased") == "Bert-Base-Uncased"
    (tmp_path / "weights.bin").write_bytes(b"")
    for bad, why in [
        ("./foo/bar", "not a hub id"),
        ("a/b/c", "not a hub id"),
        ("./foo", "not a valid hub id"),
        ("/abs", "not a valid hub id"),
        ("org/na--me", "not a valid hub id"),
        ("weights.bin", "is a file"),
    ]:
        with pytest.raises(FileNotFoundError, match=why) as info:
            hub_repo_id(bad)
        assert bad in str(info.value)


def test_bare_names_match_the_installed_sentence_transformers():
    """The copied ORIGINAL_TRANSFORMER_MODELS list is the installed sentence-transformers' list."""
    misc = pytest.importorskip("sentence_transformers.util.misc")
    assert set(misc.ORIGINAL_TRANSFORMER_MODELS) == hub.ORIGINAL_TRANSFORMER_MODELS


# --- revisions -------------------------------------------------------------------------------------------------


def test_revision_as_a_branch_or_tag_in_refs(cache):
    write_snapshot(cache, MINILM, SHA_A, model_files(SHA_A), refs=("main",))
    files_b = model_files(SHA_B)
    snapshot_b = write_snapshot(cache, MINILM, SHA_B, files_b, refs=("v2", "refs/pr/1"))
    for revision in ("v2", "refs/pr/1"):
        resolved = resolve_source(MINILM, revision=revision)
        assert resolved.path == snapshot_b
        assert resolved.info["revision"] == revision
        assert resolved.info["commit"] == SHA_B
        assert resolved.info["files"]["model.safetensors"] == hashlib.sha256(files_b["model.safetensors"]).hexdigest()
    assert resolve_source(MINILM).info["commit"] == SHA_A


def test_revision_as_a_commit_sha_needs_no_ref(cache):
    snapshot_c = write_snapshot(cache, MINILM, SHA_C, model_files(SHA_C))  # no refs/ at all
    resolved = resolve_source(MINILM, revision=SHA_C)
    assert resolved.path == snapshot_c
    assert resolved.info["revision"] == resolved.info["commit"] == SHA_C
    with pytest.raises(HubModelNotFoundError, match="refs"):
        resolve_source(MINILM)  # main is not cached


@pytest.mark.parametrize("revision", ["../../etc", "/abs", "a//b", "v1/"])
def test_a_revision_that_is_no_ref_name_is_refused(cache, revision):
    with pytest.raises(ValueError, match="invalid revision"):
        resolve_source(MINILM, revision=revision)


# --- not cached, offline ---------------------------------------------------------------------------------------


def test_offline_with_nothing_cached_names_id_revision_cache_and_setting(cache):
    with pytest.raises(HubModelNotFoundError) as info:
        resolve_source("all-MiniLM-L6-v2", revision="v3")
    assert isinstance(info.value, FileNotFoundError)
    text = str(info.value)
    assert MINILM in text
    assert "revision v3" in text
    assert str(cache) in text
    assert "HF_HUB_OFFLINE=1" in text
    assert str(Path("all-MiniLM-L6-v2").absolute()) in text  # the local directory it looked for, too


def test_transformers_offline_also_stops_downloads(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    monkeypatch.setattr("huggingface_hub.snapshot_download", _must_not_download)
    with pytest.raises(HubModelNotFoundError, match="TRANSFORMERS_OFFLINE=yes"):
        resolve_source(MINILM)


def test_relative_path_that_does_not_exist_says_both_places(cache):
    """``models/x`` is ambiguous with ``org/name``: like sentence-transformers, it is tried as a hub id."""
    with pytest.raises(HubModelNotFoundError) as info:
        resolve_source("models/x")
    text = str(info.value)
    assert str(Path("models/x").absolute()) in text
    assert "models--models--x" in text


@pytest.mark.parametrize(
    ("drop", "lacks"),
    [
        (("model.safetensors",), "model.safetensors"),
        (("1_Pooling/config.json",), "1_Pooling/config.json"),
        (("modules.json",), "modules.json"),
        (("tokenizer.json", "vocab.txt"), "tokenizer.json or vocab.txt"),
        (("config.json",), "config.json"),
    ],
)
def test_a_snapshot_missing_needed_files_is_not_used(cache, drop, lacks):
    write_snapshot(cache, MINILM, SHA_A, model_files(SHA_A, drop), refs=("main",))
    with pytest.raises(HubModelNotFoundError, match="lacks") as info:
        resolve_source(MINILM)
    assert lacks in str(info.value)


def test_tokenizer_json_alone_or_vocab_alone_is_enough(cache):
    write_snapshot(cache, MINILM, SHA_A, model_files(SHA_A, ("vocab.txt",)), refs=("main",))
    assert "vocab.txt" not in resolve_source(MINILM).info["files"]
    write_snapshot(cache, "org/vocab-only", SHA_B, model_files(SHA_B, ("tokenizer.json",)), refs=("main",))
    assert "tokenizer.json" not in resolve_source("org/vocab-only").info["files"]


def test_pickle_only_snapshot_needs_allow_pickle(cache):
    files = model_files(SHA_A, ("model.safetensors",))
    files["pytorch_model.bin"] = b"pickle"
    write_snapshot(cache, MINILM, SHA_A, files, refs=("main",))
    with pytest.raises(HubModelNotFoundError, match=r"allow_pickle=True"):
        resolve_source(MINILM)
    resolved = resolve_source(MINILM, allow_pickle=True)
    assert resolved.info["files"]["pytorch_model.bin"] == hashlib.sha256(b"pickle").hexdigest()


def test_sharded_weights_need_every_shard(cache):
    files = model_files(SHA_A, ("model.safetensors",))
    shards = {"model-00001-of-00002.safetensors": b"one", "model-00002-of-00002.safetensors": b"two"}
    index = {
        "metadata": {},
        "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    write_snapshot(cache, MINILM, SHA_A, {**files, "model-00001-of-00002.safetensors": b"one"}, refs=("main",))
    with pytest.raises(HubModelNotFoundError, match=r"lacks model\.safetensors"):
        resolve_source(MINILM)
    write_snapshot(cache, MINILM, SHA_B, {**files, **shards}, refs=("main",))
    assert set(shards) < set(resolve_source(MINILM).info["files"])


def test_cached_model_needs_no_huggingface_hub(cache, monkeypatch):
    write_snapshot(cache, MINILM, SHA_A, model_files(SHA_A), refs=("main",))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub now raises ImportError
    assert resolve_source(MINILM).info["commit"] == SHA_A
    with pytest.raises(ImportError, match=r"pip install 'embedrt\[export\]'"):
        resolve_source("org/not-cached")


# --- the download ----------------------------------------------------------------------------------------------


class FakeHub:
    """Stands in for huggingface_hub.snapshot_download: records the call and 'downloads' from a listing."""

    def __init__(self, listing: dict[str, bytes], commit: str) -> None:
        self.listing, self.commit, self.calls = listing, commit, []

    def __call__(self, repo_id, *, revision=None, cache_dir=None, allow_patterns=None, ignore_patterns=None, **kw):
        from huggingface_hub.utils import filter_repo_objects

        self.calls.append(
            {
                "repo_id": repo_id,
                "revision": revision,
                "cache_dir": cache_dir,
                "allow_patterns": allow_patterns,
                "ignore_patterns": ignore_patterns,
                **kw,
            }
        )
        chosen = filter_repo_objects(self.listing, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns)
        refs = () if revision == self.commit else (revision,)
        return str(write_snapshot(Path(cache_dir), repo_id, self.commit, {n: self.listing[n] for n in chosen}, refs))


def _must_not_download(*args, **kwargs):
    raise AssertionError("snapshot_download must not be called")


@pytest.fixture
def online(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    listing = {**model_files(SHA_B), "pytorch_model.bin": b"pickle", "onnx/model_O4.onnx": b"onnx"}
    fake = FakeHub(listing, SHA_B)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake)
    return fake


def test_the_download_call_fits_huggingface_hubs_signature(cache, online):
    import huggingface_hub

    real = huggingface_hub._snapshot_download.snapshot_download  # the module's own, not the patched attribute
    resolve_source(MINILM, revision="v2", allow_pickle=True)
    (call,) = online.calls
    inspect.signature(real).bind(call.pop("repo_id"), **call)


def test_download_fetches_only_the_needed_files(cache, online):
    resolved = resolve_source("all-MiniLM-L6-v2", revision="v2")
    (call,) = online.calls
    assert call["repo_id"] == MINILM
    assert call["revision"] == "v2"
    assert call["cache_dir"] == str(cache)
    assert call["allow_patterns"] == allow_patterns(allow_pickle=False)
    assert call["ignore_patterns"] == list(IGNORE_PATTERNS)
    snapshot = cache / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / SHA_B
    assert resolved.path == snapshot
    assert {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()} == NEEDED
    assert resolved.info == {
        "hub_id": MINILM,
        "revision": "v2",
        "commit": SHA_B,
        "files": expected_hashes(online.listing),
    }
    # the download wrote refs/v2: the next resolution is from the cache alone
    online.calls.clear()
    assert resolve_source(MINILM, revision="v2") == resolved
    assert online.calls == []


def test_download_with_allow_pickle_asks_for_pickle_weights(cache, online):
    resolved = resolve_source(MINILM, allow_pickle=True)
    assert "pytorch_model.bin" in online.calls[0]["allow_patterns"]
    assert resolved.info["revision"] == "main"
    assert resolved.info["files"]["pytorch_model.bin"] == hashlib.sha256(b"pickle").hexdigest()


def test_an_incomplete_cached_snapshot_is_completed_by_a_download(cache, online):
    write_snapshot(cache, MINILM, SHA_A, model_files(SHA_A, ("model.safetensors",)), refs=("main",))
    resolved = resolve_source(MINILM)
    assert len(online.calls) == 1
    assert resolved.info["commit"] == SHA_B


def test_a_cached_model_is_not_downloaded_again(cache, monkeypatch):
    write_snapshot(cache, MINILM, SHA_A, model_files(SHA_A), refs=("main",))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.snapshot_download", _must_not_download)
    assert resolve_source(MINILM).info["commit"] == SHA_A


def test_a_failed_download_is_reported_with_its_error(cache, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.snapshot_download", unreachable)
    with pytest.raises(HubModelNotFoundError) as info:
        resolve_source("org/name", revision="v1")
    text = str(info.value)
    assert "org/name" in text
    assert "revision v1" in text
    assert str(cache) in text
    assert "ConnectionError: hub unreachable" in text
    assert isinstance(info.value.__cause__, ConnectionError)


def test_a_download_without_modules_json_is_no_sentence_transformers_model(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    fake = FakeHub({"config.json": b"{}", "model.safetensors": b"w", "README.md": b"x"}, SHA_C)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake)
    with pytest.raises(HubModelNotFoundError, match="not a sentence-transformers model"):
        resolve_source("bert-base-uncased")
    assert fake.calls[0]["repo_id"] == "bert-base-uncased"


# --- which files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listing", "needed", "pickle"),
    [
        (MINILM_LISTING, MINILM_NEEDED, ["pytorch_model.bin"]),
        (LABSE_LISTING, LABSE_NEEDED, ["2_Dense/pytorch_model.bin", "pytorch_model.bin"]),
        (OLD_LISTING, OLD_NEEDED, ["0_Transformer/pytorch_model.bin"]),
        (SHARDED_LISTING, SHARDED_NEEDED, SHARDED_PICKLE),
    ],
    ids=["minilm", "labse", "old-layout", "sharded"],
)
def test_allow_patterns_keep_exactly_the_needed_files(listing, needed, pickle):
    from huggingface_hub.utils import filter_repo_objects

    for allow_pickle, expected in ((False, needed), (True, sorted(needed + pickle))):
        kept = filter_repo_objects(
            listing, allow_patterns=allow_patterns(allow_pickle), ignore_patterns=IGNORE_PATTERNS
        )
        assert sorted(kept) == sorted(expected)
        # the stdlib twin used on cached and local directories agrees with huggingface_hub's filter
        assert sorted(name for name in listing if is_needed(name, allow_pickle)) == sorted(expected)


def test_required_files_are_among_the_downloaded_ones():
    """What makes a snapshot usable is always fetched: else a download could never complete one."""
    required = [
        "modules.json",
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "model.safetensors",
        "model.safetensors.index.json",
        "1_Pooling/config.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
        "0_Transformer/config.json",
        "0_Transformer/vocab.txt",
        "0_Transformer/model.safetensors",
        "11_Dense/config.json",
    ]
    for name in required:
        assert is_needed(name), name
    assert not is_needed("pytorch_model.bin")
    assert is_needed("pytorch_model.bin", allow_pickle=True)


# --- cache location and offline switch, as huggingface_hub reads them ------------------------------------------

_HF_CONSTANTS = """
import importlib, json, os, sys
from huggingface_hub import constants
out = []
for env in json.loads(sys.argv[1]):
    for key in json.loads(sys.argv[2]):
        os.environ.pop(key, None)
    os.environ.update(env)
    importlib.reload(constants)
    out.append([constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE])
print(json.dumps(out))
"""


def test_cache_dir_and_offline_follow_huggingface_hub(tmp_path, monkeypatch):
    cases = [
        {},
        {"XDG_CACHE_HOME": str(tmp_path / "xdg")},
        {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HF_HOME": str(tmp_path / "hf-home")},
        {"HF_HOME": "~/hf-home", "HUGGINGFACE_HUB_CACHE": str(tmp_path / "legacy")},
        {"HUGGINGFACE_HUB_CACHE": str(tmp_path / "legacy"), "HF_HUB_CACHE": "~/hub-cache"},
        {"HF_HUB_CACHE": "$EMBEDRT_TEST_DIR/c", "EMBEDRT_TEST_DIR": str(tmp_path / "var")},
        {"HF_HUB_OFFLINE": "1"},
        {"HF_HUB_OFFLINE": "yes"},
        {"HF_HUB_OFFLINE": "True"},
        {"HF_HUB_OFFLINE": "on"},
        {"HF_HUB_OFFLINE": "0"},
        {"HF_HUB_OFFLINE": "false"},
        {"HF_HUB_OFFLINE": ""},
        {"TRANSFORMERS_OFFLINE": "1"},
        {"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "1"},
        {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"},
    ]
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    run = subprocess.run(
        [sys.executable, "-c", _HF_CONSTANTS, json.dumps(cases), json.dumps(ENV_KEYS)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    for env, (cache_dir, offline) in zip(cases, json.loads(run.stdout), strict=True):
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            assert hub.hub_cache_dir() == Path(cache_dir), env
            assert (hub.offline_setting() is not None) == offline, env


# --- local directories and the default model -------------------------------------------------------------------


def test_a_local_directory_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = tmp_path / "my-model"
    files = model_files(SHA_A)
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    resolved = resolve_source(source)
    assert resolved.path == source
    assert resolved.name == "my-model"
    assert resolved.info == {"path": str(source), "files": expected_hashes(files)}
    monkeypatch.chdir(tmp_path)
    assert resolve_source("my-model").path == Path("my-model")  # a directory wins over the hub id it could be
    with pytest.raises(ValueError, match="revision 'v2' applies to hub ids"):
        resolve_source(source, revision="v2")


def test_the_default_is_the_packaged_model():
    resolved = resolve_source(None)
    path = default_model_path()
    assert resolved.path == path
    assert resolved.name == DEFAULT_NAME
    assert set(resolved.info) == {"path", "files"}
    assert set(resolved.info["files"]) == NEEDED
    assert resolved.info["files"]["vocab.txt"] == hashlib.sha256((path / "vocab.txt").read_bytes()).hexdigest()


def test_an_empty_source_is_refused(cache):
    with pytest.raises(FileNotFoundError, match="empty model source"):
        resolve_source("")


@pytest.mark.parametrize("src", ["./foo/bar", "a/b/c", "./missing"])
def test_a_path_that_does_not_exist_is_a_clear_error(cache, src):
    with pytest.raises(FileNotFoundError, match="no such model directory") as info:
        resolve_source(src)
    assert src in str(info.value)


def test_an_existing_file_is_not_a_model(cache):
    Path("model.safetensors").write_bytes(b"w")
    with pytest.raises(FileNotFoundError, match="is a file"):
        resolve_source("model.safetensors")


# --- a plain Hugging Face cross-encoder ------------------------------------------------------------------------


CROSS_ENCODER = "cross-encoder/ms-marco-tiny-L2"


def _plain_cross_encoder_files(tmp_path: Path, minilm_dir: Path) -> dict[str, bytes]:
    """The files of a hub cross-encoder/ms-marco-* repo: config.json (BertForSequenceClassification), tokenizer
    files, model.safetensors, no modules.json; a tiny random model, plus files no export reads."""
    saved = save_hf_cross_encoder(tmp_path / "saved", minilm_dir, num_labels=1)
    files = {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()}
    files.update({"README.md": b"# model card", "onnx/model.onnx": b"onnx", "pytorch_model.bin": b"pickle"})
    return files


def test_a_plain_hf_cross_encoder_resolves_from_the_cache(cache, tmp_path, minilm_dir, monkeypatch):
    monkeypatch.setattr("huggingface_hub.snapshot_download", _must_not_download)
    files = _plain_cross_encoder_files(tmp_path, minilm_dir)
    snapshot = write_snapshot(cache, CROSS_ENCODER, SHA_A, files, refs=("main",))
    resolved = resolve_source(CROSS_ENCODER)
    assert resolved.path == snapshot
    assert set(resolved.info["files"]) == {
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    }


@pytest.mark.parametrize(("drop", "lacks"), [("model.safetensors", "model.safetensors"), ("vocab.txt", "vocab.txt")])
def test_a_plain_hf_cross_encoder_missing_files_is_not_used(cache, tmp_path, minilm_dir, drop, lacks):
    files = _plain_cross_encoder_files(tmp_path, minilm_dir)
    files.pop(drop)
    if drop == "vocab.txt":
        files.pop("tokenizer.json")
    write_snapshot(cache, CROSS_ENCODER, SHA_A, files, refs=("main",))
    with pytest.raises(HubModelNotFoundError, match=lacks):
        resolve_source(CROSS_ENCODER)


def test_a_plain_hf_model_that_is_no_cross_encoder_still_needs_modules_json(cache):
    write_snapshot(cache, "org/bert", SHA_A, {"config.json": b'{"architectures": ["BertModel"]}'}, refs=("main",))
    with pytest.raises(HubModelNotFoundError, match=r"lacks modules\.json"):
        resolve_source("org/bert")


def test_a_download_of_a_plain_hf_cross_encoder_is_accepted(cache, tmp_path, minilm_dir, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    fake = FakeHub(_plain_cross_encoder_files(tmp_path, minilm_dir), SHA_C)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake)
    resolved = resolve_source(CROSS_ENCODER)
    assert resolved.info["commit"] == SHA_C
    assert "pytorch_model.bin" not in resolved.info["files"]  # never fetched without allow_pickle


def test_a_plain_hf_cross_encoder_exports_by_hub_id_offline(cache, tmp_path, minilm_dir, monkeypatch):
    """The case of cross-encoder/ms-marco-MiniLM-L6-v2: exported from the cache, no network, and it scores."""
    from embedrt import Reranker
    from embedrt.export import export

    monkeypatch.setattr("huggingface_hub.snapshot_download", _must_not_download)
    write_snapshot(cache, CROSS_ENCODER, SHA_A, _plain_cross_encoder_files(tmp_path, minilm_dir), refs=("main",))
    out = export(CROSS_ENCODER, tmp_path / "exported", variants=("fp32",), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "cross-encoder"
    assert (manifest["source"]["hub_id"], manifest["source"]["commit"]) == (CROSS_ENCODER, SHA_A)
    scores = Reranker.load(out).predict([("a question", "an answer"), ("a question", "something else")])
    assert len(scores) == 2
