"""Frozen run configuration; each field is also an absl flag of the same name.

The dataclasses here are the single source of truth: `define_flags` turns their fields into flags,
`from_flags` builds a validated config from parsed flags, and `to_flagfile` writes a config back
out as a flagfile that re-runs the same job. Library code takes these objects, never `FLAGS`.

This module holds values and their rules (ranges, cross-field rules) and imports nothing of the
package but `errors`, and nothing heavy: building a config never imports TensorFlow or touches
the file system. A field whose choices are the names of a registry says so as a string
(`registry="ktransfer.schedules:SCHEDULES"`); `ktransfer.cli` turns those into flag choices and
`ktransfer.preflight` checks names and files once, before any work.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ktransfer.errors import ConfigError

AUTO_LR = -1.0  # --lr=auto / --fine_tune_lr=auto: the learning-rate range test picks the rate


def option(default: Any, help: str, choices: tuple[str, ...] | None = None,
           registry: str | None = None, auto: bool = False) -> Any:
    """A config field that is also an absl flag.

    Args:
        default: the flag's default.
        help: the flag's help text.
        choices: fixed allowed values (an enum flag).
        registry: `"module:ATTR"` of the `ktransfer.registry.Registry` whose names are the
            allowed values (added to `choices`, if any); checked in pre-flight.
        auto: a learning rate that may also be `auto` (held as AUTO_LR).
    """
    return field(default=default, metadata={"help": help, "choices": choices,
                                            "registry": registry, "auto": auto})


def require(cond: bool, flag: str, message: str) -> None:
    """Raises ConfigError(flag, message) unless `cond`."""
    if not cond:
        raise ConfigError(flag, message)


@dataclass(frozen=True)
class DataConfig:
    """Where examples come from and how they are split and batched."""

    modality: str = option("image", "What the examples are: image, or text.",
                           registry="ktransfer.modality:MODALITIES")
    data: str = option(
        "", "Training data: builtin:NAME, tfds:NAME, or a folder of class sub-folders "
        "(folder:PATH or just PATH); text also reads .csv, .tsv and .jsonl files.")
    data_dir: str = option("", "tfds data folder (where `tfds build` put the dataset).")
    val_data: str = option("", "Validation data (same forms as --data); default: split --data.")
    test_data: str = option("", "Test data (same forms as --data); default: split --data.")
    classes: tuple[str, ...] = option(
        (), "Only these classes, in this order (comma-separated names); default: all.")
    val_split: float = option(0.2, "Fraction of --data held out for validation when no "
                             "validation split is given.")
    test_split: float = option(0.2, "Fraction of --data held out for test when no test split "
                              "is given.")
    split_seed: int = option(0, "Seed of the stratified train/validation/test split.")
    train_per_class: int = option(0, "Keep at most this many training images per class "
                                 "(few-label experiments); 0 keeps all.")
    image_size: int = option(0, "Square input size in pixels; 0 uses the backbone's default.")
    batch_size: int = option(32, "Global batch size.")
    cache: str = option("memory", "Cache decoded, resized images: memory, disk (in the run "
                       "directory) or none.", ("memory", "disk", "none"))
    class_weights: str = option("none", "Weight the loss per class: none, or balanced "
                               "(n_samples / (n_classes * count)).", ("none", "balanced"))
    shuffle_buffer: int = option(2048, "Shuffle buffer size (examples). Image files are "
                                 "shuffled by name before decoding; the buffer reshuffles "
                                 "in-memory sets and the cached images after the first pass.")
    on_bad_image: str = option("fail", "An image file that cannot be decoded (corrupt, "
                              "truncated, empty, not an image): stop with an error naming it, "
                              "or skip it with one warning line.", ("fail", "skip"))

    def __post_init__(self) -> None:
        require(bool(self.data), "data", "is required, e.g. --data=builtin:digits or "
               "--data=/path/to/class_folders")
        for name in ("val_split", "test_split"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, name, f"must be in [0, 1), got {value}")
        require(self.val_split + self.test_split < 1.0, "val_split",
               "--val_split + --test_split must be below 1 to leave training data")
        require(self.train_per_class >= 0, "train_per_class", "must be >= 0")
        require(self.image_size == 0 or 8 <= self.image_size <= 4096, "image_size",
               f"must be 0 (backbone default) or in [8, 4096], got {self.image_size}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.shuffle_buffer >= 1, "shuffle_buffer", "must be >= 1")
        require(len(set(self.classes)) == len(self.classes), "classes", "lists a class twice")
        for name in ("data", "val_data", "test_data"):
            value = getattr(self, name)
            for prefix in ("builtin:", "tfds:", "folder:"):
                require(value != prefix, name, f"give a name or path after {prefix}")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; every transform is off at 0 / none."""

    aug_crop: float = option(0.0, "Random resized crop: smallest kept area fraction (e.g. 0.5); "
                            "0 turns it off.")
    aug_flip: str = option("none", "Random flips.", ("none", "horizontal", "vertical", "both"))
    aug_rotation: float = option(0.0, "Random rotation, as a fraction of a full turn (0.05 = "
                                "+-18 degrees).")
    aug_zoom: float = option(0.0, "Random zoom, as a fraction of the size (0.1 = +-10%).")
    aug_translate: float = option(0.0, "Random translation, as a fraction of the size.")
    aug_contrast: float = option(0.0, "Random contrast factor (0.2 = +-20%).")
    aug_noise: float = option(0.0, "Gaussian pixel noise, standard deviation in 0-255 units.")
    aug_shear: float = option(0.0, "Random shear along x and y, as a fraction (0.2 = up to "
                             "+-0.2).")
    aug_color_jitter: float = option(0.0, "Colour jitter strength S: brightness +-S/2 of the "
                                    "pixel range, contrast +-S, saturation 0.5+-S/2 (Keras's "
                                    "scale, 0.5 = unchanged).")
    aug_randaugment: str = option("", "RandAugment as N,M: N random operations per image at "
                                 "magnitude M of 10 (e.g. 2,9); empty turns it off.")
    aug_erasing: float = option(0.0, "Random erasing: probability of blanking a random patch "
                               "of each image with noise.")
    aug_mixup: float = option(0.0, "MixUp: alpha of the Beta(alpha, alpha) mixing weight "
                             "(0.2 is usual); labels are mixed too.")
    aug_cutmix: float = option(0.0, "CutMix: alpha of the Beta(alpha, alpha) pasted area "
                              "(1.0 is usual); with --aug_mixup, each batch gets one of the two.")

    def __post_init__(self) -> None:
        require(0.0 <= self.aug_crop < 1.0, "aug_crop", "must be in [0, 1)")
        for name in ("aug_rotation", "aug_zoom", "aug_translate", "aug_contrast", "aug_shear",
                     "aug_color_jitter", "aug_erasing"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, f"must be in [0, 1], got {value}")
        for name in ("aug_noise", "aug_mixup", "aug_cutmix"):
            require(getattr(self, name) >= 0.0, name, "must be >= 0")
        if self.aug_randaugment:
            self.randaugment()

    def randaugment(self) -> tuple[int, float]:
        """(N operations, magnitude M in 0..10) of --aug_randaugment."""
        parts = self.aug_randaugment.split(",")
        try:
            n, m = int(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            n, m = -1, -1.0
        require(len(parts) == 2 and 1 <= n <= 10 and 0 <= m <= 10, "aug_randaugment",
                f"give N,M with N operations in 1..10 and magnitude M in 0..10 (e.g. 2,9), got "
                f"{self.aug_randaugment!r}")
        return n, m

    @property
    def mixes_labels(self) -> bool:
        """MixUp or CutMix: training labels become soft (mixed one-hot vectors)."""
        return bool(self.aug_mixup or self.aug_cutmix)

    def first_enabled(self) -> str | None:
        """The name of the first transform that is on; None when all are off."""
        return next((f.name for f in dataclasses.fields(self)
                     if getattr(self, f.name) not in (0, 0.0, "none", "")), None)

    @property
    def enabled(self) -> bool:
        return self.first_enabled() is not None


@dataclass(frozen=True)
class ModelConfig:
    """Backbone and the new classification head."""

    backbone: str = option(
        "MobileNetV3Small", "Backbone: a keras.applications name (see --list_backbones), "
        "small_cnn, hub:HANDLE (a TF Hub URL or a local SavedModel folder) or file:PATH.keras "
        "(your own model).")
    weights: str = option("imagenet", "Backbone weights: imagenet, none (random init) or the "
                         "path of a weights file (.weights.h5 / .h5). hub: and file: backbones "
                         "bring their own weights (imagenet means: as shipped).")
    backbone_layer: str = option("", "Cut the backbone at this layer (its output becomes the "
                                "features), e.g. to drop the classifier of a file: model.")
    preprocess: str = option("auto", "Pixel preprocessing before the backbone; auto: the "
                            "registry's for keras.applications, scale01 ([0,1]) for hub:, the "
                            "saved model's own (or none) for file:.", ("auto",),
                            registry="ktransfer.image.preprocess:PREPROCESSING")
    hub_output_key: str = option("", "hub: modules returning a dict: the output to use "
                                "(default: 'default' or the only one).")
    unsafe_load: bool = option(False, "Allow loading model files that contain code (Lambda "
                              "layers). Only for files you trust.")
    init_from: str = option("", "Start from a model ktransfer trained (a run directory or its "
                            "model.keras): all its weights, head included. To keep training "
                            "it, on new images of the same classes or, with --target_data, to "
                            "adapt it to a new domain. Give the --backbone, --image_size and "
                            "--head_hidden it was trained with.")
    pooling: str = option("avg", "How the backbone's output becomes one vector per example: "
                          "avg (images: over positions; text: mean over the tokens, padding "
                          "masked; also called mean), max, flatten (images), cls (text: the "
                          "first token).", registry="ktransfer.heads:POOLINGS")
    head_hidden: tuple[int, ...] = option((), "Hidden Dense layer sizes of the head, "
                                         "comma-separated (e.g. 256,128); empty for none.")
    head_activation: str = option("relu", "Activation of the hidden head layers.",
                                 ("relu", "gelu", "swish", "tanh", "elu"))
    dropout: float = option(0.2, "Dropout rate before each Dense layer of the head.")
    l2: float = option(0.0, "L2 penalty on the head's kernels.")
    initializer: str = option("glorot_uniform", "Kernel initializer of the head.",
                             ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                              "lecun_normal", "zeros"))
    label_smoothing: float = option(0.0, "Label smoothing of the cross-entropy loss.")
    bn_trainable: bool = option(False, "Let BatchNorm layers train when the backbone is "
                               "unfrozen (default: they stay frozen, in inference mode).")

    def __post_init__(self) -> None:
        require(bool(self.backbone), "backbone", "is required (see --list_backbones)")
        for prefix in ("hub:", "file:"):
            require(self.backbone != prefix, "backbone", f"give a handle or path after {prefix}")
        require(bool(self.weights), "weights", "give imagenet, none or a weights file path")
        if self.backbone.startswith(("hub:", "file:")):
            require(self.weights != "none", "weights", "hub: and file: backbones bring their "
                   "own weights; leave --weights=imagenet (as shipped) or give a weights file")
        require(all(n >= 1 for n in self.head_hidden), "head_hidden", "sizes must be >= 1")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.l2 >= 0.0, "l2", "must be >= 0")
        require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    """The two training phases, optimizer, schedule and callbacks."""

    epochs: int = option(5, "Phase 1: epochs training the head with the backbone frozen.")
    lr: float = option(1e-3, "Phase 1 peak learning rate, or auto: the valley rule of a "
                       "learning-rate range test run first (see ktransfer.find_lr).", auto=True)
    fine_tune_epochs: int = option(0, "Phase 2: epochs fine-tuning with the top of the backbone "
                                  "unfrozen; 0 skips phase 2.")
    fine_tune_lr: float = option(1e-4, "Phase 2 peak learning rate (usually 10-100x lower), or "
                                 "auto (a range test of phase 2, after training the head).",
                                 auto=True)
    cache_features: bool = option(True, "Phase 1: compute the frozen backbone's features once "
                                 "and train the head on them: the same training, much faster. "
                                 "Off by itself when augmentation or domain adaptation needs "
                                 "the backbone every epoch; --nocache_features turns it off.")
    unfreeze: str = option("all", "Phase 2: which backbone layers train: all; the top N layers "
                          "that have weights (an integer); or comma-separated layer-name "
                          "patterns (regex from the start of the name; a block name such as "
                          "block5 selects its whole block).")
    gradual_unfreeze: int = option(0, "Phase 2: start with the top block of --unfreeze and "
                                  "unfreeze one block more every this many epochs; 0: all at "
                                  "once.")
    lr_layer_decay: float = option(1.0, "Phase 2: layer-wise learning-rate decay; the head gets "
                                  "--fine_tune_lr, the top backbone block x this, the next "
                                  "x this^2, ...; 1 turns it off.")
    print_model: bool = option(False, "Print each backbone layer's block, parameters and "
                              "whether it trains in each phase, before training.")
    optimizer: str = option("adam", "Optimizer.", registry="ktransfer.optimizers:OPTIMIZERS")
    momentum: float = option(0.9, "SGD momentum.")
    momentum_low: float = option(0.0, "SGD with one_cycle: cycle the momentum inversely to the "
                                 "rate, from --momentum down to this at the peak rate and back "
                                 "(fastai: 0.95, 0.85); 0 keeps it constant.")
    weight_decay: float = option(0.0, "Decoupled weight decay (AdamW, SGD).")
    accumulate: int = option(1, "Gradient accumulation: update the weights every N batches "
                             "with their mean gradient (the step of an N x --batch_size batch; "
                             "BatchNorm still sees --batch_size); 1 turns it off.")
    l2sp: str = option("", "L2-SP transfer regularisation (Li et al. 2018) as ALPHA[,BETA]: "
                       "adds ALPHA/2 |w - w0|^2 pulling the backbone's weights toward w0, "
                       "their values when the run started (pretrained; kept in the run "
                       "directory), and BETA/2 |w|^2 on the new head (default ALPHA/10, the "
                       "paper's 0.1 and 0.01). Replaces --weight_decay.")
    ema: float = option(0.0, "Keep an exponential moving average of the weights (this decay per "
                        "optimizer step, e.g. 0.999) and validate, checkpoint, evaluate and "
                        "export the average; 0 turns it off.")
    lr_schedule: str = option("cosine", "Learning-rate schedule within each phase.",
                              registry="ktransfer.schedules:SCHEDULES")
    warmup_epochs: float = option(0.0, "Linear warm-up from 0 to the peak rate, in epochs.")
    decay_rate: float = option(0.9, "exponential: factor applied per epoch.")
    step_every: int = option(10, "step: divide the rate every this many epochs.")
    step_factor: float = option(10.0, "step: divide the rate by this factor.")
    cosine_alpha: float = option(0.0, "cosine and one_cycle: final rate as a fraction of the "
                                 "peak.")
    cycle_epochs: float = option(4.0, "cyclic: epochs of one whole cycle (up and down).")
    cyclic_policy: str = option("triangular", "cyclic: triangular (the same swing every cycle), "
                                "triangular2 (halved each cycle), exp_range (x --cycle_gamma "
                                "per step).", ("triangular", "triangular2", "exp_range"))
    cycle_gamma: float = option(0.9999, "cyclic exp_range: swing factor per step.")
    lr_floor: float = option(0.1, "cyclic: the lowest rate as a fraction of the peak.")
    early_stopping: int = option(0, "Stop after this many epochs without improvement of "
                                "--monitor and restore the best weights; 0 turns it off.")
    monitor: str = option("val_loss", "Metric for early stopping and the best checkpoint.",
                         ("val_loss", "val_accuracy"))
    steps_per_epoch: int = option(0, "Limit training steps per epoch; 0 runs the whole set.")
    seed: int = option(0, "Seed for weights, shuffling and augmentation.")
    verbose: int = option(1, "0 silent, 1 progress bars, 2 one line per epoch.")
    run_dir: str = option("", "Run directory; default runs/<backbone>-<time>.")
    overwrite: bool = option(False, "Replace an existing, non-empty --run_dir.")
    tensorboard: bool = option(True, "Write TensorBoard logs to RUN_DIR/tensorboard.")
    export_dir: str = option("", "After training, export a SavedModel for TF Serving to "
                            "EXPORT_DIR/VERSION (next free version), e.g. exports/flowers.")
    report: bool = option(True, "Evaluate on the test set (else validation) and write "
                         "RUN_DIR/report.html with plots.")

    def auto_phases(self) -> list[str]:
        """The phases whose peak rate is `auto` and that run: "head", "fine_tune"."""
        return [phase for phase, rate, epochs in (("head", self.lr, self.epochs),
                                                  ("fine_tune", self.fine_tune_lr,
                                                   self.fine_tune_epochs))
                if rate == AUTO_LR and epochs]

    def l2sp_weights(self) -> tuple[float, float]:
        """(ALPHA, BETA) of --l2sp: the pull toward the pretrained backbone, and plain L2 on
        the head; (0, 0) when it is off."""
        if not self.l2sp:
            return 0.0, 0.0
        parts = self.l2sp.split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        require(len(values) in (1, 2) and all(0.0 <= v < 1e3 for v in values)
                and values[0] > 0, "l2sp", "must be ALPHA or ALPHA,BETA with ALPHA > 0 and "
                f"BETA >= 0 (e.g. 0.1,0.01), got {self.l2sp!r}")
        return values[0], values[1] if len(values) == 2 else values[0] / 10

    def __post_init__(self) -> None:
        for name in ("epochs", "fine_tune_epochs", "warmup_epochs", "steps_per_epoch"):
            value = getattr(self, name)
            require(value >= 0, name, f"must be >= 0, got {value}")
        for name in ("lr", "fine_tune_lr"):
            if getattr(self, name) == "auto":  # from Python: build(lr="auto")
                object.__setattr__(self, name, AUTO_LR)
            value = getattr(self, name)
            require(value > 0.0 or value == AUTO_LR, name, f"must be > 0 or auto, got {value}")
        require(bool(self.unfreeze.strip(",").strip()) and self.unfreeze != "0", "unfreeze",
               "must be 'all', a positive integer or layer-name patterns")
        require(self.gradual_unfreeze >= 0, "gradual_unfreeze", "must be >= 0")
        require(0.0 < self.lr_layer_decay <= 1.0, "lr_layer_decay", "must be in (0, 1]")
        require(0.0 <= self.momentum < 1.0, "momentum", "must be in [0, 1)")
        require(0.0 <= self.momentum_low < max(self.momentum, 1e-12) or not self.momentum_low,
                "momentum_low", f"must be in [0, --momentum={self.momentum})")
        require(not self.momentum_low or (self.optimizer == "sgd"
                                          and self.lr_schedule == "one_cycle"),
                "momentum_low", "cycles SGD's momentum against a one-cycle rate: give it with "
                "--optimizer=sgd --lr_schedule=one_cycle")
        require(1 <= self.accumulate <= 1024, "accumulate", "must be in 1..1024")
        require(self.weight_decay >= 0.0, "weight_decay", "must be >= 0")
        require(0.0 <= self.ema < 1.0, "ema", f"must be in [0, 1) (0 turns it off), got {self.ema}")
        if self.l2sp:
            self.l2sp_weights()
            require(self.weight_decay == 0.0, "l2sp", "replaces weight decay (it pulls the "
                    "backbone toward its pretrained weights, weight decay toward zero); give "
                    "--weight_decay=0 with it")
        require(0.0 < self.decay_rate <= 1.0, "decay_rate", "must be in (0, 1]")
        require(self.step_every >= 1, "step_every", "must be >= 1")
        require(self.step_factor >= 1.0, "step_factor", "must be >= 1")
        require(0.0 <= self.cosine_alpha <= 1.0, "cosine_alpha", "must be in [0, 1]")
        require(self.cycle_epochs > 0, "cycle_epochs", "must be > 0")
        require(0.0 < self.cycle_gamma <= 1.0, "cycle_gamma", "must be in (0, 1]")
        require(0.0 <= self.lr_floor <= 1.0, "lr_floor", "must be in [0, 1]")
        require(self.early_stopping >= 0, "early_stopping", "must be >= 0")
        require(self.verbose in (0, 1, 2), "verbose", "must be 0, 1 or 2")
        if self.export_dir:
            name = os.path.basename(os.path.normpath(self.export_dir))
            require(bool(re.fullmatch(r"[A-Za-z0-9_.-]+", name)), "export_dir",
                   f"must end in a model name made of letters, digits, '_', '.' or '-', "
                   f"got {self.export_dir!r}")


