"""Encoder behaviour against sentence-transformers, on the tiny random model (fast)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import MODEL_CARD_SENTENCES, clone_dir, drop_normalize, edit_json, reference_encode

from embedrt import Encoder

TEXTS = [
    *MODEL_CARD_SENTENCES,
    "",
    "a",
    "A much longer sentence that goes on and on to make this batch carry some padding for the others. " * 3,
    "Ünïcödé, CJK 東京, emoji 🚀 and [SEP] inside.",
    "short one",
]


@pytest.fixture(scope="module")
def tiny(tiny_export):
    return Encoder.load(tiny_export)


def _pair(tmp_path, tiny_model_dir, tiny_export, edit):
    """A source model and its export, both changed by ``edit`` (config-only changes keep the ONNX file)."""
    source = clone_dir(tiny_model_dir, tmp_path / "source")
    export = clone_dir(tiny_export, tmp_path / "export")
    edit(source)
    edit(export)
    return source, export


def test_matches_reference(tiny, tiny_model_dir):
    expected = reference_encode(tiny_model_dir, TEXTS)
    got = tiny.encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_long_text_is_truncated_like_the_reference(tiny, tiny_model_dir):
    text = "word " * 500
    assert tiny.tokenize([text])["input_ids"].shape == (1, tiny.max_seq_length)
    np.testing.assert_allclose(tiny.encode(text), reference_encode(tiny_model_dir, [text])[0], atol=1e-5)


def test_single_string_empty_list_and_order(tiny):
    batch = tiny.encode(TEXTS, batch_size=2)
    assert tiny.encode(TEXTS[1]).shape == (32,)
    np.testing.assert_allclose(tiny.encode(TEXTS[1]), batch[1], atol=1e-6)
    assert tiny.encode([]).shape == (0, 32)
    reversed_batch = tiny.encode(TEXTS[::-1], batch_size=3)
    np.testing.assert_allclose(reversed_batch[::-1], batch, atol=1e-6)
    assert tiny.encode(tuple(TEXTS)).shape == batch.shape


def test_token_budget_splits_long_batches_without_changing_results(tiny_export):
    texts = ["word " * n for n in (60, 3, 45, 1, 20, 60, 7)]
    expected = Encoder.load(tiny_export, max_batch_tokens=10**6).encode(texts, batch_size=7)
    encoder = Encoder.load(tiny_export, max_batch_tokens=64)
    calls = []
    run = encoder._run_batch
    encoder._run_batch = lambda ids, prompt_length: calls.append(len(ids)) or run(ids, prompt_length)
    np.testing.assert_allclose(encoder.encode(texts, batch_size=7), expected, atol=1e-6)
    assert calls == [1, 1, 1, 2, 2]  # widths 62, 62, 47, then 22 + 9, then 5 + 3 (<= 64 tokens a call)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        Encoder.load(tiny_export, max_batch_tokens=0)


def test_workers_run_batches_at_once_and_keep_input_order(tiny_export, tiny_model_dir):
    texts = [f"{t} number {i}" for i in range(20) for t in TEXTS]
    encoder = Encoder.load(tiny_export, threads=1, workers=3)
    names: set[str] = set()
    run = encoder._run_batch
    encoder._run_batch = lambda ids, prompt_length: (
        names.add(threading.current_thread().name) or run(ids, prompt_length)
    )
    np.testing.assert_allclose(encoder.encode(texts, batch_size=4), reference_encode(tiny_model_dir, texts), atol=1e-5)
    assert len(names) > 1 and all(name.startswith("embedrt") for name in names)
    names.clear()
    encoder.encode(texts[:3])  # one batch runs on the calling thread
    assert names == {threading.current_thread().name}
    assert encoder.encode([]).shape == (0, 32)  # no batches: no pool of zero threads
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        Encoder.load(tiny_export, workers=0)


def test_a_failing_batch_stops_the_queued_ones(tiny_export):
    encoder = Encoder.load(tiny_export, threads=1, workers=2)
    calls = []

    def fail(ids, prompt_length):
        calls.append(len(ids))
        time.sleep(0.2)
        raise RuntimeError("batch failed")

    encoder._run_batch = fail
    with pytest.raises(RuntimeError, match="batch failed"):
        encoder.encode(["text"] * 100, batch_size=2)
    # The two first batches fail together; each worker may take one more batch before the caller (woken at the
    # first failure, with 0.2 s to spare) cancels the other 46. Nothing more may start.
    time.sleep(0.5)
    assert 2 <= len(calls) <= 4, calls


def test_properties(tiny, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(tiny_model_dir), device="cpu")
    assert tiny.dimension == reference.get_sentence_embedding_dimension() == 32
    assert tiny.max_seq_length == reference.max_seq_length == 64
    assert tiny.providers == ["CPUExecutionProvider"]


def test_tokenize_matches_reference(tiny, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(tiny_model_dir), device="cpu").tokenize(TEXTS)
    got = tiny.tokenize(TEXTS)
    for key in ("input_ids", "attention_mask"):
        assert got[key].dtype == np.int64
        np.testing.assert_array_equal(got[key], expected[key].numpy())


def test_model_without_normalize(tmp_path, tiny_model_dir, tiny_export):
    source, export = _pair(tmp_path, tiny_model_dir, tiny_export, drop_normalize)
    encoder = Encoder.load(export)
    got = encoder.encode(TEXTS)
    np.testing.assert_allclose(got, reference_encode(source, TEXTS), atol=1e-5)
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)
    np.testing.assert_allclose(
        encoder.encode(TEXTS, normalize_embeddings=True),
        reference_encode(source, TEXTS, normalize_embeddings=True),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "pooling",
    [
        {"pooling_mode": "cls"},
        {"pooling_mode": "max"},
        {"pooling_mode": "mean_sqrt_len_tokens"},
        {"pooling_mode": "weightedmean"},
        {"pooling_mode": "lasttoken"},
        {"pooling_mode": ["cls", "mean", "max"]},
    ],
)
def test_pooling_modes(tmp_path, tiny_model_dir, tiny_export, pooling):
    def edit(model_dir):
        drop_normalize(model_dir)
        edit_json(model_dir / "1_Pooling" / "config.json", **pooling)

    source, export = _pair(tmp_path, tiny_model_dir, tiny_export, edit)
    np.testing.assert_allclose(Encoder.load(export).encode(TEXTS), reference_encode(source, TEXTS), atol=1e-5)


@pytest.mark.parametrize("max_seq_length", [8, 16, 128])
def test_max_seq_length(tmp_path, tiny_model_dir, tiny_export, max_seq_length):
    def edit(model_dir):
        edit_json(model_dir / "tokenizer_config.json", model_max_length=max_seq_length)

    source, export = _pair(tmp_path, tiny_model_dir, tiny_export, edit)
    encoder = Encoder.load(export)
    assert encoder.max_seq_length == max_seq_length
    np.testing.assert_allclose(encoder.encode(TEXTS), reference_encode(source, TEXTS), atol=1e-5)


@pytest.mark.parametrize("max_seq_length", [5, 16, 128])
def test_max_seq_length_at_load_is_sentence_transformers_attribute(tiny_export, tiny_model_dir, max_seq_length):
    """Encoder.load(max_seq_length=N) truncates as setting ``model.max_seq_length = N`` does, below or above the
    model's own 64 (up to its 128 positions)."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(tiny_model_dir), device="cpu")
    reference.max_seq_length = max_seq_length
    encoder = Encoder.load(tiny_export, max_seq_length=max_seq_length)
    assert encoder.max_seq_length == max_seq_length
    texts = [*TEXTS, "word " * 200]
    np.testing.assert_allclose(encoder.encode(texts), reference.encode(texts), atol=1e-5)
    assert encoder.embed(["word " * 200]).tokens == [max_seq_length]


