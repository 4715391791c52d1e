"""Does the probe's ranking predict fine-tuning? LogME and the linear probe of several
backbones against the test accuracy `ktransfer.train` then reaches with each, on three tasks.

    python benchmarks/probe_ranking.py [--seeds=0,1,2] [--tasks=faces,digits_m,digits]
        [--out=benchmarks/results/probe_ranking.json]

Backbones: EfficientNet-Lite0 / Lite1 / Lite2 with their ImageNet weights and Lite0 with random
weights (each at its own size), the shipped digits backbone and small_cnn with random weights
(32 px). Tasks (the seed draws the labelled examples): `faces` (lfw_subset, 10 labelled per
class), `digits_m` (coloured digits 5-9, 20 per class), `digits` (digits 5-9, 10 per class).
Every fine-tune uses one recipe (configs/quickstart_imagenet.cfg's: a head 20 epochs on frozen
features, then every layer 5 epochs at 3e-4, BatchNorm frozen). Per task: Spearman's rho of
each score with the fine-tuned accuracy, whether the top-ranked backbone is the best one, and
the probe's seconds against the fine-tunes'.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.stats import spearmanr  # noqa: E402

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.probing.probe import probe  # noqa: E402
from ktransfer.training import train  # noqa: E402

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
             "efficientnet_lite0@none", "small_cnn@ktransfer/assets/digits04_small_cnn.weights.h5",
             "small_cnn@none")
TASKS = {"faces": {"data": "builtin:faces", "train_per_class": 10},
         "digits_m": {"data": "builtin:digits_m", "classes": ("5", "6", "7", "8", "9"),
                      "train_per_class": 20},
         "digits": {"data": "builtin:digits", "classes": ("5", "6", "7", "8", "9"),
                    "train_per_class": 10, "val_split": 0.2, "test_split": 0.4}}
BASE = "configs/quickstart_imagenet.cfg"
RECIPE = {"image_size": 0, "unfreeze": "all", "verbose": 0, "tensorboard": False,
          "report": False}


def _fine_tune(task: str, given: str, seed: int, run_dir: Path) -> tuple[float, float]:
    name, _, weights = given.partition("@")
    started = time.time()
    cfg = config.from_flagfile(BASE, **TASKS[task], **RECIPE, backbone=name,
                               weights=weights or "imagenet", seed=seed, split_seed=seed,
                               run_dir=str(run_dir))
    return float(train(cfg).metrics["test"]["accuracy"]), time.time() - started


def measure(task: str, seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    started = time.time()
    run = config.from_flagfile(BASE, **TASKS[task], **RECIPE, seed=seed, split_seed=seed)
    probed = probe(config.ProbeRunConfig(run, config.ProbeConfig(
        backbones=BACKBONES, output_dir=str(tmp / f"probe_{task}{seed}"))))
    probe_seconds = time.time() - started
    scores = {s.name: s for s in probed.ranking}
    found, tuned, seconds = {}, [], 0.0
    for i, given in enumerate(BACKBONES):
        accuracy, took = _fine_tune(task, given, seed, tmp / f"{task}{seed}_{i}")
        seconds += took
        tuned.append(accuracy)
        found[f"{task}_{i}"] = {"logme": scores[given].logme, "linear_probe": scores[given].probe,
                                "fine_tuned": accuracy, "fine_tune_seconds": took}
    logme = [scores[g].logme for g in BACKBONES]
    linear = [scores[g].probe for g in BACKBONES]
    best = max(range(len(BACKBONES)), key=lambda i: tuned[i])
    found[f"{task}_ranking"] = {
        "spearman_logme": float(spearmanr(logme, tuned).statistic),
        "spearman_linear_probe": float(spearmanr(linear, tuned).statistic),
        "top_is_best_logme": float(max(range(len(BACKBONES)), key=lambda i: logme[i]) == best),
        "top_is_best_linear_probe": float(max(range(len(BACKBONES)),
                                              key=lambda i: linear[i]) == best),
        "probe_seconds": probe_seconds, "fine_tune_seconds": seconds,
        "probe_share_of_fine_tunes": probe_seconds / seconds}
    return found


def main() -> None:
    parser = record.parser(__doc__, "probe_ranking")
    parser.add_argument("--tasks", default=",".join(TASKS))
    args = parser.parse_args()
    seeds, tasks = args.seeds, args.tasks.split(",")
    runs = record.run_seeds(seeds, tasks, measure)
    arms = [f"{t}_{i}" for t in tasks for i in range(len(BACKBONES))]
    arms += [f"{t}_ranking" for t in tasks]
    summary = record.summarize(runs, arms, [
        "logme", "linear_probe", "fine_tuned", "spearman_logme", "spearman_linear_probe",
        "top_is_best_logme", "top_is_best_linear_probe", "probe_share_of_fine_tunes"])
    record.write(args.out, seeds=seeds, backbones=BACKBONES, tasks=TASKS, recipe=RECIPE,
                 runs=runs, summary=summary)


if __name__ == "__main__":
    main()