@dataclass(frozen=True)
class AdaptConfig:
    """Domain adaptation: unlabelled target images and the MMD loss that pulls domains together."""

    target_data: str = option("", "Unlabelled target-domain images (any --data form; labels "
                             "are ignored; a 'train' split is used when there is one). Turns "
                             "on MMD adaptation.")
    target_eval_data: str = option("", "Labelled target-domain images to report target accuracy "
                                  "and the domain MMD before/after ('test' split if any); works "
                                  "without --target_data too (source-only baseline).")
    mmd_weight: float = option(1.0, "Weight of the MMD loss (features after the backbone and "
                              "after each hidden head layer).")
    mmd_layers: str = option("all", "Where MMD alignment applies: all (the pooled backbone "
                             "features and every hidden head layer), features (the pooled "
                             "features only) or head (the hidden head layers only).",
                             ("all", "features", "head"))
    mmd_rampup: bool = option(True, "Ramp the MMD weight from 0 as 2/(1+exp(-10p))-1 over each "
                             "phase's progress p.")
    mmd_estimator: str = option("unbiased", "MMD estimator (marginal alignment).",
                                registry="ktransfer.mmd:ESTIMATORS")
    mmd_alignment: str = option("marginal", "marginal: one MMD between all source and all "
                                "target features (DAN); class: one MMD per class, source rows "
                                "weighted by label, target rows by predicted probability "
                                "(DSAN's local MMD); joint: one MMD of (features, predictions) "
                                "pairs (JAN); cdan: a conditional domain discriminator behind "
                                "gradient reversal (CDAN+E, weighted by --mmd_weight).",
                                registry="ktransfer.adaptation:ALIGNMENTS")
    adabn: bool = option(False, "Normalise for the target domain: during training source and "
                         "target batches pass BatchNorm separately (each by its own "
                         "statistics), and afterwards every backbone BatchNorm layer's moving "
                         "statistics are re-estimated on the target images (AdaBN), so the "
                         "saved model is a target-domain model.")
    target_loss: str = option("none", "A loss on the unlabelled target predictions beside the "
                              "MMD: none; entropy (confident); im (confident and using every "
                              "class, against collapse); mcc (minimum class confusion).",
                              ("none",), registry="ktransfer.target_losses:TARGET_LOSSES")
    target_loss_weight: float = option(0.1, "Weight of --target_loss (ramped up with the MMD "
                                       "weight).")
    class_threshold: float = option(0.0, "mmd_alignment=class: target rows whose largest "
                                    "predicted probability is below this get no weight.")
    pseudo_labels: str = option("predictions", "mmd_alignment=class: what weighs each target "
                                "row by class: predictions (the classifier's probabilities, "
                                "DSAN) or clusters (the nearest class centroid of the target "
                                "features, re-estimated every epoch, as SHOT labels; did not "
                                "help on the digits benchmark, see README) or balanced (the "
                                "probabilities rescaled per class so that the target's "
                                "predicted classes follow the source's class frequencies, "
                                "against a sink class that takes many target examples).",
                                ("predictions", "clusters", "balanced"))
    collapse_guard: bool = option(True, "With --init_from (a trained model, whose target "
                                  "predictions mean something): stop an adaptation phase and "
                                  "put back its last good epoch when a class vanishes from the "
                                  "target predictions or the source validation accuracy falls "
                                  "by 10 points.")
    da_select: str = option("last", "Which epoch of an adaptation run to keep, chosen without "
                            "target labels: last; source_val (source validation accuracy); "
                            "im, snd, bnm (scores of the target predictions); dev (deep "
                            "embedded validation). See ktransfer/validators.py.", ("last",),
                            registry="ktransfer.validators:VALIDATORS")

    def __post_init__(self) -> None:
        require(self.mmd_weight >= 0.0, "mmd_weight", "must be >= 0")
        require(self.target_loss_weight >= 0.0, "target_loss_weight", "must be >= 0")
        require(0.0 <= self.class_threshold < 1.0, "class_threshold", "must be in [0, 1)")
        require(self.pseudo_labels == "predictions" or self.mmd_alignment == "class",
                "pseudo_labels", f"{self.pseudo_labels} weighs class MMD's target rows; it needs "
                "--mmd_alignment=class")
        require(self.da_select == "last" or bool(self.target_data), "da_select",
                "chooses among the epochs of an adaptation run: give --target_data too")
        require(not self.adabn or bool(self.target_data), "adabn",
                "needs --target_data (the unlabelled images to normalise for)")


