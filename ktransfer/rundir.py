"""The run directory: one folder per training run holding everything needed to inspect or repeat it.

Layout: flags.cfg (re-runnable flagfile), labels.txt, history.csv, metrics.json, model.keras,
backbone.weights.h5, checkpoints/{best,last}.keras, tensorboard/.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ktransfer import atomic
from ktransfer.config import RunConfig, to_flagfile
from ktransfer.errors import ConfigError

FLAGFILE = "flags.cfg"


def default_run_dir(backbone: str) -> Path:
    return Path("runs") / f"{backbone.lower()}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare(cfg: RunConfig) -> Path:
    """Creates the run directory; refuses to reuse a non-empty one unless --overwrite."""
    path = Path(cfg.train.run_dir) if cfg.train.run_dir else default_run_dir(cfg.model.backbone)
    if path.exists() and not path.is_dir():
        raise ConfigError("run_dir", f"{str(path)!r} is a file; give a folder path")
    if path.is_dir() and any(path.iterdir()):
        if not cfg.train.overwrite:
            raise ConfigError("run_dir", f"{str(path)!r} already holds a run; pass --overwrite "
                              "to replace it or choose another --run_dir")
        if not (path / FLAGFILE).exists():
            raise ConfigError("run_dir", f"{str(path)!r} is not empty and is not a ktransfer run "
                              f"directory (no {FLAGFILE}); refusing to delete it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_flagfile(path: Path, cfg: RunConfig) -> None:
    """Writes the fully resolved flags; `ktransfer.train --flagfile=RUN/flags.cfg` repeats the run
    (with --overwrite, or another --run_dir)."""
    header = ("Resolved flags of this run, written by ktransfer.train.\n"
              f"Re-run: python -m ktransfer.train --flagfile={path / FLAGFILE} --overwrite")
    atomic.write_text(path / FLAGFILE, to_flagfile(cfg, header))
