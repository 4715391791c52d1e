"""`AdaptConfig`: domain adaptation (unlabelled target data, alignments, selection)."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import option, require


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
                                registry="ktransfer.domain.catalog:ESTIMATORS")
    mmd_alignment: str = option("marginal", "How source and target features are pulled "
                                "together.",
                                registry="ktransfer.domain.catalog:ALIGNMENTS")
    adabn: bool = option(False, "Normalise for the target domain: during training source and "
                         "target batches pass BatchNorm separately (each by its own "
                         "statistics), and afterwards every backbone BatchNorm layer's moving "
                         "statistics are re-estimated on the target images (AdaBN), so the "
                         "saved model is a target-domain model.")
    target_loss: str = option("none", "A loss on the unlabelled target predictions beside the "
                              "MMD (none: no loss).",
                              ("none",), registry="ktransfer.domain.catalog:TARGET_LOSSES")
    target_loss_weight: float = option(0.1, "Weight of --target_loss (ramped up with the MMD "
                                       "weight).")
    class_threshold: float = option(0.0, "mmd_alignment=class: target rows whose largest "
                                    "predicted probability is below this get no weight.")
    pseudo_labels: str = option("predictions", "mmd_alignment=class: what weighs each target "
                                "row by class: predictions (the classifier's probabilities, "
                                "DSAN) or clusters (the nearest class centroid of the target "
                                "features, re-estimated every epoch, as SHOT labels; did not "
                                "help on the digits benchmark, see "
                                "docs/guides/adaptation.md) or balanced (the "
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
                            "target labels: last, or the one a validator scores highest (see "
                            "ktransfer/domain/validators.py).", ("last",),
                            registry="ktransfer.domain.catalog:VALIDATORS")

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
