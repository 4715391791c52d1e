"""The configs of the commands besides train: `tune`, `find_lr`, `evaluate`, `predict`, `export`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ktransfer.config.fields import option, require
from ktransfer.config.groups import pick, reading_groups
from ktransfer.config.run import RunConfig


@dataclass(frozen=True)
class TuneConfig:
    """The search of `ktransfer.tune`: what it searches (the head, or the adaptation), which
    tuner, how many trials, where its state lives, and the search space. A head trial trains
    for --epochs (the head phase) with --batch_size; an adaptation trial is a whole run."""

    space: str = option("head", "What to search: head (the head's hyperparameters on the "
                        "frozen backbone, on cached features, scored by validation accuracy) or "
                        "adaptation (--mmd_alignment and --mmd_weight; every trial a whole "
                        "adaptation run of the train flags, scored by --objective without "
                        "target labels).", registry="ktransfer.tuning.catalog:SPACES")
    objective: str = option("source_val", "space=adaptation: the validator whose score of the "
                            "kept epoch ranks the trials (see --da_select).",
                            registry="ktransfer.domain.catalog:VALIDATORS")
    hp_alignments: tuple[str, ...] = option(("marginal", "class"), "space=adaptation: "
                                            "alignments to try.",
                                            registry="ktransfer.domain.catalog:ALIGNMENTS")
    hp_mmd_weights: tuple[float, ...] = option((0.1, 0.3, 1.0), "space=adaptation: MMD "
                                               "weights to try.")
    hp_init_from: tuple[str, ...] = option((), "space=adaptation: source runs (--init_from: run "
                                           "directories or model.keras files) to adapt from, "
                                           "e.g. the same source training with other --seed "
                                           "values; empty: the train flags' --init_from.")
    tuner: str = option("random", "Search algorithm.", registry="ktransfer.tuning.catalog:TUNERS")
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
                                          registry="ktransfer.optim.catalog:SCHEDULES")
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
class ProbeConfig:
    """`ktransfer.probe`: rank backbones from frozen features and audit the labels, before
    training (one feature pass per backbone)."""

    backbones: tuple[str, ...] = option((), "Backbones to rank, comma-separated, each a "
                                        "--backbone name with its weights after @ "
                                        "(small_cnn@FILE.weights.h5, efficientnet_lite0@none); "
                                        "no @: --weights. Empty: the train flags' --backbone.")
    folds: int = option(5, "Cross-validation folds of the linear probe (its out-of-fold "
                        "predictions feed the label audit).")
    curve_points: int = option(5, "Label fractions of the learning curve (from 1/2^(N-1) of "
                               "the training split up to all of it).")
    duplicate_similarity: float = option(0.99, "Cosine similarity of the best backbone's "
                                         "(centred) features at or above which two examples "
                                         "are reported as near-duplicates; copies score above "
                                         "0.999, and how close distinct examples come depends "
                                         "on the backbone and the data.")
    output_dir: str = option("probe", "Folder for probe.json, probe.html, label_audit.csv and "
                             "best.cfg.")

    def __post_init__(self) -> None:
        require(2 <= self.folds <= 20, "folds", "must be in 2..20")
        require(3 <= self.curve_points <= 8, "curve_points", "must be in 3..8")
        require(0.5 <= self.duplicate_similarity <= 1.0, "duplicate_similarity",
                "must be in 0.5..1")
        require(bool(self.output_dir), "output_dir", "is required")


@dataclass(frozen=True)
class ProbeRunConfig:
    """Everything one `ktransfer.probe` needs: the data (and default backbone) of the train
    flags, and the probe's own flags."""

    run: RunConfig
    probe: ProbeConfig

    def candidates(self) -> list[tuple[str, RunConfig]]:
        """(the name as given, the run's config with that backbone and weights) of every
        backbone to rank; `NAME@WEIGHTS` gives the weights, `NAME` keeps --weights."""
        found = []
        for given in self.probe.backbones or (self.run.model.backbone,):
            name, _, weights = given.partition("@")
            model = dataclasses.replace(self.run.model, backbone=name,
                                        weights=weights or self.run.model.weights)
            found.append((given, dataclasses.replace(self.run, model=model)))
        return found


@dataclass(frozen=True)
class LoadConfig:
    """A trained classifier to load: the flags `evaluate`, `predict` and `export` share."""

    model: str = option("", "A run directory of ktransfer.train or a .keras classifier "
                        "(labels.txt beside it).")
    unsafe_load: bool = option(False, "Allow a model file that contains code (Lambda layers, "
                               "TF Hub modules). Only for files you trust.")