@pytest.mark.parametrize("bad", [0, -1, 129, True, 1.5])
def test_max_seq_length_at_load_must_fit_the_positions(tiny_export, bad):
    with pytest.raises(ValueError, match=r"max_seq_length") as caught:
        Encoder.load(tiny_export, max_seq_length=bad)
    if bad == 129:
        assert "128 tokens the model can place" in str(caught.value) and "config.json" in str(caught.value)


def test_prompts_and_include_prompt(tmp_path, tiny_model_dir, tiny_export):
    def edit(model_dir):
        edit_json(model_dir / "config_sentence_transformers.json", prompts={"query": "query: ", "doc": "passage: "})
        edit_json(model_dir / "1_Pooling" / "config.json", include_prompt=False)

    source, export = _pair(tmp_path, tiny_model_dir, tiny_export, edit)
    encoder = Encoder.load(export)
    for kwargs in ({"prompt_name": "query"}, {"prompt": "Represent this: "}, {}):
        np.testing.assert_allclose(
            encoder.encode(TEXTS, **kwargs),
            reference_encode(source, TEXTS, **kwargs),
            atol=1e-5,
            err_msg=str(kwargs),
        )
    with pytest.raises(ValueError, match=r"'nope'.*\['doc', 'query'\]"):
        encoder.encode(TEXTS, prompt_name="nope")


