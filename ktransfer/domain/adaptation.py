"""Domain adaptation with unlabelled target images: DAN-style MMD training and AdaBN.

Each training step takes a labelled source batch and an unlabelled target batch through the same
network; the loss is the source cross-entropy plus `mmd_weight` x MMD^2 between source and target
features after the backbone (pooled) and after every hidden head layer: marginal (DAN, Long et
al. 2015) or class-conditional (DSAN's local MMD, Zhu et al. 2020). The weight can ramp up as
2 / (1 + exp(-10 p)) - 1 over training progress p, as in DANN/DAN. `recalibrate_batchnorm`
re-estimates BatchNorm statistics on target images (AdaBN, Li et al. 2016).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import AdaptConfig, RunConfig
from ktransfer.data.examples import Examples, Splits
from ktransfer.domain.catalog import ALIGNMENTS
from ktransfer.domain.mmd import mmd
from ktransfer.domain.pseudo_labels import (
    TargetLabeller,
    centroid_estimate,
    nearest_centroid,
    prior_estimate,
    rebalanced,
)
from ktransfer.domain.selection import CollapseGuard, EpochSelection, feature_probe, probe_outputs
from ktransfer.domain.target_losses import TargetLoss
from ktransfer.errors import DataError
from ktransfer.modality import Feed, Modality
from ktransfer.network.classifier import backbone_input, get_backbone
from ktransfer.network.features import feature_layer_index, feature_tensor
from ktransfer.runs.rundir import RESUME_DIR
from ktransfer.tasks import task_of

log = logging.getLogger(__name__)


class DomainAdaptationModel(keras.Model):
    """Trains `classifier` (sharing all its layers and weights) on source + target batches.

    Input: {"source": images [n, S, S, 3], "target": images [m, S, S, 3], "source_labels":
    one-hot [n, C]}; output: source class probabilities [n, C]. An MMD loss is added between
    the domains' features after the backbone (pooled) and after every hidden head layer:
    marginal (DAN), or class-conditional with the target's predicted probabilities
    (`mmd_alignment="class"`).

    By default source and target go through the network as one joint batch, as in DAN:
    BatchNorm normalises both with the joint statistics. With `cfg.adabn` they go through
    separately, so BatchNorm normalises each domain by its own statistics (as AdaBN does at
    test time with `recalibrate_batchnorm`).
    """

    def __init__(self, classifier: keras.Model, cfg: AdaptConfig, **kwargs):
        super().__init__(name=kwargs.pop("name", "dan"), **kwargs)
        cut = feature_layer_index(classifier)
        self.classifier = classifier
        self.extractor = keras.Model(classifier.input, feature_tensor(classifier),
                                     name="features")
        self.head_layers = classifier.layers[cut + 1:]  # pooled features -> probabilities
        alignment = ALIGNMENTS.get(cfg.mmd_alignment)
        self.takes, self.separate = alignment.takes, cfg.adabn
        self.class_conditional = alignment.conditional
        names = ["mmd_features"] + [f"mmd_{layer.name}" for layer in self.head_layers
                                    if _aligned(layer)]
        # --mmd_layers: positions of `names` (and of the feature pairs) that are aligned
        self.aligned = [0] if alignment.pooled_only else [
            i for i in range(len(names))
            if cfg.mmd_layers == "all" or (i == 0) == (cfg.mmd_layers == "features")]
        self.mmd_layers: list[keras.layers.Layer] = alignment.build(
            cfg, [names[i] for i in self.aligned], int(self.extractor.output_shape[-1]),
            int(classifier.output_shape[-1]))
        self.target_loss = (TargetLoss(cfg.target_loss, cfg.target_loss_weight,
                                       name="target_loss") if cfg.target_loss != "none" else None)
        # --pseudo_labels=clusters: the class centroids of the target features (TargetLabeller)
        self.centroids = (self.add_weight(
            shape=(int(classifier.output_shape[-1]), int(self.extractor.output_shape[-1]) + 1),
            initializer="zeros", trainable=False, name="target_centroids")
            if cfg.pseudo_labels == "clusters" and self.class_conditional else None)
        # --pseudo_labels=balanced: per-class factors on the target predictions (TargetLabeller)
        self.class_factors = (self.add_weight(
            shape=(int(classifier.output_shape[-1]),), initializer="ones", trainable=False,
            name="class_factors")
            if cfg.pseudo_labels == "balanced" and self.class_conditional else None)
        # Every variable exists already (the classifier's, and each MMD weight), so it is built:
        # a resumed run loads weights into it before any call.
        self.built = True

    @property
    def output_shape(self):
        return self.classifier.output_shape

    def call(self, inputs, training=False):
        source, target = inputs["source"], inputs["target"]
        # Nested inputs (token ids and masks of their own lengths) cannot be concatenated;
        # their encoders normalise per example (LayerNorm), so separate passes are the same.
        if self.separate or isinstance(source, dict):
            (s, *source_features), (t, *target_features) = (
                self._forward(source, training), self._forward(target, training))
            pairs = list(zip(source_features, target_features, strict=True))
        else:
            n = keras.ops.shape(source)[0]
            joint, *features = self._forward(
                keras.ops.concatenate([source, target], axis=0), training)
            s, t = joint[:n], joint[n:]
            pairs = [(f[:n], f[n:]) for f in features]
        classes = ([inputs["source_labels"], self._target_classes(t, pairs[0][1])]
                   if self.takes == "classes" else [s, t] if self.takes == "predictions"
                   else [])
        pairs = [pairs[i] for i in self.aligned]
        for layer, (fs, ft) in zip(self.mmd_layers, pairs, strict=True):
            layer([fs, ft, *classes], training=training)
        if self.target_loss is not None:
            self.target_loss(t, training=training)
        return s

    def _target_classes(self, probabilities, features):
        """Class weights [m, C] of the target rows: the predicted probabilities; with
        --pseudo_labels=clusters the one-hot nearest centroid of their pooled features; with
        balanced the probabilities rescaled per class to the source's class frequencies."""
        if self.centroids is not None:
            return nearest_centroid(features, self.centroids)
        if self.class_factors is not None:
            return rebalanced(probabilities, self.class_factors)
        return probabilities

    @property
    def weighted_layers(self) -> list[keras.layers.Layer]:
        """The layers whose loss weight the ramp sets: MMD and the target loss."""
        return [*self.mmd_layers, *([self.target_loss] if self.target_loss else [])]

    def _forward(self, images, training):
        """[probabilities, pooled features, hidden head outputs...] of `images`."""
        x = self.extractor(images, training=training)
        features = [x]
        for layer in self.head_layers:
            x = layer(x, training=training)
            if _aligned(layer):
                features.append(x)
        return [x, *features]


