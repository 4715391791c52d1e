"""The training job, in phases that read top to bottom (one module each):

    job          prepare: the data, the network, the input pipelines and the (locked) run directory
    phases       phase 1: the new head on the frozen backbone (on cached features when it can)
                 phase 2: the top of the backbone unfrozen, one stage per gradual-unfreezing step
    finishing    finish: AdaBN, evaluation, model files, metrics.json, the report and the export

A run saves its position after every epoch (`callbacks.ResumeState`), so the same command
continues a killed run: finished stages are skipped, the stage it was in goes on from its last
epoch, and the finishing steps (which are idempotent) run again. `train(cfg)` is what
`python -m ktransfer.train` calls; it is usable from a notebook as is.

The names below load (with TensorFlow) on first use, so that `training.catalog` (the
`--strategy` names) is known without TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ktransfer.training.finishing import finish
    from ktransfer.training.job import Job, Stage, TrainResult, plan, prepare
    from ktransfer.training.phases import fit_stages
    from ktransfer.training.run import adapt, adapt_best, train

_HOMES = {"finish": "finishing", "Job": "job", "Stage": "job", "TrainResult": "job",
          "plan": "job", "prepare": "job", "fit_stages": "phases", "adapt": "run",
          "adapt_best": "run", "train": "run"}

__all__ = ["Job", "Stage", "TrainResult", "adapt", "adapt_best", "finish", "fit_stages", "plan",
           "prepare", "train"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