def test_truncate_dim_and_precision(tiny, tiny_model_dir):
    np.testing.assert_allclose(
        tiny.encode(TEXTS, truncate_dim=8), reference_encode(tiny_model_dir, TEXTS, truncate_dim=8), atol=1e-5
    )
    for precision in ("int8", "uint8", "binary", "ubinary"):
        expected = reference_encode(tiny_model_dir, TEXTS, precision=precision)
        got = tiny.encode(TEXTS, precision=precision)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        if precision.endswith("int8"):
            # A value on a bucket edge may land one bucket over (the model's float rounding differs).
            assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
        else:
            np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="truncate_dim"):
        tiny.encode(TEXTS, truncate_dim=33)


@pytest.mark.parametrize("fn", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_matches_the_reference(tmp_path, tiny_model_dir, tiny_export, fn):
    from sentence_transformers import SentenceTransformer

    def edit(model_dir):
        drop_normalize(model_dir)  # unnormalized vectors, so cosine and dot differ
        edit_json(model_dir / "config_sentence_transformers.json", similarity_fn_name=fn)

    source, export = _pair(tmp_path, tiny_model_dir, tiny_export, edit)
    encoder = Encoder.load(export)
    a, b = encoder.encode(TEXTS[:5]), encoder.encode(TEXTS[3:])
    reference = SentenceTransformer(str(source), device="cpu")
    assert reference.similarity_fn_name == fn
    expected = reference.similarity(a, b).numpy()
    got = encoder.similarity(a, b)
    assert got.shape == (5, len(TEXTS) - 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(encoder.similarity(a[0], b), expected[:1], rtol=1e-5, atol=1e-5)  # a 1-D vector


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["ok", None], r"texts\[1\] is NoneType; expected str"),
        (["ok", "fine", b"bytes"], r"texts\[2\] is bytes; expected str"),
        ([3.5], r"texts\[0\] is float; expected str"),
        (["a", ["nested"]], r"texts\[1\] is list; expected str"),
        (None, r"texts must be a list or tuple of str, got NoneType"),
        (b"raw", r"got bytes"),
        ({"a": 1}, r"got dict"),
    ],
)
def test_bad_input_names_the_index(tiny, bad, message):
    with pytest.raises(TypeError, match=message):
        tiny.encode(bad)
    with pytest.raises(TypeError, match=message):
        tiny.tokenize(bad)


def test_lone_surrogate_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match=r"texts\[1\] contains a lone surrogate U\+D800 at position 1"):
        tiny.encode(["fine", "a\ud800b"])


def test_bad_arguments(tiny):
    with pytest.raises(ValueError, match="batch_size"):
        tiny.encode(TEXTS, batch_size=0)
    with pytest.raises(ValueError, match=r"unknown variant 'fp8'; expected one of fp32, fp16, int8"):
        Encoder.load(tiny.model_dir, variant="fp8")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Encoder.load(tiny.model_dir, device="tpu")


def test_cuda_without_cuda_is_a_clear_error(tiny):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(RuntimeError, match="device='cuda' but onnxruntime offers only"):
        Encoder.load(tiny.model_dir, device="cuda")
    assert Encoder.load(tiny.model_dir, device="auto").providers == ["CPUExecutionProvider"]


@pytest.mark.gpu
def test_cuda_runs_fp16(tiny_model_dir, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("no CUDA in this onnxruntime")
    from embedrt.export import export

    out = export(tiny_model_dir, tmp_path / "gpu", variants=("fp16",))
    encoder = Encoder.load(out, device="cuda")
    assert encoder.providers[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(encoder.encode(TEXTS), reference_encode(tiny_model_dir, TEXTS), atol=5e-3)


def test_eight_threads_share_one_encoder(tiny):
    texts = [f"{t} number {i}" for i in range(40) for t in TEXTS[:4]]
    serial = tiny.encode(texts, batch_size=7)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(3):
                results[k] = tiny.encode(texts[k:] + texts[:k], batch_size=5 + k)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k, got in results.items():
        np.testing.assert_allclose(got, np.concatenate([serial[k:], serial[:k]]), atol=1e-5)
