"""`TrainConfig`: the two training phases, optimizer, schedule, callbacks and run directory."""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ktransfer.config.fields import AUTO_LR, option, require


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
    remat: bool = option(False, "Phase 2: gradient checkpointing (Keras rematerialisation): each "
                         "backbone block keeps only its input and recomputes its activations "
                         "in the backward pass: less memory for about one more forward pass. "
                         "For backbones built of blocks (keras-hub encoders).")
    print_model: bool = option(False, "Print each backbone layer's block, parameters and "
                              "whether it trains in each phase, before training.")
    optimizer: str = option("adam", "Optimizer.", registry="ktransfer.optim.catalog:OPTIMIZERS")
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
                              registry="ktransfer.optim.catalog:SCHEDULES")
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
    monitor: str = option("val_loss", "Validation metric for early stopping and the best "
                          "checkpoint: val_loss or one the task reports (single_label: "
                          "val_accuracy, val_top5_accuracy; multi_label: val_macro_f1, val_map; "
                          "regression: val_mae, val_rmse).")
    steps_per_epoch: int = option(0, "Limit training steps per epoch; 0 runs the whole set.")
    seed: int = option(0, "Seed for weights, shuffling and augmentation.")
    verbose: int = option(1, "0 silent, 1 progress bars, 2 one line per epoch.")
    run_dir: str = option("", "Run directory; default runs/<data>[-<task>]-<backbone>-<time>, "
                          "e.g. runs/photos-efficientnet_lite0-20261207-061312.")
    overwrite: bool = option(False, "Replace an existing, non-empty --run_dir.")
    tensorboard: bool = option(True, "Write TensorBoard logs to RUN_DIR/tensorboard.")
    track: str = option("none", "Experiment tracking: mlflow logs the flags, every epoch's "
                        "metrics of both phases on one step axis, the final metrics and the "
                        "run's files to an MLflow store; a resumed run continues the same "
                        "MLflow run. Needs the tracking extra.", ("none", "mlflow"))
    tracking_uri: str = option("", "--track=mlflow: the store (an MLflow tracking URI); "
                               "default: ./mlruns, a local folder.")
    experiment: str = option("ktransfer", "--track=mlflow: the MLflow experiment name.")
    export_dir: str = option("", "After training, export a SavedModel for TF Serving to "
                            "EXPORT_DIR/VERSION (next free version), e.g. exports/flowers.")
    probe: bool = option(False, "Before training, audit the training labels from the "
                         "backbone's frozen features (ktransfer.probe's audit: doubtful labels, "
                         "near-duplicates, LogME) into RUN/probe/ and the report.")
    report: bool = option(True, "Evaluate on the test set (else validation) and write "
                         "RUN_DIR/report.html with plots.")

    def tracking_store(self) -> str:
        """The MLflow tracking URI --track=mlflow logs to (default: ./mlruns as a file URI)."""
        return self.tracking_uri or (Path.cwd() / "mlruns").as_uri()

    def tracking_folder(self) -> Path | None:
        """The folder of a local file store (a file: URI or a plain path), else None."""
        uri = self.tracking_store()
        if uri.startswith("file:"):
            return Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path))
        return None if "://" in uri or uri.startswith("sqlite:") else Path(uri)

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
        require(self.monitor.startswith("val_") and len(self.monitor) > 4, "monitor",
                f"must name a validation metric (val_loss, val_accuracy, ...), got "
                f"{self.monitor!r}")
        if self.export_dir:
            name = os.path.basename(os.path.normpath(self.export_dir))
            require(bool(re.fullmatch(r"[A-Za-z0-9_.-]+", name)), "export_dir",
                   f"must end in a model name made of letters, digits, '_', '.' or '-', "
                   f"got {self.export_dir!r}")
