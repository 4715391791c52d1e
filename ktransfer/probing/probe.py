"""`ktransfer.probe`: one frozen-feature pass per backbone, then per backbone LogME, the
cross-validated linear probe and a learning curve; then, from the best backbone's features, the
label audit (doubtful labels, near-duplicates within and across splits, confused classes).

The phases read top to bottom in `probe`; each backbone's features are cached in
OUTPUT_DIR/cache, so a second probe of the same data and backbone skips its pass.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
import numpy as np

from ktransfer import preflight
from ktransfer.config import ProbeRunConfig, RunConfig
from ktransfer.data.examples import Splits
from ktransfer.modality import Modality
from ktransfer.network.freezing import freeze
from ktransfer.probing.results import ProbeResult
from ktransfer.probing.scoring import conclude, network_features, score_backbone
from ktransfer.tasks import probe_of, task_of
from ktransfer.training.distribute import make_strategy


def split_features(run: RunConfig, modality: Modality, splits: Splits,
                   cache_dir: Path) -> dict[str, np.ndarray]:
    """`network_features` of `run`'s backbone, built frozen under its tf.distribute strategy."""
    with make_strategy(run.distribute).scope():
        keras.utils.set_random_seed(run.train.seed)
        network = modality.build(run, task_of(run).outputs(splits.class_names))
        freeze(network.backbone)
        return network_features(network, run, modality, splits, cache_dir)


def probe(cfg: ProbeRunConfig) -> ProbeResult:
    """Ranks `--backbones` on the run's data and audits its labels; writes
    OUTPUT_DIR/{probe.json, probe.html, label_audit.csv, best.cfg}. Checks the flags first."""
    started = time.time()
    cfg = dataclasses.replace(cfg, run=preflight.with_defaults(cfg.run, run_dir=False))
    modality = preflight.check_probe(cfg)
    out = Path(cfg.probe.output_dir)
    splits = modality.load_splits(cfg.run)
    task_probe = probe_of(cfg.run)
    results = []
    for name, run in cfg.candidates():
        began = time.time()
        found = split_features(run, modality, splits, out / "cache")
        scored, oof = score_backbone(name, found, splits, task_probe, run, cfg.probe.folds,
                                     cfg.probe.curve_points, time.time() - began)
        results.append((scored, found, oof, run))
    results.sort(key=lambda r: (-r[0].logme, -r[0].probe))  # LogME ranks, as its paper does
    _, found, oof, best_run = results[0]
    return conclude([r[0] for r in results], found, oof, best_run, splits, modality, cfg.probe,
                    started)
