"""ktransfer's artifacts in the clients users run, none written by this project: the TFLite
interpreter and onnxruntime on the converted exports (scored against the Keras model on the
run's test split), TensorBoard's event reader on a two-phase run, and plain Keras on model
files in a process without ktransfer (test_saving.py); saved_model_cli on the SavedModel is in
test_serving.py."""

from __future__ import annotations

import json

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf

from ktransfer.config import ExportConfig
from ktransfer.deploy.catalog import FORMATS
from ktransfer.deploy.saving import open_classifier
from ktransfer.deploy.serving import export_saved
from ktransfer.errors import ConfigError, KtransferError

from plugins import installed


def _pixels(model, n=4):
    return np.random.default_rng(0).uniform(0, 255, (n, *model.input_shape[1:])).astype("f")


@pytest.mark.parametrize("kind", [pytest.param("float32", marks=pytest.mark.slow), "int8"])
def test_tflite_matches_keras_and_records_its_test_accuracy(quickstart_run, tmp_path, kind):
    version = export_saved(ExportConfig(run_dir=str(quickstart_run), tflite=kind,
                                        export_dir=str(tmp_path / "m")))
    model = open_classifier(quickstart_run).model
    interpreter = tf.lite.Interpreter(model_path=str(version / "model.tflite"))
    runner = interpreter.get_signature_runner("predict_pixels")
    out = runner(pixels=_pixels(model))
    tolerance = 1e-5 if kind == "float32" else 0.05
    np.testing.assert_allclose(out["probabilities"], model.predict(_pixels(model), verbose=0),
                               atol=tolerance)
    report = json.loads((version / "conversions.json").read_text())
    assert report["test_examples"] == 359 and report["tflite"]["type"] == kind
    assert report["tflite"]["drop"] <= 0.02 and report["tflite"]["within_limit"]
    if kind == "int8":  # really quantised: its tensors are int8
        dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
        assert np.int8 in dtypes


def test_onnx_runs_in_onnxruntime_like_keras(quickstart_run, tmp_path):
    version = export_saved(ExportConfig(run_dir=str(quickstart_run), onnx=True,
                                        export_dir=str(tmp_path / "m")))
    model = open_classifier(quickstart_run).model
    session = onnxruntime.InferenceSession(str(version / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"pixels": _pixels(model)})[0]
    np.testing.assert_allclose(got, model.predict(_pixels(model), verbose=0), atol=1e-5)
    report = json.loads((version / "conversions.json").read_text())
    assert report["onnx"]["opset"] == 17 and report["onnx"]["drop"] == pytest.approx(0, abs=1e-9)


@pytest.mark.slow  # a run and a failed conversion: make test-slow
def test_a_conversion_that_loses_accuracy_is_refused_and_nothing_is_published(
        quickstart_run, tmp_path, monkeypatch):
    from ktransfer.deploy.catalog import FORMATS

    monkeypatch.setattr(FORMATS.get("tflite"), "predictor",
                        lambda content, signature, key: lambda x: np.eye(5)[np.zeros(len(x), int)])
    with pytest.raises(KtransferError, match="^--max_accuracy_drop: the tflite model scores"):
        export_saved(ExportConfig(run_dir=str(quickstart_run), tflite="dynamic",
                                  export_dir=str(tmp_path / "m")))
    assert not any(p.name.isdigit() for p in (tmp_path / "m").iterdir())
    version = export_saved(ExportConfig(run_dir=str(quickstart_run), tflite="dynamic",
                                        on_accuracy_drop="warn", export_dir=str(tmp_path / "m")))
    assert not json.loads((version / "conversions.json").read_text())["tflite"]["within_limit"]


