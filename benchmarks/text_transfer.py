"""Does transfer pay for text? Sentiment of movie-review snippets with 100, 500 and all training
labels: TF-IDF + logistic regression vs frozen all-MiniLM-L6-v2 + a new head vs fine-tuned.

    python benchmarks/text_transfer.py [--seeds=0,1,2] [--labels=100,500,all] [--out=FILE.json]

Every arm sees the same labelled sentences (`--train_per_class` sampled with the seed) and is
scored on the same 2,008 fixed test sentences of `builtin:sentiment_movies`. Both MiniLM arms
follow configs/sentiment.cfg, with training lengths that do not starve the small label counts:
the head trains up to 100 epochs on the cached sentence vectors (cheap) and the fine-tuning
phase at least 3 epochs and at least 150 optimizer steps, both keeping their best epoch by
validation accuracy (early stopping, patience 10). The frozen arm stops after the head phase.
Prints test accuracy per seed, mean and standard deviation; needs `make text-assets`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.text.baseline import tfidf_accuracy  # noqa: E402
from ktransfer.text.modality import TEXT  # noqa: E402
from ktransfer.training import train  # noqa: E402

FLAGFILE = Path(__file__).resolve().parents[1] / "configs" / "sentiment.cfg"
ARMS = ("TF-IDF + logistic regression", "frozen MiniLM + head", "fine-tuned MiniLM")


def run_cell(labels: str, seed: int, tmp: str) -> dict[str, float]:
    """Test accuracy of each arm for one label count and seed."""
    per_class = 0 if labels == "all" else int(labels) // 2
    common = dict(train_per_class=per_class, seed=seed, split_seed=seed, verbose=0,
                  tensorboard=False, report=False, epochs=100, early_stopping=10)
    splits = TEXT.load_splits(config.from_flagfile(FLAGFILE, **common))
    steps = math.ceil(len(splits.train) / 32)
    cfg = config.from_flagfile(FLAGFILE, run_dir=f"{tmp}/ft-{labels}-{seed}",
                               fine_tune_epochs=max(3, math.ceil(150 / steps)), **common)
    out = {ARMS[0]: tfidf_accuracy(splits.train, splits.test)}
    frozen = config.from_flagfile(FLAGFILE, run_dir=f"{tmp}/frozen-{labels}-{seed}",
                                  fine_tune_epochs=0, **common)
    out[ARMS[1]] = train(frozen).metrics["test"]["accuracy"]
    out[ARMS[2]] = train(cfg).metrics["test"]["accuracy"]
    out["num_labels"] = len(splits.train)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--labels", default="100,500,all")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.time()
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for labels in args.labels.split(","):
            results[labels] = {}
            for seed in seeds:
                results[labels][seed] = run_cell(labels, seed, tmp)
                print(labels, seed, results[labels][seed], flush=True)
    print(f"\ntext_transfer: builtin:sentiment_movies, test 2,008 sentences; machine: "
          f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs); one run per cell; "
          f"{(time.time() - started) / 60:.1f} min")
    print(f"{'labels':<8} {'arm':<30} " + " ".join(f"seed {s:<3}" for s in seeds)
          + "    mean    std")
    for labels, by_seed in results.items():
        for arm in ARMS:
            values = [by_seed[s][arm] for s in seeds]
            print(f"{labels:<8} {arm:<30} " + " ".join(f"{v:8.4f}" for v in values)
                  + f"  {np.mean(values):.4f} {np.std(values):.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
