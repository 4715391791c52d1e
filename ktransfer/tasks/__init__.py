"""Tasks: what depends on the kind of target, behind one seam (`ktransfer.tasks.task.Task`).
Each task is a package here: its core, what evaluation shows, and the probe's part.

A task says how labels are read and encoded, the output layer, the loss and metrics (and which
of them `--monitor` may name), how splits are stratified, what evaluation computes and the
report shows, what `predict` and the SavedModel return and how the tuner scores a trial.
Shared code asks the run's task (`--task`, `task_of(cfg)`) and never names one.

- `single_label`: one class per example (softmax, cross-entropy, accuracy);
- `multi_label`: a set of labels per example (sigmoid per label, binary cross-entropy, one
  threshold per label chosen on the validation split, F1 and mean average precision);
- `regression`: one number per example (linear output in the target's units, MSE, MAE);
- `detection`: boxes with classes (RetinaNet's head on the backbone's feature maps, COCO mAP).

This module is light (config reads the registrations): the tasks load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ktransfer.config import register_group
from ktransfer.errors import ConfigError
from ktransfer.registry import KERAS_ON_DEMAND, Registry

if TYPE_CHECKING:  # annotations only: knowing the tasks imports no TensorFlow
    from ktransfer.tasks.probe import TaskProbe
    from ktransfer.tasks.task import Task

TASKS: Registry[Task] = Registry("task", "task")


def register_task(name: str, entry: Any, about: str) -> None:
    """The one registration of a task: its entry (a `Task`, or `"package.module:ATTR"`)."""
    TASKS.register(name, entry, about=about)


register_group("task", "ktransfer.tasks.options:TaskOptions")
register_task("single_label", "ktransfer.tasks.single_label:SINGLE_LABEL",
              "one class per example (softmax, cross-entropy)")
register_task("multi_label", "ktransfer.tasks.multi_label:MULTI_LABEL",
              "any set of labels per example (sigmoid per label, binary cross-entropy, "
              "thresholds chosen on the validation split)")
register_task("regression", "ktransfer.tasks.regression:REGRESSION",
              "one number per example (linear output in the target's units, MSE)")
register_task("detection", "ktransfer.tasks.detection:DETECTION",
              "boxes with a class around each object (RetinaNet on the backbone's feature "
              "maps; COCO JSON or a table of boxes)")
# A detector's own Keras classes, read from a model file through ktransfer's loader (or after
# importing ktransfer.tasks.detection.network): its module imports keras-hub (1 s).
KERAS_ON_DEMAND.update({f"ktransfer>{name}": "ktransfer.tasks.detection.network" for name in
                        ("RetinaPredictionHead", "AnchorBoxes", "DetectionLoss")})


DEFAULT = "single_label"  # --task's default: what a model saved without a task.json is


def task_of(cfg: Any) -> Task:
    """The task of a run config (its `--task`)."""
    return TASKS.get(cfg.data.task)


def probe_of(cfg: Any) -> TaskProbe:
    """The probe part of a run config's task; ConfigError for a task that has none."""
    found = task_of(cfg).probe
    if found is None:
        raise ConfigError("task", f"ktransfer.probe has no probe for --task={cfg.data.task}")
    return found


def default_task() -> Task:
    """The default task (`--task`'s default), for code given no run."""
    return TASKS.get(DEFAULT)
