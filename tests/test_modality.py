"""The modality seam's contract, run over every registered modality (and a toy one that is
registered by the test alone): each builds a tiny network, feeds batches of the promised
shapes, reopens its feed from a saved run with the same inputs, recognises its own models and
exports the signatures it promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config, preflight
from ktransfer.deploy.saving import load_model
from ktransfer.deploy.serving import answer, export
from ktransfer.deploy.warmup import read_warmup
from ktransfer.errors import DataError
from ktransfer.modality import MODALITIES, for_model

from conftest import text_values, tiny_values
from plugins import installed
from plugins.vectors import VectorSet

# A tiny run of each modality; a new modality adds its own here (the test below insists).
TINY = {
    "image": lambda tmp, request: tiny_values(tmp),
    "text": lambda tmp, request: text_values(tmp, request.getfixturevalue("tiny_bert")),
    "vectors": lambda tmp, request: dict(
        modality="vectors", data="builtin:blobs", weights="none",
        epochs=20, lr=0.01, fine_tune_epochs=1, verbose=0, tensorboard=False, report=True,
        run_dir=str(tmp / "run")),
}


@pytest.fixture
def with_toy():
    """The toy modality (tests/plugins/vectors.py), registered as a new modality is: one
    `register_modality` call with its own config group, taken back afterwards."""
    with installed("vectors"):
        yield


def _first(batches):
    return next(iter(batches))


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


@pytest.mark.parametrize("name", [*MODALITIES.names(), "vectors"])
def test_every_modality_meets_the_seam(name, tmp_path, request, with_toy):
    assert name in TINY, f"give the {name} modality a tiny run in TINY"
    cfg = config.build(**TINY[name](tmp_path, request))
    modality = preflight.check_train(cfg)
    assert modality is MODALITIES.get(name)
    splits = modality.load_splits(cfg)
    classes = len(splits.class_names)
    network = modality.build(cfg, classes)
    model = network.model
    assert model.get_layer("backbone") is network.backbone and model.output_shape == (None,
                                                                                     classes)
    feed = modality.feed(cfg, network)
    x, y = _first(feed.dataset(splits.val, batch_size=4))
    assert tuple(y.shape) == (4, classes)
    probabilities = model(x, training=False)
    _close(tf.reduce_sum(probabilities, axis=1), np.ones(4))
    assert modality.accepts(model) and for_model(model) is modality
    # A saved classifier and its reopened feed give the same predictions.
    model.save(tmp_path / "model.keras")
    feed.save(tmp_path)
    reloaded = load_model(tmp_path / "model.keras")
    again = modality.feed_for(reloaded, str(tmp_path))
    _close(reloaded(_first(again.inputs(splits.val, 4)), training=False), probabilities)
    # The export holds the promised signatures, serving_default first.
    endpoints = modality.endpoints(model, feed, answer(feed, list(splits.class_names), 2))
    assert next(iter(endpoints)) == "serving_default"
    warm = modality.serving_inputs(splits.val, 3)
    version = export(model, modality, feed, list(splits.class_names), tmp_path / "e" / "m",
                     warmup=warm)
    if name == "text":
        import tensorflow_text  # noqa: F401 (the tokenizer's ops)
    loaded = tf.saved_model.load(str(version))
    assert set(loaded.signatures) == set(endpoints)
    # The warm-up requests are real examples the server's default signature answers.
    request = read_warmup(version)[-1]
    sent = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    _close(loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in sent.items()})
           ["probabilities"], probabilities[:3])
    shown = modality.presentation
    assert shown.noun and shown.input_key and shown.list_backbones()


@pytest.mark.slow  # a run of a toy modality and its export: make test-slow
def test_a_new_modality_is_one_registration(tmp_path, request, with_toy):
    """The toy modality trains (head, then fine-tuning), resumes nothing amiss, writes its
    report, exports, evaluates and predicts through the shared code, untouched."""
    from ktransfer.deploy.prediction import predict_saved
    from ktransfer.reporting.evaluation import evaluate_saved
    from ktransfer.training import train

    values = {**TINY["vectors"](tmp_path, request), "export_dir": str(tmp_path / "e" / "m"),
              "mlp_units": 24}
    result = train(config.build(**values))
    assert result.metrics["test"]["accuracy"] > 0.9  # 3 classes: chance is 1/3
    assert "warnings" not in result.metrics  # it learned: no majority-class warning
    assert (result.run_dir / "report.html").is_file()
    test = result.metrics["num_examples"]["test"]
    summary, _ = evaluate_saved(config.EvaluateConfig(model=str(result.run_dir)))
    assert summary["num_examples"] == test
    assert summary["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])
    rows = ["0,0,0,0,0,0,0,0", "1,2,3,4,5,6,7,8"]
    lines = predict_saved(config.PredictConfig(model=str(result.run_dir)), rows).splitlines()
    assert len(lines) == 2
    # Its own group: a run flag (the backbone's width) and a reading option that predict
    # takes from the run (fail) unless given.
    assert result.model.get_layer("backbone").output_shape == (None, 24)
    with pytest.raises(DataError, match="--on_bad_row=skip"):
        predict_saved(config.PredictConfig(model=str(result.run_dir)), [*rows, "1,2"])
    skipping = config.build_command(config.PredictConfig, model=str(result.run_dir),
                                    on_bad_row="skip")
    assert len(predict_saved(skipping, [*rows, "1,2"]).splitlines()) == 2
    served = tf.saved_model.load(result.metrics["export"]).signatures["serving_default"]
    points = VectorSet(("",), np.zeros(2, np.int32),
                       np.array([[float(v) for v in r.split(",")] for r in rows], "float32"))
    _close(served(values=tf.constant(points.values))["probabilities"],
           result.model.predict(points.values, verbose=0))
    assert Path(result.metrics["export"]).parent == tmp_path / "e" / "m"
