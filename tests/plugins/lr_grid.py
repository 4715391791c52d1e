"""A toy tuner space, added the way docs/extending.md says: this module (a search that trains
the head at three learning rates spread over --hp_lr and keeps the best on validation) plus
one line in `SPACES` (`register()`). `tune --space=lr_grid` then writes trials.csv and a
best.cfg that retrains the winner, as every space does."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import numpy as np

from ktransfer.config import RunConfig, SearchConfig, to_flagfile
from ktransfer.modality import Modality
from ktransfer.runs import atomic
from ktransfer.tasks import task_of
from ktransfer.training import train
from ktransfer.tuning.catalog import SPACES
from ktransfer.tuning.searching import SearchResult


def trial(cfg: RunConfig, lr: float, run_dir: Path) -> RunConfig:
    """The head alone at `lr`, in its own run folder."""
    return dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, lr=lr, fine_tune_epochs=0, run_dir=str(run_dir), report=False,
        tensorboard=False))


def search(search_cfg: SearchConfig, modality: Modality) -> SearchResult:
    """Three head runs at log-spaced rates; trials.csv and best.cfg in DIRECTORY/PROJECT."""
    cfg, tc = search_cfg.run, search_cfg.tune
    project = Path(tc.directory) / tc.project
    task = task_of(cfg)
    score = f"val_{task.objective}"
    rows = []
    for i, lr in enumerate(np.geomspace(*tc.hp_lr, 3)):
        found = train(trial(cfg, float(lr), project / f"trial_{i}")).metrics["val"]
        rows.append({"trial": str(i), "status": "COMPLETED", score: float(found[task.objective]),
                     "lr": float(lr)})
    rows.sort(key=lambda row: row[score], reverse=task.higher_is_better(score))
    best = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=rows[0]["lr"],
                                                              run_dir="", overwrite=False))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(project / "trials.csv", buffer.getvalue())
    atomic.write_text(project / "best.cfg", to_flagfile(best, f"Best of {len(rows)} rates"))
    return SearchResult(rows, project / "best.cfg", 0.0, False)


def register() -> None:
    """The one registration."""
    SPACES.register("lr_grid", "plugins.lr_grid:search",
                    "the head at three learning rates spread over --hp_lr")


def unregister() -> None:
    """Takes it back, so that other tests see the shipped spaces only."""
    SPACES.unregister("lr_grid")
