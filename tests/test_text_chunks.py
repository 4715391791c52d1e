"""--long_text=chunks: the cutting itself, the pooling layer, and a tiny BERT run whose long
texts get one answer in Python, from the SavedModel and from its ONNX / TFLite copies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config, preflight
from ktransfer.config import ExportConfig, SearchConfig, TuneConfig
from ktransfer.deploy.prediction import predict_run
from ktransfer.deploy.serving import export_saved
from ktransfer.errors import ConfigError
from ktransfer.text.chunks import Chunking, ChunkPool, split, trim_chunks

from conftest import serve_texts, text_values

LONG = ("great superb film " * 6 + "awful boring plot",
        "awful boring dull plot " * 5 + "a lovely film")


def _packed(n: int, length: int) -> dict[str, tf.Tensor]:
    """One text of word pieces 10..10+n-1 packed as BERT packs it: [CLS]=2 ... [SEP]=3, pad 0."""
    ids = [2, *range(10, 10 + n), 3] + [0] * (length - n - 2)
    return {"token_ids": tf.constant([ids]), "padding_mask": tf.constant([ids]) != 0}


@pytest.mark.parametrize("n", [1, 6, 7, 11, 30])
def test_chunks_cover_the_text_in_windows_packed_like_a_short_text(n):
    c = Chunking(length=8, stride=4, max_chunks=4)  # windows of 6 pieces, starting every 4
    chunks = split(_packed(n, c.span + 2), "padding_mask", c, {"token_ids": 0,
                                                               "padding_mask": False})
    ids = chunks["token_ids"].numpy()[0]
    real = [row for k, row in enumerate(ids) if k == 0 or (row != 0).sum() > 2]
    assert len(real) == c.count(n)
    pieces = list(range(10, 10 + min(n, c.span)))
    for k, row in enumerate(real):
        window = pieces[k * 4:k * 4 + 6]
        assert list(row) == [2, *window, 3] + [0] * (6 - len(window))
    assert set(pieces) == {p for row in real for p in row if p >= 10}  # nothing skipped
    mask = chunks["padding_mask"].numpy()[0]
    np.testing.assert_array_equal(mask, ids != 0)
    assert trim_chunks(chunks, "padding_mask")["token_ids"].shape[1] == len(real)


def test_chunk_pool_averages_or_takes_the_maximum_of_real_chunks_only():
    parts = np.array([[0.8, 0.2], [0.4, 0.6], [0.0, 1.0]], "float32")  # 1 text, 3 chunks
    tokens = np.array([[[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]]])  # the third is padding
    mean = ChunkPool("mean")(parts, tokens).numpy()
    np.testing.assert_allclose(mean, [[0.6, 0.4]], atol=1e-6)
    top = ChunkPool("max", rescale=True)(parts, tokens).numpy()
    np.testing.assert_allclose(top, [[0.8 / 1.4, 0.6 / 1.4]], atol=1e-6)


def test_chunk_flags_are_checked_before_any_work(tiny_bert, tmp_path):
    with pytest.raises(ConfigError, match="--max_chunks: is for --long_text=chunks"):
        config.build(**text_values(tmp_path, tiny_bert, max_chunks=4))
    with pytest.raises(ConfigError, match=r"--chunk_stride: must be in \[0, 6\]"):
        config.build(**text_values(tmp_path, tiny_bert, max_length=8, long_text="chunks",
                                   chunk_stride=7))
    run = config.build(**text_values(tmp_path, tiny_bert, long_text="chunks"))
    with pytest.raises(ConfigError, match="--long_text: chunks give several feature vectors"):
        preflight.check_search(SearchConfig(run=run, tune=TuneConfig(
            directory=str(tmp_path / "t"))))


@pytest.fixture(scope="module")
def chunked_run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chunks")
    from ktransfer.training import train

    train(config.build(**text_values(tmp, tiny_bert, long_text="chunks", max_length=8,
                                     chunk_stride=4, max_chunks=4, chunk_pooling="max",
                                     epochs=4, lr=0.05, fine_tune_epochs=1, fine_tune_lr=1e-3,
                                     overwrite=True)))
    return tmp / "run"


@pytest.mark.slow  # a chunked fine-tuning run: make test-slow
def test_a_chunked_run_counts_its_long_texts(chunked_run):
    metrics = json.loads((chunked_run / "metrics.json").read_text())
    data = metrics["data"]
    assert data["chunked"]["train"] > 0  # the reviews run past 6 word pieces
    assert data["chunks"]["train"] > metrics["num_examples"]["train"]
    assert metrics["network"]["long_text"] == "chunks"


@pytest.mark.slow  # a chunked fine-tuning run and its export: make test-slow
def test_long_texts_get_one_answer_in_python_and_from_the_saved_model(chunked_run, tmp_path):
    """A text of many chunks: predict_run and serving_default on raw strings agree."""
    found = predict_run(chunked_run, list(LONG), top_k=2)
    python = np.array([[dict(p.top_k)[name] for name in ("negative", "positive")]
                       for p in found])
    version = export_saved(ExportConfig(run_dir=str(chunked_run),
                                        export_dir=str(tmp_path / "m")))
    served = np.array(serve_texts(version, list(LONG))["probabilities"])
    np.testing.assert_allclose(served, python, atol=1e-5)


@pytest.mark.slow
def test_onnx_and_tflite_copies_take_the_chunks(chunked_run, tmp_path):
    """The copies, fed the shipped tokenizer's chunks [B, C, L], give the SavedModel's
    probabilities."""
    import onnxruntime

    from ktransfer.text.chunks import ChunkedPreprocessor
    from ktransfer.text.encoders import load_preprocessor

    version = export_saved(ExportConfig(run_dir=str(chunked_run), onnx=True, tflite="float32",
                                        export_dir=str(tmp_path / "m")))
    import tensorflow_text  # noqa: F401 (the tokenizer's ops, for the SavedModel)

    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        text=tf.constant(LONG))["probabilities"].numpy()
    chunker = ChunkedPreprocessor(load_preprocessor(version),
                                  Chunking.load(version / "preprocessor"), "padding_mask")
    tokens = {k: np.asarray(v).astype("int32")
              for k, v in trim_chunks(chunker(tf.constant(LONG)), "padding_mask").items()}
    assert tokens["token_ids"].shape[1] > 1  # read as several chunks
    session = onnxruntime.InferenceSession(str(version / "model.onnx"))
    onnx = session.run(["probabilities"], {i.name: tokens[i.name]
                                           for i in session.get_inputs()})[0]
    np.testing.assert_allclose(onnx, served, atol=1e-5)
    runner = tf.lite.Interpreter(model_path=str(version / "model.tflite")
                                 ).get_signature_runner("predict_tokens")
    np.testing.assert_allclose(runner(**tokens)["probabilities"], served, atol=1e-5)
    report = json.loads((version / "conversions.json").read_text())
    assert report["onnx"]["within_limit"] and report["tflite"]["within_limit"]


@pytest.mark.slow  # a chunked fine-tuning run: make test-slow
def test_token_attributions_refuse_a_chunked_model(chunked_run):
    from ktransfer.deploy.saving import open_classifier
    from ktransfer.text.attributions import TokenAttributions

    clf = open_classifier(chunked_run)
    with pytest.raises(ConfigError, match="^--explain: token attributions are for models that"):
        TokenAttributions(clf.model, clf.feed.preprocessor, clf.feed.mask_key)