def _aligned(layer: keras.layers.Layer) -> bool:
    return layer.name.startswith("head_dense")


def paired(source_ds: tf.data.Dataset, target_ds: tf.data.Dataset) -> tf.data.Dataset:
    """({"source", "target", "source_labels"}, source labels) batches; the target set repeats
    and is cut to the source batch's size."""
    def images(x, y):
        return x

    def join(pair, t):
        x, y = pair[0], pair[1]
        batch = tf.minimum(tf.shape(y)[0], tf.shape(tf.nest.flatten(t)[0])[0])
        t = tf.nest.map_structure(lambda v: v[:batch], t)
        return {"source": x, "target": t, "source_labels": y}, y

    target = target_ds.map(images).repeat()
    return tf.data.Dataset.zip((source_ds, target)).map(join)


class MMDRampUp(keras.callbacks.Callback):
    """Sets each loss layer's weight to its `initial_weight * (2 / (1 + exp(-10 p)) - 1)`, p
    the fraction of the phase's steps done (or keeps it when `ramp` is False)."""

    def __init__(self, layers: list[keras.layers.Layer], total_steps: int, ramp: bool,
                 steps_done: int = 0):
        super().__init__()
        self.layers, self.ramp = layers, ramp
        self.total_steps = max(1, total_steps)
        self.step = steps_done

    def on_train_batch_begin(self, batch, logs=None):
        p = min(1.0, self.step / self.total_steps)
        factor = 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0 if self.ramp else 1.0
        for layer in self.layers:
            layer.weight.assign(layer.initial_weight * factor)
        self.step += 1


