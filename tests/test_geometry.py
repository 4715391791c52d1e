"""Targets in the image plane (`ktransfer.tasks.geometry`): a task that declares a `Geometry`
has its targets resized and augmented with the pixels, and trains, evaluates, predicts and
exports through the same seam as the whole-image tasks. Proved with the toy one-box task of
tests/plugins/one_box.py, added by new files and one registration."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ktransfer import config, preflight
from ktransfer.deploy.prediction import predict_saved
from ktransfer.deploy.serving import export_saved
from ktransfer.errors import ConfigError
from ktransfer.image.augmentation import Augmentation
from ktransfer.image.pipeline import ImageFeed
from ktransfer.image.sources import TableReading, read_image_table
from ktransfer.network.features import head_is_chain, split_classifier
from ktransfer.reporting.evaluation import evaluate_saved
from ktransfer.training import train

from plugins import one_box


@pytest.fixture(scope="module")
def registered():
    one_box.register()
    yield one_box.ONE_BOX
    one_box.unregister()


@pytest.fixture(scope="module")
def box_table(tmp_path_factory):
    return one_box.write_box_table(tmp_path_factory.mktemp("boxes"), n=150)


def _offset(image: np.ndarray, box: np.ndarray) -> float:
    """How far (in fractions of the image) the centre of the digit's bright pixels lies from
    the centre of `box` (ymin, xmin, ymax, xmax as fractions)."""
    ys, xs = np.nonzero(image.mean(axis=-1) > 100)
    centre = np.array([ys.mean() + 0.5, xs.mean() + 0.5]) / image.shape[0]
    return float(np.abs(centre - (box[:2] + box[2:]) / 2).max())


@pytest.mark.parametrize("moves", ["aug_flip", "aug_translate", "aug_zoom", "aug_rotation",
                                   "aug_crop"])
def test_boxes_move_with_the_pixels(registered, box_table, moves):
    """After each geometric augmentation (and the random resized crop) the target box is
    still centred on the digit (a box left where it was would not be: the digits are
    off-centre, and flips, shifts and crops move them away)."""
    images = read_image_table(box_table, _reading(registered)).subset(np.arange(48))
    value = {"aug_flip": "horizontal", "aug_translate": 0.2, "aug_zoom": 0.2,
             "aug_rotation": 0.02, "aug_crop": 0.6}[moves]
    feed = ImageFeed(32, Augmentation(**{moves: value}), task=registered)
    moved, left = [], []
    for pixels, targets in feed.dataset(images, batch_size=16, training=True, seed=3):
        for image, target in zip(pixels.numpy(), targets.numpy(), strict=True):
            moved.append(_offset(image, target[1:]))
    for pixels, _ in feed.dataset(images, batch_size=48, training=True, seed=3):
        left = [_offset(image, box) for image, box in zip(pixels.numpy(), images.labels[:, 1:],
                                                          strict=True)]
    still = [_offset(np.asarray(Image.open(f).convert("RGB"), float), t[1:])
             for f, t in zip(images.files, images.labels, strict=True)]
    assert max(still) < 0.08  # what the measure gives on the images as they are
    assert max(moved) < 0.1, sorted(moved)[-5:]
    assert np.mean(np.array(left) > 0.08) > 0.25  # the boxes as they were: off the digit


def _reading(task):
    options = config.build(data="x.csv", task="one_box").group("task")
    return TableReading("file", "label", task, options)


def test_augmentation_that_leaves_the_targets_behind_is_refused_before_work(registered):
    for flag, value in (("aug_mixup", 0.2), ("aug_cutmix", 1.0), ("aug_randaugment", "2,9")):
        cfg = config.build(data="builtin:digits", task="one_box", **{flag: value})
        with pytest.raises(ConfigError, match=f"^--{flag}: moves or mixes pixels without the "
                           "targets of --task=one_box"):
            preflight.check_train(cfg)


def test_a_head_with_branches_splits_off_its_backbone(registered):
    """The frozen phase trains the head on feature vectors: a head that branches (box and
    class) and joins again is cut off whole, sharing the model's layers."""
    cfg = config.build(data="builtin:digits", backbone="small_cnn")
    inputs = keras.Input((6,))
    features = keras.layers.Dense(5, name="head_pool")(inputs)
    model = keras.Model(inputs, registered.output(features, 7, cfg.model))
    assert head_is_chain(model)
    _, head = split_classifier(model)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(head(model.get_layer("head_pool")(x)), model(x), atol=1e-6)


@pytest.fixture(scope="module")
def box_run(registered, box_table, tmp_path_factory):
    cfg = config.build(data=str(box_table), task="one_box", backbone="small_cnn",
                       weights="none", image_size=32, batch_size=16, epochs=15,
                       fine_tune_epochs=0, verbose=0, tensorboard=False, report=True,
                       pooling="flatten", aug_flip="horizontal", aug_zoom=0.1, lr=3e-3,
                       run_dir=str(tmp_path_factory.mktemp("run") / "run"))
    return train(cfg)


def test_a_box_task_trains_past_the_mean_box(box_run):
    """From 90 images, the boxes found beat always answering the training set's mean box
    (IoU about 0.25 on these off-centre digits) by 0.2."""
    quality = box_run.metrics["quality"]
    assert quality["metric"] == "mean IoU" and quality["split"] == "test"
    assert quality["value"] > quality["baseline"] + 0.2, quality
    assert (box_run.run_dir / "report.html").is_file()


def test_a_box_task_evaluates_predicts_and_serves_the_same_boxes(box_run, box_table, tmp_path):
    """`evaluate` re-scores the run's test split to the figure training wrote; `predict` and
    the exported SavedModel (fed the files' bytes) give the same boxes and classes."""
    run = box_run.run_dir
    summary, _ = evaluate_saved(config.EvaluateConfig(model=str(run)))
    assert summary["iou"] == pytest.approx(box_run.metrics["test"]["iou"], abs=1e-5)
    files = sorted(box_table.parent.glob("*.png"))[:5]
    rows = json.loads(predict_saved(config.PredictConfig(model=str(run), format="json"),
                                    [str(f) for f in files]))
    version = export_saved(config.ExportConfig(run_dir=str(run), export_dir=str(tmp_path / "m"),
                                               formats=("tflite",)))
    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        image_bytes=tf.constant([f.read_bytes() for f in files]))
    np.testing.assert_allclose(served["box"].numpy(), [r["box"] for r in rows], atol=1e-4)
    assert [c.decode() for c in served["class"].numpy()] == [r["top_k"][0]["class"]
                                                            for r in rows]
    assert json.loads((version / "conversions.json").read_text())["tflite"]["within_limit"]
