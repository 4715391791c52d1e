"""Does transfer pay for text? Sentiment of movie-review snippets with 100, 500 and all training
labels: TF-IDF + logistic regression vs frozen all-MiniLM-L6-v2 + a new head vs fine-tuned.

    python benchmarks/text_transfer.py [--seeds=0,1,2] [--labels=100,500,all] [--arms=1,2,3,4]
        [--out=FILE.json]

Every arm sees the same labelled sentences (`--train_per_class` sampled with the seed) and is
scored on the same 2,008 fixed test sentences of `builtin:sentiment_movies`. Both MiniLM arms
follow configs/sentiment.cfg, with training lengths that do not starve the small label counts:
the head trains up to 100 epochs on the cached sentence vectors (cheap) and the fine-tuning
phase at least 3 epochs and at least 150 optimizer steps, both keeping their best epoch by
validation accuracy (early stopping, patience 10). The frozen arm stops after the head phase.
Those choices use a validation split of 10 % of the pool (804 labelled sentences beyond the
counted ones), which TF-IDF does not get; the fourth arm has no validation labels (one sentence
per class, unused): the config's 30 head epochs and the same fine-tuning, keeping the last
epoch. `--arms=1,4` runs some arms only (1-based). Prints test accuracy per seed, mean and
standard deviation, and writes them with the command, commit, date and machine to
benchmarks/results/text_transfer_LABELS.json (e.g. text_transfer_100_500.json); needs
`make text-assets`.
"""

from __future__ import annotations

import argparse
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

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.text.baseline import tfidf_accuracy  # noqa: E402
from ktransfer.text.modality import TEXT  # noqa: E402
from ktransfer.training import train  # noqa: E402

FLAGFILE = Path(__file__).resolve().parents[1] / "configs" / "sentiment.cfg"
ARMS = ("TF-IDF + logistic regression", "frozen MiniLM + head", "fine-tuned MiniLM",
        "fine-tuned, no validation labels")


def run_cell(labels: str, seed: int, tmp: str, arms: set[int]) -> dict[str, float]:
    """Test accuracy of each arm in `arms` (0-based) for one label count and seed."""
    per_class = 0 if labels == "all" else int(labels) // 2
    common = dict(train_per_class=per_class, seed=seed, split_seed=seed, verbose=0,
                  tensorboard=False, report=False, epochs=100, early_stopping=10)
    splits = TEXT.load_splits(config.from_flagfile(FLAGFILE, **common))
    fine_tune_epochs = max(3, math.ceil(150 / math.ceil(len(splits.train) / 32)))
    runs = {
        1: dict(common, fine_tune_epochs=0),
        2: dict(common, fine_tune_epochs=fine_tune_epochs),
        3: dict(common, fine_tune_epochs=fine_tune_epochs, epochs=30, early_stopping=0,
                val_split=0.0),
    }
    out: dict[str, float] = {"num_labels": len(splits.train)}
    if 0 in arms:
        out[ARMS[0]] = tfidf_accuracy(splits.train, splits.test)
    for arm in sorted(arms - {0}):
        cfg = config.from_flagfile(FLAGFILE, run_dir=f"{tmp}/arm{arm}-{labels}-{seed}",
                                   **runs[arm])
        out[ARMS[arm]] = train(cfg).metrics["test"]["accuracy"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--labels", default="100,500,all")
    parser.add_argument("--arms", default="1,2,3,4")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = {int(a) - 1 for a in args.arms.split(",")}
    started = time.time()
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for labels in args.labels.split(","):
            results[labels] = {}
            for seed in seeds:
                results[labels][seed] = run_cell(labels, seed, tmp, arms)
                print(labels, seed, results[labels][seed], flush=True)
    print(f"\ntext_transfer: builtin:sentiment_movies, test 2,008 sentences; machine: "
          f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs); one run per cell; "
          f"{(time.time() - started) / 60:.1f} min")
    print(f"{'labels':<8} {'arm':<30} " + " ".join(f"seed {s:<3}" for s in seeds)
          + "    mean    std")
    for labels, by_seed in results.items():
        for arm in (ARMS[a] for a in sorted(arms)):
            values = [by_seed[s][arm] for s in seeds]
            print(f"{labels:<8} {arm:<30} " + " ".join(f"{v:8.4f}" for v in values)
                  + f"  {np.mean(values):.4f} {np.std(values):.4f}")
    names = [ARMS[a] for a in sorted(arms)]
    summary = {labels: {arm: record.spread([by_seed[s][arm] for s in seeds]) for arm in names}
               for labels, by_seed in results.items()}
    out = args.out or record.RESULTS / f"text_transfer_{args.labels.replace(',', '_')}.json"
    record.write(out, seeds=seeds, labels=args.labels.split(","), arms=names, runs=results,
                 summary=summary)


if __name__ == "__main__":
    main()
