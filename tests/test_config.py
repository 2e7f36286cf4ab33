"""Config files in both sentence-transformers formats, resolved as sentence-transformers resolves them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import clone_dir, edit_json

from embedrt.config import ModelConfig, PoolingConfig, PoolingMode, SimilarityFn


def _st(model_dir: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


def test_old_format_packaged_model(minilm_dir):
    config = ModelConfig.from_dir(minilm_dir)
    assert config.max_seq_length == _st(minilm_dir).max_seq_length == 256
    assert config.pooling.modes == (PoolingMode.MEAN,)
    assert config.pooling.dimension == 384
    assert config.normalize
    assert config.sentence_transformer.similarity_fn is SimilarityFn.COSINE


def test_new_format_saved_by_installed_sentence_transformers(minilm_dir, tmp_path):
    model = _st(minilm_dir)
    model.save(str(tmp_path / "saved"))
    modules = json.loads((tmp_path / "saved" / "modules.json").read_text())
    assert "sentence_transformers.models." not in json.dumps(modules)  # really the new format
    config = ModelConfig.from_dir(tmp_path / "saved")
    assert config.max_seq_length == model.max_seq_length == 256
    assert config.pooling.modes == (PoolingMode.MEAN,)
    assert config.normalize


@pytest.mark.parametrize(
    ("sbert", "tokenizer_config"),
    [
        ({"max_seq_length": 100}, {}),  # explicit limit wins
        ({"max_seq_length": None}, {"model_max_length": 48}),  # tokenizer limit below the position table
        ({"max_seq_length": None}, {"model_max_length": 1000}),  # capped at max_position_embeddings
        ({"max_seq_length": None}, {"model_max_length": None}),  # no tokenizer limit at all
    ],
)
def test_max_seq_length_resolution_matches_reference(tiny_model_dir, tmp_path, sbert, tokenizer_config):
    model_dir = clone_dir(tiny_model_dir, tmp_path / "m")
    edit_json(model_dir / "sentence_bert_config.json", **sbert)
    edit_json(model_dir / "tokenizer_config.json", **tokenizer_config)
    assert ModelConfig.from_dir(model_dir).max_seq_length == _st(model_dir).max_seq_length


def test_legacy_pooling_flags(tmp_path):
    path = tmp_path / "config.json"
    legacy = {"word_embedding_dimension": 8, "pooling_mode_max_tokens": True, "pooling_mode_cls_token": True}
    config = PoolingConfig.from_dict(legacy, path)
    assert config.modes == (PoolingMode.CLS, PoolingMode.MAX)
    assert config.output_dimension == 16
    assert PoolingConfig.from_dict({"word_embedding_dimension": 8}, path).modes == (PoolingMode.MEAN,)


def test_new_pooling_config_with_list_and_include_prompt(tmp_path):
    data = {"embedding_dimension": 8, "pooling_mode": ["mean", "lasttoken"], "include_prompt": False}
    config = PoolingConfig.from_dict(data, tmp_path / "config.json")
    assert config.modes == (PoolingMode.MEAN, PoolingMode.LASTTOKEN)
    assert not config.include_prompt


def test_bad_pooling_mode_names_value_options_and_file(tmp_path):
    with pytest.raises(ValueError, match=r"config\.json.*'median'.*'mean'"):
        PoolingConfig.from_dict({"embedding_dimension": 8, "pooling_mode": "median"}, tmp_path / "config.json")


def test_unsupported_module_is_refused(tiny_model_dir, tmp_path):
    model_dir = clone_dir(tiny_model_dir, tmp_path / "m")
    modules = json.loads((model_dir / "modules.json").read_text())
    lstm = {"idx": 3, "name": "3", "path": "3_LSTM", "type": "sentence_transformers.models.LSTM"}
    (model_dir / "modules.json").write_text(json.dumps([*modules, lstm]))
    with pytest.raises(ValueError, match=r"modules\.json.*LSTM.*Transformer, Pooling, Dense, Normalize"):
        ModelConfig.from_dir(model_dir)
    # Dense after Normalize is not a pipeline sentence-transformers models have.
    dense = {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    (model_dir / "modules.json").write_text(json.dumps([*modules, dense]))
    with pytest.raises(
        ValueError,
        match=r"expected Transformer -> Pooling \[-> Dense \.\.\.\] \[-> Normalize\], found "
        r"Transformer -> Pooling -> Normalize -> Dense",
    ):
        ModelConfig.from_dir(model_dir)


def test_missing_modules_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"modules\.json"):
        ModelConfig.from_dir(tmp_path)


def test_prompts_and_similarity(tiny_model_dir, tmp_path):
    model_dir = clone_dir(tiny_model_dir, tmp_path / "m")
    edit_json(
        model_dir / "config_sentence_transformers.json",
        prompts={"query": "query: "},
        default_prompt_name="query",
        similarity_fn_name="dot",
    )
    st = ModelConfig.from_dir(model_dir).sentence_transformer
    assert st.prompts == {"query": "query: "}
    assert st.default_prompt_name == "query"
    assert st.similarity_fn is SimilarityFn.DOT
    edit_json(model_dir / "config_sentence_transformers.json", similarity_fn_name="jaccard")
    with pytest.raises(ValueError, match="jaccard"):
        ModelConfig.from_dir(model_dir)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("modules.json", "[{", r"modules\.json is not valid JSON"),
        ("modules.json", '{"a": 1}', r"modules\.json must hold a JSON list, found object"),
        ("modules.json", "[3]", r"modules\.json: module 0 must be a JSON object, found integer"),
        ("modules.json", '[{"path": ""}]', r"modules\.json: module 0: missing 'type'"),
        ("tokenizer.json", "not json", r"tokenizer\.json is not valid JSON"),
        ("tokenizer.json", b"\xff\xfe", r"tokenizer\.json is not UTF-8 text"),
        ("tokenizer_config.json", "[1, 2", r"tokenizer_config\.json is not valid JSON"),
        ("tokenizer_config.json", '["a list"]', r"tokenizer_config\.json must hold a JSON object, found list"),
        ("1_Pooling/config.json", "{", r"1_Pooling/config\.json is not valid JSON"),
    ],
)
def test_malformed_config_files_name_the_file(tiny_export, tmp_path, name, content, message):
    from embedrt import Encoder

    model = clone_dir(tiny_export, tmp_path / "model")
    path = model / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message):
        Encoder.load(model)


def test_missing_keys_are_named_with_their_file(tiny_export, tmp_path):
    from embedrt import Encoder
    from embedrt.tokenizer import Tokenizer

    model = clone_dir(tiny_export, tmp_path / "model")
    data = json.loads((model / "tokenizer.json").read_text())
    del data["model"]["vocab"]
    (model / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"tokenizer\.json: model: missing 'vocab'"):
        Tokenizer.from_dir(model)
    del data["post_processor"]["single"][0]["SpecialToken"]["id"]
    data["model"]["vocab"] = {"[UNK]": 0}
    (model / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"tokenizer\.json: post_processor\.single: missing 'id'"):
        Tokenizer.from_dir(model)
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    del manifest["variants"]["fp32"]["sha256"]
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"manifest\.json: variants\.fp32: missing 'sha256'"):
        Encoder.load(model)