def _batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    backbone = get_backbone(model)
    return [layer for layer in backbone.layers
            if isinstance(layer, keras.layers.BatchNormalization)
            ] if isinstance(backbone, keras.Model) else []


def recalibrate_batchnorm(model: keras.Model, images: tf.data.Dataset,
                          max_images: int = 4096) -> int:
    """Re-estimates the moving mean and variance of every BatchNormalization layer of the
    classifier's backbone on `images` (batches of pixels, or (pixels, labels) pairs), up to
    `max_images` of them: AdaBN (Li et al. 2016), so the network normalises for that domain.

    One pass in training mode (earlier layers normalised by batch statistics, as PreciseBN
    does); the statistics are the population mean and biased variance of each layer's input
    over all images seen. Returns how many layers were recalibrated (0 for a backbone without
    Keras BatchNorm layers, such as a TF Hub module).
    """
    backbone = get_backbone(model)
    feed = backbone_input(model)
    layers = _batchnorm_layers(model)
    if not layers:
        return 0
    probe = keras.Model(backbone.inputs, [layer.input for layer in layers])
    trainable = [layer.trainable for layer in layers]
    moving = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
    # Per layer, per channel: sum of x and of x^2 over every position, and how many positions.
    totals, squares, counts = [0.0] * len(layers), [0.0] * len(layers), [0.0] * len(layers)
    images_seen = 0
    try:
        for layer in layers:  # a frozen BatchNorm ignores training=True
            layer.trainable = True
        # Traced here, while the layers train. Eager calls spent much of the pass in Python,
        # layer by layer: MobileNetV2 at 96 px on 512 images 7.7-8.1 s, traced 4.1-5.3 s.
        step = tf.function(lambda x: _moments(probe(x if feed is None else feed(x),
                                                    training=True), layers),
                           reduce_retracing=True)
        for batch in images:
            x = batch[0] if isinstance(batch, tuple) else batch
            for i, (total, square, count) in enumerate(zip(*step(x), strict=True)):
                totals[i] += total.numpy()
                squares[i] += square.numpy()
                counts[i] += float(count)
            images_seen += int(keras.tree.flatten(x)[0].shape[0])
            if images_seen >= max_images:
                break
    finally:
        for layer, flag, (mean, var) in zip(layers, trainable, moving, strict=True):
            layer.trainable = flag
            layer.moving_mean.assign(mean)  # undo the training-mode updates
            layer.moving_variance.assign(var)
    if images_seen == 0:
        return 0
    for layer, total, square, n in zip(layers, totals, squares, counts, strict=True):
        mean = np.asarray(total) / n
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign(np.maximum(square / n - mean ** 2, 0.0).astype("float32"))
    return len(layers)


