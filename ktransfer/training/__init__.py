"""The training job, in phases that read top to bottom (one module each):

    job          prepare: the data, the network, the input pipelines and the (locked) run directory
    phases       phase 1: the new head on the frozen backbone (on cached features when it can)
                 phase 2: the top of the backbone unfrozen, one stage per gradual-unfreezing step
    finishing    finish: AdaBN, evaluation, model files, metrics.json, the report and the export

A run saves its position after every epoch (`callbacks.ResumeState`), so the same command
continues a killed run: finished stages are skipped, the stage it was in goes on from its last
epoch, and the finishing steps (which are idempotent) run again. `train(cfg)` is what
`python -m ktransfer.train` calls; it is usable from a notebook as is.
"""

from ktransfer.training.finishing import finish
from ktransfer.training.job import Job, Stage, TrainResult, plan, prepare
from ktransfer.training.phases import fit_stages
from ktransfer.training.run import adapt, adapt_best, train

__all__ = ["Job", "Stage", "TrainResult", "adapt", "adapt_best", "finish", "fit_stages", "plan",
           "prepare", "train"]
