"""Experiment tracking (`--track=mlflow`): the flags as parameters, every epoch's metrics of
both phases on one step axis (the global epoch), the final metrics and the run's files as
artifacts, in an MLflow store (default: a local `./mlruns` folder, MLflow's file store, which
MLflow 3 keeps in maintenance mode: ktransfer opts in to it; give `--tracking_uri` a database
or a server for MLflow's newer features). The MLflow run's id is kept
in `RUN/tracking.json`, so a resumed run continues the same MLflow run. MLflow itself is the
`tracking` extra (`pip install 'ktransfer[tracking]'`), imported only when asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import numbers
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from ktransfer.config import RunConfig, parse_flagfile
from ktransfer.runs import atomic, rundir

log = logging.getLogger("ktransfer.training")
TRACKING_FILE = "tracking.json"
ARTIFACTS = ("flags.cfg", "metrics.json", "history.csv", "report.html", *rundir.CARD_FILES)


class EpochMetrics(keras.callbacks.Callback):
    """Logs each epoch's metrics (Keras's logs) at step = the global epoch (1, 2, ...)."""

    def __init__(self, mlflow: Any) -> None:
        super().__init__()
        self.mlflow = mlflow

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        values = {k: float(v) for k, v in (logs or {}).items() if _number(v)}
        if values:
            self.mlflow.log_metrics(values, step=epoch + 1)


class Tracker:
    """A run's tracking: nothing (--track=none), or an active MLflow run."""

    def __init__(self, mlflow: Any = None) -> None:
        self.mlflow = mlflow

    def callbacks(self) -> list[keras.callbacks.Callback]:
        return [] if self.mlflow is None else [EpochMetrics(self.mlflow)]

    def finish(self, metrics: dict[str, Any], run_dir: Path) -> None:
        """The final metrics (`final_val_accuracy`, `final_test_loss`, ...) and the run's
        files."""
        if self.mlflow is None:
            return
        final = {f"final_{split}_{k}": float(v) for split in ("val", "test")
                 for k, v in metrics.get(split, {}).items() if _number(v)}
        self.mlflow.log_metrics(final)
        for name in ARTIFACTS:
            if (run_dir / name).is_file():
                self.mlflow.log_artifact(str(run_dir / name))


@contextlib.contextmanager
def tracking(cfg: RunConfig, run_dir: Path) -> Iterator[Tracker]:
    """The run's tracker, its MLflow run started (or resumed) and ended around the block."""
    if cfg.train.track != "mlflow":
        yield Tracker()
        return
    uri = cfg.train.tracking_store()
    if cfg.train.tracking_folder() is not None:  # MLflow 3 asks to opt in to folders
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow = importlib.import_module("mlflow")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(cfg.train.experiment)
    saved = _saved_run(run_dir)
    with mlflow.start_run(run_id=saved, run_name=None if saved else run_dir.name) as active:
        if saved is None:
            atomic.write_json(run_dir / TRACKING_FILE, {"run_id": active.info.run_id,
                                                        "tracking_uri": mlflow.get_tracking_uri()})
            mlflow.log_params(_flags(run_dir))
        log.info("--track=mlflow: %s run %s in %s", "continuing" if saved else "logging to",
                 active.info.run_id, mlflow.get_tracking_uri())
        yield Tracker(mlflow)


def _saved_run(run_dir: Path) -> str | None:
    """The MLflow run id a killed run of this directory started."""
    path = run_dir / TRACKING_FILE
    return json.loads(path.read_text())["run_id"] if path.is_file() else None


def _flags(run_dir: Path) -> dict[str, str]:
    """{flag: value} of the run's flags.cfg, as text (lists joined by commas, booleans as
    true / false)."""
    values = parse_flagfile(run_dir / rundir.FLAGFILE, skip_unknown=True)
    return {name: _text(value)[:500] for name, value in values.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