def _moments(outputs: list[tf.Tensor], layers: list[keras.layers.Layer]
             ) -> tuple[list[tf.Tensor], list[tf.Tensor], list[tf.Tensor]]:
    """Per layer, over every position but the channel axis: the sums of x and of x^2 (float64
    [channels]) and how many positions were summed (float64 [])."""
    sums, squares, counts = [], [], []
    for layer, out in zip(layers, outputs, strict=True):
        axis = layer.axis % len(out.shape)
        axes = [a for a in range(len(out.shape)) if a != axis]
        out = tf.cast(out, tf.float64)
        sums.append(tf.reduce_sum(out, axes))
        squares.append(tf.reduce_sum(tf.square(out), axes))
        counts.append(tf.cast(tf.size(out) // tf.shape(out)[axis], tf.float64))
    return sums, squares, counts


@contextlib.contextmanager
def target_statistics(model: keras.Model, images: tf.data.Dataset, max_images: int = 4096
                      ) -> Iterator[None]:
    """Within the block the backbone's BatchNorm layers normalise by `images`' statistics
    (`recalibrate_batchnorm`); afterwards their moving statistics are what they were. With
    --adabn, target examples pass BatchNorm by their own statistics in training, so what is
    computed from them between epochs must see them that way too."""
    layers = _batchnorm_layers(model)
    moving = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
    try:
        recalibrate_batchnorm(model, images, max_images)
        yield
    finally:
        for layer, (mean, var) in zip(layers, moving, strict=True):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(var)


def domain_mmd(model: keras.Model, source_ds: tf.data.Dataset, target_ds: tf.data.Dataset,
               max_images: int = 512) -> float:
    """Biased MMD^2 between up to `max_images` source and target feature vectors (after the
    backbone, pooled): how far apart the model sees the two domains."""
    probe = feature_probe(model)
    source, target = (probe_outputs(probe, ds, max_images)[1] for ds in (source_ds, target_ds))
    return float(mmd(source, target, "biased"))


@dataclass
class Adaptation:
    """The domain adaptation of one run.

    Args:
        cfg: the adaptation flags.
        target: unlabelled target examples (None: no adaptation, only target evaluation).
        model: the DomainAdaptationModel that trains on source + target batches.
        train, val: paired (source, target) batches for `model`.
        evaluation: labelled target batches to report on (--target_eval_data), or None.
        num_evaluation: how many examples `evaluation` has.
        metrics: what goes into metrics.json["adaptation"].
        selection: --da_select's choice of epoch, or None (the last epoch).
        guard: --collapse_guard's watch over the target predictions, or None.
        labeller: --pseudo_labels' epoch-start look at the target (clusters or balanced), or
            None.
    """

    cfg: AdaptConfig
    target: Examples | None = None
    model: DomainAdaptationModel | None = None
    train: tf.data.Dataset | None = None
    val: tf.data.Dataset | None = None
    evaluation: tf.data.Dataset | None = None
    num_evaluation: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    selection: EpochSelection | None = None
    guard: CollapseGuard | None = None
    labeller: keras.callbacks.Callback | None = None

    def callbacks(self, epochs: int, steps: int, steps_done: int) -> list[keras.callbacks.Callback]:
        """The MMD weight ramp for a phase of `epochs` epochs, `steps_done` steps into it, and
        the --da_select scoring."""
        if self.model is None:
            return []
        return [MMDRampUp(self.model.weighted_layers, epochs * steps, self.cfg.mmd_rampup,
                          steps_done=steps_done),
                *([self.labeller] if self.labeller is not None else []),
                *([self.guard] if self.guard is not None else []),
                *([self.selection] if self.selection is not None else [])]

    def finish(self, model: keras.Model, feed: Feed, source_val: tf.data.Dataset,
               batch_size: int) -> dict[str, Any]:
        """The --da_select epoch's weights, AdaBN (with --adabn), then target accuracy and the
        domain MMD after training."""
        if self.selection is not None:
            self.metrics["selection"] = self.selection.restore()
        if self.target is not None and self.cfg.adabn:
            if self.evaluation is not None:
                self.metrics["target_accuracy_before_adabn"] = model.evaluate(
                    self.evaluation, return_dict=True, verbose=0)["accuracy"]
            n = recalibrate_batchnorm(model, feed.inputs(self.target, batch_size))
            log.info("--adabn: BatchNorm statistics of %d layer(s) re-estimated on %d target "
                     "examples", n, len(self.target))
        if self.evaluation is not None:
            self.metrics["mmd_after"] = domain_mmd(model, source_val, self.evaluation)
            self.metrics["target_accuracy"] = model.evaluate(
                self.evaluation, return_dict=True, verbose=0)["accuracy"]
            self.metrics["num_target_eval_images"] = self.num_evaluation
        if self.target is not None:
            self.metrics["num_target_images"] = len(self.target)
            self.metrics["mmd_weight"] = self.cfg.mmd_weight
        return self.metrics


def _target_sets(cfg: RunConfig, modality: Modality, class_names: tuple[str, ...]
                 ) -> tuple[Examples | None, Examples | None]:
    """(unlabelled target examples or None, labelled target evaluation examples or None)."""
    a, open_source = cfg.adapt, modality.opener(cfg)
    target = target_eval = None
    if a.target_data:
        sets = open_source(a.target_data, "target_data")
        target = sets.get("train", sets.get("all"))
    if a.target_eval_data:
        sets = open_source(a.target_eval_data, "target_eval_data")
        chosen = sets.get("test", sets.get("all", sets.get("train")))
        if chosen is None:
            raise DataError(f"--target_eval_data: {a.target_eval_data} has no test, train or "
                            "'all' examples")
        known = tuple(c for c in class_names if c in chosen.class_names)
        task = task_of(cfg)
        target_eval = chosen.relabel(known, task).align(list(class_names), task,
                                                        "target_eval_data")
    return target, target_eval


def _labeller(cfg: RunConfig, model: DomainAdaptationModel, unlabelled: tf.data.Dataset,
              source_labels: np.ndarray) -> keras.callbacks.Callback | None:
    """The callback that re-reads the target before every epoch for --pseudo_labels (None for
    predictions): the cluster centroids, or the class factors towards the source's class
    frequencies (`source_labels` int [N])."""
    if model.centroids is None and model.class_factors is None:
        return None
    classifier = model.classifier
    probe = feature_probe(classifier)
    statistics = ((lambda: target_statistics(classifier, unlabelled)) if cfg.adapt.adabn
                  else contextlib.nullcontext)
    if model.centroids is not None:
        return TargetLabeller(probe, unlabelled, model.centroids, centroid_estimate,
                              statistics=statistics)
    prior = np.bincount(source_labels, minlength=int(classifier.output_shape[-1]))
    return TargetLabeller(probe, unlabelled, model.class_factors,
                          prior_estimate(prior.astype("float64")), statistics=statistics)


def prepare(cfg: RunConfig, modality: Modality, splits: Splits, model: keras.Model, feed: Feed,
            source: tuple[tf.data.Dataset, tf.data.Dataset], cache_dir: Path
            ) -> Adaptation | None:
    """The run's adaptation (None without --target_data / --target_eval_data): target data,
    the adaptation model on paired batches, and the domain MMD before training."""
    target, target_eval = _target_sets(cfg, modality, splits.class_names)
    if target is None and target_eval is None:
        return None
    out = Adaptation(cfg.adapt, target)
    batch = cfg.data.batch_size
    if target_eval is not None:
        out.evaluation = feed.dataset(target_eval, batch_size=batch)
        out.num_evaluation = len(target_eval)
        out.metrics["mmd_before"] = domain_mmd(model, source[1], out.evaluation)
    if target is not None:
        target_ds = feed.dataset(target, batch_size=batch, training=True,
                                 cache_path=cache_dir / "target", seed=cfg.train.seed + 1)
        out.model = DomainAdaptationModel(model, cfg.adapt)
        out.train, out.val = paired(source[0], target_ds), paired(source[1], target_ds)
        out.labeller = _labeller(cfg, out.model, feed.dataset(target, batch_size=batch),
                                 splits.train.labels)
        if cfg.adapt.collapse_guard and cfg.model.init_from:  # predictions that mean something
            out.guard = CollapseGuard(model, feed.dataset(target, batch_size=batch))
        if cfg.adapt.da_select != "last" or out.evaluation is not None:  # or just recorded
            out.selection = EpochSelection(
                cfg.adapt.da_select, model, feed.dataset(target, batch_size=batch), source[1],
                cache_dir.parent / RESUME_DIR, evaluation=out.evaluation)
        if (ALIGNMENTS.get(cfg.adapt.mmd_alignment).conditional and cfg.model.weights == "none"
                and not cfg.model.init_from and cfg.adapt.mmd_weight > 0):
            log.warning("--mmd_alignment=class weighs target examples by the network's own "
                        "predictions; from random weights they mean nothing and training can "
                        "collapse: start from a trained model (--init_from=RUN)")
        log.info("adaptation: %d unlabelled target examples, MMD weight %g%s on %d layer(s)",
                 len(target), cfg.adapt.mmd_weight, " (ramped up)" if cfg.adapt.mmd_rampup
                 else "", len(out.model.mmd_layers))
        if cfg.adapt.mmd_estimator != "biased" and cfg.adapt.mmd_weight > 0:
            log.info("the MMD loss is an unbiased estimate (--mmd_estimator=%s): near 0, and "
                     "slightly negative once the domains match; that is not an error",
                     cfg.adapt.mmd_estimator)
    return out
