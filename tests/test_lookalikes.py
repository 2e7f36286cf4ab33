"""Lookalikes are refused: models that declare a supported model_type but need custom code that embedrt does not run
(jina-embeddings-v2 and jina-reranker-v1 declare ``"model_type": "bert"``; their ALiBi + GEGLU layers come from
``auto_map`` code), and sentence-transformers modules that are not one of ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import clone_dir, edit_json

from embedrt.config import DenseConfig, ModulesConfig
from embedrt.export import export

JINA_AUTO_MAP = {
    "AutoConfig": "jinaai/jina-bert-implementation--configuration_bert.JinaBertConfig",
    "AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel",
}


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"auto_map": JINA_AUTO_MAP}, "'auto_map'"),
        ({"position_embedding_type": "alibi"}, "'position_embedding_type' is 'alibi'"),
        ({"position_embedding_type": "relative_key"}, "'position_embedding_type' is 'relative_key'"),
        ({"architectures": ["JinaBertForMaskedLM"]}, "'architectures' holds ['JinaBertForMaskedLM']"),
        ({"architectures": "BertModel"}, "'architectures' holds 'BertModel'"),
    ],
)
def test_a_bert_lookalike_is_refused_naming_the_file_and_key(tiny_model_dir, tmp_path, changes, key):
    source = clone_dir(tiny_model_dir, tmp_path / "src")
    edit_json(source / "config.json", **changes)
    with pytest.raises(ValueError) as refused:
        export(source, tmp_path / "out", variants="fp32", progress=False)
    message = str(refused.value)
    assert str(source / "config.json") in message and key in message, message
    assert "custom code" in message or "absolute" in message
    assert not (tmp_path / "out").exists()


def test_transformers_own_bert_classes_are_accepted(tiny_model_dir, tmp_path):
    source = clone_dir(tiny_model_dir, tmp_path / "src")
    edit_json(source / "config.json", architectures=["BertForMaskedLM"], position_embedding_type="absolute")
    assert (export(source, tmp_path / "out", variants="fp32", progress=False) / "manifest.json").is_file()


@pytest.mark.parametrize(
    "type_name",
    [
        "sentence_transformers.models.Router",
        "sentence_transformers.models.StaticEmbedding",
        "sentence_transformers.sparse_encoder.models.SpladePooling",
        "my_package.modules.Transformer",  # one of our names, outside sentence-transformers: custom code
    ],
)
def test_a_module_that_is_not_ours_is_refused(tmp_path, type_name):
    path = tmp_path / "modules.json"
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": type_name},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    path.write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="does not run custom module code") as refused:
        ModulesConfig.from_file(path)
    assert str(path) in str(refused.value) and repr(type_name) in str(refused.value)


def test_both_module_name_formats_still_load(tmp_path):
    path = tmp_path / "modules.json"
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.base.modules.pooling.Pooling"},
    ]
    path.write_text(json.dumps(modules))
    assert len(ModulesConfig.from_file(path).modules) == 2


def test_a_residual_dense_is_refused():
    config = {"in_features": 4, "out_features": 4, "bias": True, "use_residual": True}
    with pytest.raises(ValueError, match=r"2_Dense/config.json: 'use_residual' is true"):
        DenseConfig.from_dict(config, Path("2_Dense/config.json"))
    assert DenseConfig.from_dict({**config, "use_residual": False}, Path("c")).out_features == 4
