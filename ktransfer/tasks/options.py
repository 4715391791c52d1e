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
                       "regression), focal (single- and multi-label; --focal_gamma) or huber "
                       "(regression; --huber_delta).",
                       ("auto", "focal", "huber"))
    calibrate: str = option("none", "Calibrate the probabilities after training: temperature "
                            "(one temperature fitted on the validation split, folded into "
                            "the saved and exported model; the calibration error before and "
                            "after goes to metrics.json and the report).",
                            ("none", "temperature"))
    focal_gamma: float = option(2.0, "--loss=focal: the focusing exponent (0 is "
                                "cross-entropy).")
    huber_delta: float = option(1.0, "--loss=huber: the error where the loss turns from "
                                "squared to linear, in the target's units.")

    def __post_init__(self) -> None:
        require(bool(self.label_column), "label_column", "give a column name")
        require(len(self.label_separator) == 1 and not self.label_separator.isalnum()
                and self.label_separator not in ' "', "label_separator",
                f"must be one punctuation character, e.g. | or ;, got {self.label_separator!r}")
        require(0.0 <= self.focal_gamma <= 10.0, "focal_gamma", "must be in [0, 10]")
        require(self.huber_delta > 0.0, "huber_delta", "must be > 0")