@pytest.mark.slow  # a two-phase run: make test-slow
def test_tensorboard_steps_keep_rising_across_the_two_phases(tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ktransfer.training import train

    result = train(tiny_config(epochs=2, fine_tune_epochs=2, tensorboard=True))
    events = EventAccumulator(str(result.run_dir / "tensorboard" / "validation"))
    events.Reload()
    tag = "evaluation_loss_vs_iterations"
    steps = [e.step for e in events.Tensors(tag)] if tag in events.Tags()["tensors"] else \
        [e.step for e in events.Scalars(tag)]
    assert len(steps) == 4 and steps == sorted(set(steps)), steps


@pytest.fixture
def with_toy():
    """The toy format of tests/plugins/keras_copy.py, registered for the test."""
    with installed("keras_copy"):
        yield


@pytest.mark.parametrize("name", [*FORMATS.names(), "keras_copy"])
def test_every_export_format_writes_a_copy_that_predicts_what_keras_predicts(
        quickstart_run, tmp_path, name, with_toy):
    """The contract of `conversion.FORMATS`: each registered format (and the toy), asked for
    by --formats, writes its file, scores it on the run's test split and predicts the Keras
    model's probabilities."""
    fmt = FORMATS.get(name)
    version = export_saved(ExportConfig(run_dir=str(quickstart_run), formats=(name,),
                                        export_dir=str(tmp_path / "m")))
    model = open_classifier(quickstart_run).model
    content = (version / fmt.filename).read_bytes()
    got = fmt.predictor(content, "predict_pixels")(_pixels(model))
    np.testing.assert_allclose(got, model.predict(_pixels(model), verbose=0), atol=1e-4)
    entry = json.loads((version / "conversions.json").read_text())[name]
    assert entry["file"] == fmt.filename and entry["within_limit"]


@pytest.mark.slow  # a run and its export: make test-slow
def test_a_new_export_format_is_one_registration(quickstart_run, tmp_path, monkeypatch):
    """The toy format of tests/plugins/keras_copy.py, added by registration alone, is
    converted, checked and reported; one that predicts wrongly is refused."""
    with installed("keras_copy") as toy:
        version = export_saved(ExportConfig(run_dir=str(quickstart_run),
                                            formats=("keras_copy",),
                                            export_dir=str(tmp_path / "m")))
        report = json.loads((version / "conversions.json").read_text())["keras_copy"]
        assert report["kind"] == "keras_copy"
        assert report["drop"] == pytest.approx(0, abs=1e-6)
        assert (version / toy.FORMAT.filename).is_file()
        monkeypatch.setattr(toy.FORMAT, "predictor", lambda content, signature, key:
                            lambda x: np.eye(5)[np.zeros(len(x), int)])
        with pytest.raises(KtransferError,
                           match="^--max_accuracy_drop: the keras_copy model scores"):
            export_saved(ExportConfig(run_dir=str(quickstart_run), formats=("keras_copy",),
                                      export_dir=str(tmp_path / "m")))


def test_tflite_metadata_is_read_by_mediapipes_image_classifier(quickstart_run, tmp_path):
    """--tflite_metadata: MediaPipe's own ImageClassifier task loads the file with nothing but
    its metadata (labels, normalisation) and scores an image as the Keras model does."""
    import mediapipe
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from ktransfer.deploy.formats import tflite_metadata

    version = export_saved(ExportConfig(run_dir=str(quickstart_run), tflite="float32",
                                        tflite_metadata=True, export_dir=str(tmp_path / "m")))
    content = (version / "model.tflite").read_bytes()
    clf = open_classifier(quickstart_run)
    found = tflite_metadata.read_metadata(content)
    assert found["labels"] == clf.class_names
    tensor = found["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert tensor["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}
    assert json.loads((version / "conversions.json").read_text())["tflite"]["within_limit"]
    pixels = _pixels(clf.model, 1)[0].round().astype(np.uint8)  # its size: no resizing
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_buffer=content),
                                            max_results=len(clf.class_names))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        result = classifier.classify(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB,
                                                     data=pixels))
    scores = {c.category_name: c.score for c in result.classifications[0].categories}
    expected = clf.model.predict(pixels[None].astype("float32"), verbose=0)[0]
    np.testing.assert_allclose([scores[name] for name in clf.class_names], expected, atol=1e-5)


def test_tflite_metadata_without_a_tflite_copy_is_refused():
    with pytest.raises(ConfigError, match="^--tflite_metadata: describes the TFLite copy"):
        ExportConfig(run_dir="r", export_dir="e/m", tflite_metadata=True)


def test_a_tflite_copy_the_default_delegate_cannot_prepare_runs_without_it(monkeypatch):
    """An int8 copy XNNPACK fails to prepare (seen on a detector) is run with TFLite's own
    kernels, not a traceback; a file no resolver runs is one line naming --tflite."""
    from ktransfer.deploy.formats import tflite

    inputs = keras.Input((4,), name="pixels")
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    real = tf.lite.Interpreter
    tried = []

    def interpreter(**kwargs):
        found = real(**kwargs)
        tried.append(kwargs["experimental_op_resolver_type"])
        if kwargs["experimental_op_resolver_type"] == tf.lite.experimental.OpResolverType.AUTO:
            found.allocate_tensors = lambda: (_ for _ in ()).throw(
                RuntimeError("failed to create XNNPACK runtime"))
        return found

    monkeypatch.setattr(tf.lite, "Interpreter", interpreter)
    x = np.ones((3, 4), np.float32)
    got = tflite.predictor(content, "serving_default", "")(x)
    np.testing.assert_allclose(next(iter(got.values())), model.predict(x, verbose=0), atol=1e-5)
    assert len(tried) == 2
    with pytest.raises(KtransferError, match="^--tflite: the converted model does not run"):
        tflite.predictor(b"not a model" * 10, "serving_default")