@dataclass(frozen=True)
class TextConfig:
    """Text inputs (--modality=text): table columns, tokenisation and the bad-text policy."""

    text_column: str = option("text", "CSV / TSV / JSON-lines data: the column (key) holding "
                              "the text.")
    label_column: str = option("label", "CSV / TSV / JSON-lines data: the column (key) holding "
                               "the class name.")
    max_length: int = option(128, "Longest token sequence, special tokens included; longer "
                             "texts are truncated (and counted in the report).")
    length_buckets: bool = option(True, "Fine-tuning batches of texts of similar length, each "
                                  "padded to its own longest text rather than --max_length.")
    on_bad_text: str = option("fail", "A text that is empty or not valid UTF-8: stop with an "
                              "error naming its file and line, or skip it (counted in the "
                              "report).", ("fail", "skip"))
    hub_preprocessor: str = option("", "hub: text encoders: the TF Hub preprocessing model that "
                                   "goes with the encoder (URL or folder), e.g. "
                                   "bert_en_uncased_preprocess.")

    def __post_init__(self) -> None:
        require(bool(self.text_column), "text_column", "give a column name")
        require(bool(self.label_column), "label_column", "give a column name")
        require(self.text_column != self.label_column, "label_column",
                "must differ from --text_column")
        require(4 <= self.max_length <= 8192, "max_length",
                f"must be in [4, 8192], got {self.max_length}")