@dataclass(frozen=True)
class ReadConfig(LoadConfig):
    """What `evaluate` and `predict` share: how examples are read and fed to the classifier.

    `reading` holds the declared groups' reading options (`config.groups`: --on_bad_image,
    --on_bad_text, table columns, ...) as (name, options) pairs, each field unset ("run" or
    "") until `config.resolve_from_run` gives it the value of the model's run.
    """

    batch_size: int = option(64, "Examples per batch.")
    tta: str = option("none", "Test-time augmentation (images): average the probabilities of "
                      "several views of each image.", registry="ktransfer.image.catalog:TTA_VIEWS")
    reading: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require(bool(self.model), "model", "is required (a run directory or a .keras file)")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")

    def group(self, name: str) -> Any:
        """The reading options of the declared group `name` (e.g. "text")."""
        return pick(self.reading, name, reading_groups())


@dataclass(frozen=True)
class EvaluateConfig(ReadConfig):
    """`ktransfer.evaluate`: metrics, confusion matrix and plots of a classifier."""

    data: str = option("", "Labelled examples (the forms of train's --data); default: the "
                       "run's own split (see --split).")
    data_dir: str = option("", "tfds data folder (default: the run's).", from_run=True)
    split: str = option("test", "Which split: of the run (without --data), or of --data when "
                        "it has splits (all: every example).", ("test", "val", "train", "all"))
    output_dir: str = option("", "Where evaluation.json and the plots go; default "
                             "MODEL_DIR/evaluation-SPLIT.")
    top_k: int = option(5, "k of the top-k accuracy.")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.top_k >= 1, "top_k", "must be >= 1")


@dataclass(frozen=True)
class PredictConfig(ReadConfig):
    """`ktransfer.predict`: the top classes of each example."""

    top_k: int = option(1, "How many classes per example.")
    format: str = option("text", "Output format.", ("text", "csv", "json"))
    output: str = option("", "Write to this file (atomically) instead of stdout.")
    text: str = option("", "Text models: one text to classify; --text=- reads standard input, "
                       "one text per line (so do .txt files and folders given as arguments, "
                       "and the argument -).")
    explain: str = option("", "Images: also write a Grad-CAM heat map of each image's top class "
                          "over it into this folder (NNNN-NAME.png, in input order).")
    explain_layer: str = option("", "The backbone layer Grad-CAM weighs (a spatial feature "
                                "map); default: the last one.")
    draw: str = option("", "Tasks with answers in the image (detection): also write each "
                       "image with its answers drawn on it into this folder (STEM.png).")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.top_k >= 1, "top_k", "must be >= 1")


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
                         registry="ktransfer.deploy.catalog:TFLITE")
    tflite_metadata: bool = option(False, "With --tflite: write model.tflite as MediaPipe "
                                   "Tasks read it, with label and normalisation metadata "
                                   "(MediaPipe's writer; the tflite-metadata extra): image "
                                   "classifiers as ImageClassifier reads them (pixels in, "
                                   "probabilities out), detectors as ObjectDetector does "
                                   "(its four outputs).")
    onnx: bool = option(False, "Also write VERSION/model.onnx (tf2onnx, opset 17) of the pixels "
                        "model, scored with onnxruntime on the run's test split.")
    formats: tuple[str, ...] = option((), "Also write these copies (comma-separated export "
                                      "formats; --tflite and --onnx are the same for theirs), "
                                      "each scored on the run's test split.",
                                      registry="ktransfer.deploy.catalog:FORMATS")
    quantize: str = option("none", "Quantize the SavedModel itself with Keras (Model.quantize): "
                           "int8 or int4 kernels of the Dense / EinsumDense / Embedding layers "
                           "(a float scale per channel; Keras leaves convolutions float32), or "
                           "float8 (Keras' "
                           "FP8 mode, for GPUs with FP8 units: larger on disk). Scored on the "
                           "run's test split against the float32 model; sizes and latencies "
                           "go to VERSION/quantization.json.", ("none", "int8", "int4", "float8"))
    max_accuracy_drop: float = option(0.02, "Largest test-accuracy drop a TFLite or ONNX copy, "
                                      "or a --quantize'd SavedModel, may have against the Keras "
                                      "model (0.02 = 2 points).")
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
        require(not self.tflite_metadata or self.tflite != "none", "tflite_metadata",
                "describes the TFLite copy: give --tflite=float32 (or float16, dynamic, int8)")
        require(self.quantize == "none" or (self.tflite == "none" and not self.onnx
                                            and not self.formats), "quantize",
                "quantizes the SavedModel, and the TFLite / ONNX copies convert the float32 "
                "one (--tflite=int8 quantizes its own): export them in a separate call")

    @property
    def source(self) -> str:
        """The run directory or model file to export."""
        return self.run_dir or self.model
