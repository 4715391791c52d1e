"""`TaskOptions`: the task's config group (how label values are read, the loss), declared by
`ktransfer.tasks` and read as `cfg.group("task")`."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import option, require


@dataclass(frozen=True)
class TaskOptions:
    """Targets (--task): how label values are read and which loss trains them."""

    label_column: str = option("label", "CSV / TSV / JSON-lines data: the column (key) holding "
                               "each example's label (a class name, labels, or a number).",
                               reading=True)
    label_separator: str = option("|", "multi_label: the character between the labels of one "
                                  "example in a CSV / TSV label column (e.g. cat|outdoor); "
                                  "JSON-lines files give a list.", reading=True)
    loss: str = option("auto", "The loss: auto (cross-entropy for classes, MSE for "
                       "regression), focal (single- and multi-label; --focal_gamma), "
                       "asymmetric (multi-label, Ridnik et al. 2021; --asl_gamma_neg, "
                       "--asl_clip) or huber (regression; --huber_delta).",
                       ("auto", "focal", "asymmetric", "huber"))
    calibrate: str = option("none", "Calibrate the probabilities after training: temperature "
                            "(one temperature fitted on the validation split, folded into "
                            "the saved and exported model; the calibration error before and "
                            "after goes to metrics.json and the report).",
                            ("none", "temperature"))
    coverage: float = option(0.0, "Conformal prediction (single-label, regression): each "
                             "answer also gives the set of classes (the interval) that holds "
                             "the true one with this probability, e.g. 0.9; fitted on the "
                             "validation split, its coverage on the test split in "
                             "metrics.json. 0: none.")
    abstain_rate: float = option(0.0, "single_label: abstain on inputs unlike the training "
                                 "data: the unknown-input score's threshold is set so this "
                                 "share of the validation examples is abstained on, e.g. "
                                 "0.05; predict and the SavedModel flag each input above it. "
                                 "0: never.")
    focal_gamma: float = option(2.0, "--loss=focal: the focusing exponent (0 is "
                                "cross-entropy).")
    asl_gamma_neg: float = option(4.0, "--loss=asymmetric: the focusing exponent of absent "
                                  "labels (present labels use 0).")
    asl_clip: float = option(0.05, "--loss=asymmetric: the margin by which an absent label's "
                             "probability is shifted down (the easiest negatives count 0).")
    huber_delta: float = option(1.0, "--loss=huber: the error where the loss turns from "
                                "squared to linear, in the target's units.")
    min_score: float = option(0.3, "detection: the lowest score of a box that predict and the "
                              "SavedModel return (evaluation scores every box down to 0.05); "
                              "predict takes it too (default: the run's).", reading=True)
    max_detections: int = option(100, "detection: the most boxes per image.")
    nms_iou: float = option(0.5, "detection: non-max suppression drops a box that overlaps a "
                            "higher-scoring box of its class by more than this IoU.")
    detector_filters: int = option(128, "detection: channels of the feature pyramid and of "
                                   "each head convolution (RetinaNet's paper: 256).")
    detector_depth: int = option(3, "detection: convolutions in each head before its output "
                                 "(RetinaNet's paper: 4).")

    def __post_init__(self) -> None:
        require(bool(self.label_column), "label_column", "give a column name")
        require(len(self.label_separator) == 1 and not self.label_separator.isalnum()
                and self.label_separator not in ' "', "label_separator",
                f"must be one punctuation character, e.g. | or ;, got {self.label_separator!r}")
        require(0.0 <= self.coverage < 1.0, "coverage",
                f"must be in (0, 1), e.g. 0.9 (0: no sets), got {self.coverage}")
        require(0.0 <= self.abstain_rate < 1.0, "abstain_rate",
                f"must be in (0, 1), e.g. 0.05 (0: never), got {self.abstain_rate}")
        require(0.0 <= self.focal_gamma <= 10.0, "focal_gamma", "must be in [0, 10]")
        require(0.0 <= self.asl_gamma_neg <= 10.0, "asl_gamma_neg", "must be in [0, 10]")
        require(0.0 <= self.asl_clip < 0.5, "asl_clip", "must be in [0, 0.5)")
        require(self.huber_delta > 0.0, "huber_delta", "must be > 0")
        require(0.0 < self.min_score < 1.0, "min_score", "must be in (0, 1), e.g. 0.3")
        require(1 <= self.max_detections <= 1000, "max_detections", "must be in 1..1000")
        require(0.0 < self.nms_iou <= 1.0, "nms_iou", "must be in (0, 1], e.g. 0.5")
        require(8 <= self.detector_filters <= 512, "detector_filters", "must be in 8..512")
        require(1 <= self.detector_depth <= 8, "detector_depth", "must be in 1..8")