@dataclass(frozen=True)
class DistributeConfig:
    """Where and how fast: tf.distribute strategy, precision policy, XLA."""

    strategy: str = option("auto", "auto: all GPUs of this machine (mirrored) or the one device; "
                          "one_device; mirrored (all local GPUs, or --cpu_devices); "
                          "multi_worker (TF_CONFIG); tpu.",
                          registry="ktransfer.distribute:STRATEGIES")
    mixed_precision: str = option("auto", "auto: mixed_float16 on GPUs that run float16 fast "
                                 "(compute capability >= 7.0), float32 otherwise (CPU).",
                                 ("auto", "float32", "mixed_float16", "mixed_bfloat16"))
    jit_compile: str = option("auto", "Compile training steps with XLA: on, off, or auto "
                             "(Keras' choice: on for GPUs when every layer supports it).",
                             ("auto", "on", "off"))
    cpu_devices: int = option(0, "Split the CPU into this many logical devices (to try "
                             "--strategy=mirrored without GPUs); 0 leaves it whole.")

    def __post_init__(self) -> None:
        require(self.cpu_devices >= 0, "cpu_devices", "must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """Everything one `ktransfer.train` run needs."""

    data: DataConfig
    augment: AugmentConfig
    model: ModelConfig
    train: TrainConfig
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def __post_init__(self) -> None:
        require(self.adapt.mmd_layers != "head" or bool(self.model.head_hidden), "mmd_layers",
                "head aligns the hidden head layers and this head has none: give "
                "--head_hidden or --mmd_layers=all")
        require(self.train.epochs + self.train.fine_tune_epochs > 0 or bool(self.model.init_from),
                "epochs", "--epochs and --fine_tune_epochs are both 0: nothing to train (with "
                "--init_from, 0 and 0 re-use that model as it is)")


@dataclass(frozen=True)
class TuneConfig:
    """The search of `ktransfer.tune`: what it searches (the head, or the adaptation), which
    tuner, how many trials, where its state lives, and the search space. A head trial trains
    for --epochs (the head phase) with --batch_size; an adaptation trial is a whole run."""

    space: str = option("head", "What to search: head (the head's hyperparameters on the "
                        "frozen backbone, on cached features, scored by validation accuracy) or "
                        "adaptation (--mmd_alignment and --mmd_weight; every trial a whole "
                        "adaptation run of the train flags, scored by --objective without "
                        "target labels).", registry="ktransfer.tuning:SPACES")
    objective: str = option("source_val", "space=adaptation: the validator whose score of the "
                            "kept epoch ranks the trials (see --da_select).",
                            registry="ktransfer.validators:VALIDATORS")
    hp_alignments: tuple[str, ...] = option(("marginal", "class"), "space=adaptation: "
                                            "alignments to try.",
                                            registry="ktransfer.adaptation:ALIGNMENTS")
    hp_mmd_weights: tuple[float, ...] = option((0.1, 0.3, 1.0), "space=adaptation: MMD "
                                               "weights to try.")
    hp_init_from: tuple[str, ...] = option((), "space=adaptation: source runs (--init_from: run "
                                           "directories or model.keras files) to adapt from, "
                                           "e.g. the same source training with other --seed "
                                           "values; empty: the train flags' --init_from.")
    tuner: str = option("random", "Search algorithm.", registry="ktransfer.tuning:TUNERS")
    max_trials: int = option(10, "Trials to run (random, bayesian); hyperband sizes itself "
                            "from --epochs.")
    directory: str = option("tuning", "Folder of the search state, trials.csv and best.cfg.")
    project: str = option("head", "Name of the search inside --directory; the same command "
                         "resumes it.")
    hp_layers: int = option(2, "Search 0 to this many hidden layers.")
    hp_units: tuple[int, ...] = option((64, 128, 256), "Hidden layer sizes to try.")
    hp_dropout: tuple[float, ...] = option((0.0, 0.5), "Dropout range (min,max), step 0.05.")
    hp_l2: tuple[float, ...] = option((0.0, 1e-5, 1e-4, 1e-3), "L2 penalties to try.")
    hp_lr: tuple[float, ...] = option((1e-4, 1e-1), "Learning-rate range (min,max), log scale.")
    hp_schedules: tuple[str, ...] = option(("constant", "cosine", "exponential"),
                                          "Learning-rate schedules to try.",
                                          registry="ktransfer.schedules:SCHEDULES")
    hp_label_smoothing: tuple[float, ...] = option((0.0, 0.2), "Label smoothing range "
                                                  "(min,max), step 0.05.")

    def __post_init__(self) -> None:
        require(self.max_trials >= 1, "max_trials", "must be >= 1")
        require(bool(self.directory), "directory", "is required")
        require(self.hp_layers >= 0, "hp_layers", "must be >= 0")
        require(self.space == "head" or self.tuner != "hyperband", "tuner",
                "hyperband schedules epochs of one model; --space=adaptation takes random or "
                "bayesian")
        require(bool(self.hp_mmd_weights) and min(self.hp_mmd_weights) >= 0.0, "hp_mmd_weights",
                "give weights >= 0, e.g. 0.1,0.3,1")
        require(not self.hp_init_from or self.space == "adaptation", "hp_init_from",
                "source runs to adapt from are searched with --space=adaptation")
        require(bool(self.hp_units) and min(self.hp_units) >= 1, "hp_units",
                "give sizes >= 1, e.g. 64,128")
        for name, low in (("hp_dropout", 0.0), ("hp_label_smoothing", 0.0), ("hp_lr", 1e-12)):
            pair = getattr(self, name)
            require(len(pair) == 2 and low <= pair[0] <= pair[1], name,
                    f"give min,max with {low} <= min <= max, got {','.join(map(str, pair))}")
        require(self.hp_dropout[1] < 1.0 and self.hp_label_smoothing[1] < 1.0, "hp_dropout",
                "dropout and label smoothing must stay below 1")
        require(bool(self.hp_l2) and min(self.hp_l2) >= 0.0, "hp_l2", "give penalties >= 0")
        require(bool(self.hp_schedules), "hp_schedules", "give at least one schedule")


@dataclass(frozen=True)
class SearchConfig:
    """Everything one `ktransfer.tune` search needs: the runs its trials make, and the search."""

    run: RunConfig
    tune: TuneConfig


@dataclass(frozen=True)
class FindLRConfig:
    """`ktransfer.find_lr`: an exponential learning-rate range test (Smith 2017; fastai's
    lr_find) for one phase of the run the train flags describe."""

    phase: str = option("head", "Which phase to test: head (the new head on the frozen "
                        "backbone; on cached features with --cache_features) or fine_tune "
                        "(--unfreeze's layers train too).", ("head", "fine_tune"))
    start_lr: float = option(1e-7, "The first learning rate of the test.")
    end_lr: float = option(10.0, "The last learning rate of the test.")
    num_steps: int = option(100, "Optimizer steps, each at a rate start_lr x "
                            "(end_lr/start_lr)^(i/(num_steps-1)).")
    diverge: float = option(4.0, "Stop early once the smoothed loss exceeds this many times its "
                            "lowest value.")
    output_dir: str = option("lr_find", "Folder for lr_find.csv, lr_find.png and "
                             "lr_find.json.")

    def __post_init__(self) -> None:
        require(0.0 < self.start_lr < self.end_lr, "start_lr",
                f"must be > 0 and below --end_lr, got {self.start_lr} and {self.end_lr}")
        require(10 <= self.num_steps <= 100_000, "num_steps", "must be in 10..100000")
        require(self.diverge > 1.0, "diverge", "must be > 1")
        require(bool(self.output_dir), "output_dir", "is required")


@dataclass(frozen=True)
class LRFinderConfig:
    """Everything one `ktransfer.find_lr` run needs: the run it tests, and the test."""

    run: RunConfig
    find: FindLRConfig


@dataclass(frozen=True)
class LoadConfig:
    """A trained classifier to load: the flags `evaluate`, `predict` and `export` share."""

    model: str = option("", "A run directory of ktransfer.train or a .keras classifier "
                        "(labels.txt beside it).")
    unsafe_load: bool = option(False, "Allow a model file that contains code (Lambda layers). "
                               "Only for files you trust.")


@dataclass(frozen=True)
class EvaluateConfig(LoadConfig):
    """`ktransfer.evaluate`: metrics, confusion matrix and plots of a classifier."""

    data: str = option("", "Labelled examples (the forms of train's --data); default: the "
                       "run's own split (see --split).")
    data_dir: str = option("", "tfds data folder.")
    split: str = option("test", "Which split: of the run (without --data), or of --data when "
                        "it has splits (all: every example).", ("test", "val", "train", "all"))
    output_dir: str = option("", "Where evaluation.json and the plots go; default "
                             "MODEL_DIR/evaluation-SPLIT.")
    batch_size: int = option(64, "Examples per batch.")
    top_k: int = option(5, "k of the top-k accuracy.")
    on_bad_image: str = option("fail", "An unreadable image file: stop with an error naming "
                               "it, or skip it with a warning.", ("fail", "skip"))
    on_bad_text: str = option("fail", "An empty or undecodable text: stop with an error naming "
                              "it, or skip it with a warning.", ("fail", "skip"))
    text_column: str = option("", "Text tables: the text column (default: the run's).")
    label_column: str = option("", "Text tables: the label column (default: the run's).")
    tta: str = option("none", "Test-time augmentation (images): average the probabilities of "
                      "the image and its mirror (flip), of five crops (crops) or of both "
                      "(flip_crops).", registry="ktransfer.image.tta:TTA_VIEWS")

    def __post_init__(self) -> None:
        require(bool(self.model), "model", "is required (a run directory or a .keras file)")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.top_k >= 1, "top_k", "must be >= 1")


@dataclass(frozen=True)
class PredictConfig(LoadConfig):
    """`ktransfer.predict`: the top classes of each example."""

    top_k: int = option(1, "How many classes per example.")
    format: str = option("text", "Output format.", ("text", "csv", "json"))
    output: str = option("", "Write to this file (atomically) instead of stdout.")
    on_bad_image: str = option("fail", "A file that is not a readable image: stop with an "
                               "error naming it, or skip it with a warning.", ("fail", "skip"))
    on_bad_text: str = option("fail", "An empty or undecodable text: stop with an error naming "
                              "it, or skip it with a warning.", ("fail", "skip"))
    text: str = option("", "Text models: one text to classify (also: .txt files with one text "
                       "per line, folders of .txt files, or - for standard input).")
    batch_size: int = option(64, "Examples per batch.")
    tta: str = option("none", "Test-time augmentation (images): average the probabilities of "
                      "the image and its mirror (flip), of five crops (crops) or of both "
                      "(flip_crops).", registry="ktransfer.image.tta:TTA_VIEWS")
    explain: str = option("", "Images: also write a Grad-CAM heat map of each image's top class "
                          "over it into this folder (NNNN-NAME.png, in input order).")
    explain_layer: str = option("", "The backbone layer Grad-CAM weighs (a spatial feature "
                                "map); default: the last one.")

    def __post_init__(self) -> None:
        require(bool(self.model), "model", "is required (a run directory or a .keras file)")
        require(self.top_k >= 1, "top_k", "must be >= 1")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass(frozen=True)
class ExportConfig(LoadConfig):
    """`ktransfer.export`: a SavedModel for TF Serving."""

    run_dir: str = option("", "Run directory of ktransfer.train (or use --model).")
    export_dir: str = option("", "Where the model's numbered versions go: DIR/NAME (TF "
                             "Serving's base path).")
    version: int = option(0, "Version number; 0 takes the next free one.")
    top_k: int = option(5, "How many top classes the signatures return.")
    tflite: str = option("none", "Also write VERSION/model.tflite of the pixels signature "
                         "(image models): float32, float16, dynamic (int8 weights) or int8 (full "
                         "integer, calibrated on up to 200 training images); scored on the "
                         "run's test split next to the Keras model.", ("none",),
                         registry="ktransfer.conversion:TFLITE")
    onnx: bool = option(False, "Also write VERSION/model.onnx (tf2onnx, opset 17) of the pixels "
                        "model, scored with onnxruntime on the run's test split.")
    max_accuracy_drop: float = option(0.02, "Largest test-accuracy drop a TFLite or ONNX copy "
                                      "may have against the Keras model (0.02 = 2 points).")
    on_accuracy_drop: str = option("fail", "A larger drop: fail (nothing is exported) or warn "
                                   "(exported, and recorded in conversions.json).",
                                   ("fail", "warn"))

    def __post_init__(self) -> None:
        require(bool(self.run_dir) != bool(self.model), "run_dir",
                "give exactly one of --run_dir and --model")
        require(bool(self.export_dir), "export_dir", "is required, e.g. "
                "--export_dir=exports/digits")
        require(self.version >= 0, "version", "must be >= 0")
        require(self.top_k >= 1, "top_k", "must be >= 1")
        require(0.0 <= self.max_accuracy_drop <= 1.0, "max_accuracy_drop", "must be in [0, 1]")

    @property
    def source(self) -> str:
        """The run directory or model file to export."""
        return self.run_dir or self.model


GROUPS: dict[str, type] = {
    "data": DataConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "distribute": DistributeConfig,
    "adapt": AdaptConfig,
    "text": TextConfig,
}
SEARCH_GROUPS: dict[str, type] = {**GROUPS, "tune": TuneConfig}
FIND_LR_GROUPS: dict[str, type] = {**GROUPS, "find": FindLRConfig}

Choices = Callable[[str], tuple[str, ...]]


def define_flags(flag_values: Any = None, groups: dict[str, type] = GROUPS,
                 registry_names: Choices | None = None) -> None:
    """Defines one absl flag per config field (idempotent per FlagValues).

    `registry_names(path)` gives the names of the registry a field names; without it such
    fields are free strings (checked in pre-flight), so parsing a flagfile imports nothing.
    """
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    for cls in groups.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in fv:
                _define(flags, fv, f, hints[f.name], registry_names)


def _define(flags: Any, fv: Any, f: dataclasses.Field, kind: Any,
            registry_names: Choices | None) -> None:
    helptext = f.metadata["help"]
    choices = tuple(f.metadata.get("choices") or ())
    if f.metadata.get("registry") and registry_names is not None:
        choices += registry_names(f.metadata["registry"])
    elif f.metadata.get("registry"):
        choices = ()
    if f.metadata.get("auto"):
        flags.DEFINE(_RateParser(flags), f.name, f.default, helptext, flag_values=fv)
    elif typing.get_origin(kind) is tuple:  # comma-separated list
        flags.DEFINE_list(f.name, [str(v) for v in typing.cast(tuple, f.default)], helptext,
                          flag_values=fv)
    elif choices:
        flags.DEFINE_enum(f.name, f.default, list(choices), helptext, flag_values=fv)
    elif kind is bool:
        flags.DEFINE_bool(f.name, f.default, helptext, flag_values=fv)
    elif kind is int:
        flags.DEFINE_integer(f.name, f.default, helptext, flag_values=fv)
    elif kind is float:
        flags.DEFINE_float(f.name, f.default, helptext, flag_values=fv)
    else:
        flags.DEFINE_string(f.name, f.default, helptext, flag_values=fv)


def _RateParser(flags: Any) -> Any:  # noqa: N802 (a class made on demand: absl is imported late)
    """An absl parser of a float that may also be `auto` (parsed as AUTO_LR)."""

    class RateParser(flags.FloatParser):
        def parse(self, argument: Any) -> float:
            if isinstance(argument, str) and argument.strip().lower() == "auto":
                return AUTO_LR
            return super().parse(argument)

    return RateParser()


def fields_with_registry(cfg: Any) -> list[tuple[str, Any, str]]:
    """(flag, value, registry path) of every registry-backed field of `cfg`, for pre-flight."""
    out = []
    for part in _parts(cfg):
        for f in dataclasses.fields(part):
            if f.metadata.get("registry"):
                value = getattr(part, f.name)
                fixed = tuple(f.metadata.get("choices") or ())
                values = value if isinstance(value, tuple) else (value,)
                out += [(f.name, v, f.metadata["registry"]) for v in values if v not in fixed]
    return out


def _convert(cls: type, f: dataclasses.Field, value: Any) -> Any:
    name = f.name
    kind = typing.get_type_hints(cls)[name]
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = [str(v).strip() for v in (value or []) if str(v).strip()]
        try:
            value = tuple(item(v) for v in items)
        except ValueError:
            raise ConfigError(name, f"expected comma-separated {item.__name__} values, "
                              f"got {','.join(items)!r}") from None
    _check_choices(f, value)
    return value


def _check_choices(f: dataclasses.Field, value: Any) -> None:
    """A field's fixed choices hold for every way of building a config, as the command line's
    enum flags hold them (registry-backed names are checked in pre-flight)."""
    choices = f.metadata.get("choices")
    if not choices or f.metadata.get("registry"):
        return
    for item in value if isinstance(value, tuple) else (value,):
        require(item in choices, f.name, f"expected one of {', '.join(choices)}, got {item!r}")


def _build_parts(groups: dict[str, type], values: dict[str, Any]) -> dict[str, Any]:
    """{group: its dataclass built from `values`}; unknown names are an error."""
    known = {f.name for cls in groups.values() for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(unknown[0], "is not a known option")
    return {group: cls(**{f.name: _convert(cls, f, values[f.name])
                          for f in dataclasses.fields(cls) if f.name in values})
            for group, cls in groups.items()}


def build(**values: Any) -> RunConfig:
    """Builds a validated `RunConfig` from keyword values (unknown names are an error).

    The notebook-friendly way to make a config:
    `config.build(data="builtin:digits", backbone="small_cnn", weights="none")`.
    """
    return RunConfig(**_build_parts(GROUPS, values))


def build_search(**values: Any) -> SearchConfig:
    """Builds a validated `SearchConfig` (run flags plus search flags) from keyword values."""
    parts = _build_parts(SEARCH_GROUPS, values)
    tune = parts.pop("tune")
    return SearchConfig(run=RunConfig(**parts), tune=tune)


def build_find_lr(**values: Any) -> LRFinderConfig:
    """Builds a validated `LRFinderConfig` (run flags plus range-test flags) from keyword
    values."""
    parts = _build_parts(FIND_LR_GROUPS, values)
    find = parts.pop("find")
    return LRFinderConfig(run=RunConfig(**parts), find=find)


def flag_values(fv: Any, groups: dict[str, type]) -> dict[str, Any]:
    """{field name: parsed flag value} for every field of `groups`."""
    return {f.name: fv[f.name].value for cls in groups.values() for f in dataclasses.fields(cls)}


def command_from_flags(cls: type, flag_values_: Any = None) -> Any:
    """A command's config (`EvaluateConfig`, ...) from parsed absl flags."""
    from absl import flags

    fv = flag_values_ if flag_values_ is not None else flags.FLAGS
    return _build_parts({"command": cls}, flag_values(fv, {"command": cls}))["command"]


def from_flags(flag_values_: Any = None) -> RunConfig:
    """Builds a validated `RunConfig` from parsed absl flags."""
    from absl import flags

    fv = flag_values_ if flag_values_ is not None else flags.FLAGS
    return build(**flag_values(fv, GROUPS))


def find_lr_from_flags(flag_values_: Any = None) -> LRFinderConfig:
    """Builds a validated `LRFinderConfig` from parsed absl flags."""
    from absl import flags

    fv = flag_values_ if flag_values_ is not None else flags.FLAGS
    return build_find_lr(**flag_values(fv, FIND_LR_GROUPS))


def search_from_flags(flag_values_: Any = None) -> SearchConfig:
    """Builds a validated `SearchConfig` from parsed absl flags."""
    from absl import flags

    fv = flag_values_ if flag_values_ is not None else flags.FLAGS
    return build_search(**flag_values(fv, SEARCH_GROUPS))


def parse_flagfile(path: str | os.PathLike, groups: dict[str, type] = GROUPS,
                   skip_unknown: bool = False) -> dict[str, Any]:
    """{field: value} of a flagfile, parsed as `--flagfile=PATH` would be; with `skip_unknown`
    lines of flags outside `groups` are left out (a run's flags.cfg read by another command)."""
    from absl import flags

    fv = flags.FlagValues()
    define_flags(fv, groups)
    argv = [f"--flagfile={os.fspath(path)}"]
    if skip_unknown:
        try:
            lines = [line.strip() for line in open(path, encoding="utf-8")]
        except OSError as exc:
            raise ConfigError("model", f"cannot read the run's flags: {exc}") from None
        argv = [line for line in lines if line.startswith("--") and _known(line, fv)]
    try:
        fv(["ktransfer", *argv])
    except flags.Error as exc:
        raise ConfigError("flagfile", f"{os.fspath(path)}: {exc}") from None
    return flag_values(fv, groups)


def _known(line: str, fv: Any) -> bool:
    """Whether a `--name=value` / `--noname` line sets a flag defined in `fv`."""
    name = line[2:].split("=", 1)[0]
    return name in fv or (name.startswith("no") and "=" not in line and name[2:] in fv)


def from_flagfile(path: str | os.PathLike, **overrides: Any) -> RunConfig:
    """Builds a config from a flagfile, as `--flagfile=PATH` would, then applies `overrides`.

    For notebooks: `config.from_flagfile("configs/quickstart.cfg", verbose=0)`.
    """
    return build(**{**parse_flagfile(path), **overrides})


def read_run_flags(path: str | os.PathLike) -> RunConfig:
    """The `RunConfig` of a run's resolved flags.cfg (flags of other commands in it skipped)."""
    return build(**parse_flagfile(path, GROUPS, skip_unknown=True))


def to_flagfile(cfg: Any, header: str = "") -> str:
    """Returns a flagfile that reproduces `cfg` exactly (every field written)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for part in _parts(cfg):
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if isinstance(value, bool):
                lines.append(f"--{f.name}" if value else f"--no{f.name}")
            elif f.metadata.get("auto") and value == AUTO_LR:
                lines.append(f"--{f.name}=auto")
            elif isinstance(value, tuple):
                lines.append(f"--{f.name}={','.join(str(v) for v in value)}")
            else:
                lines.append(f"--{f.name}={value}")
    return "\n".join(lines) + "\n"


def _parts(cfg: Any) -> list[Any]:
    """The flag-holding dataclasses of a RunConfig, SearchConfig or single group."""
    if isinstance(cfg, SearchConfig):
        return [*_parts(cfg.run), cfg.tune]
    if isinstance(cfg, RunConfig):
        return [getattr(cfg, name) for name in GROUPS]
    return [cfg]
