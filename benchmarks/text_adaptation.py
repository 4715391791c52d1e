"""Domain adaptation for text: labelled Amazon review sentences (or tweets) -> unlabelled movie
snippets, with all-MiniLM-L6-v2; source-only vs marginal MMD (DAN) vs class MMD.

    python benchmarks/text_adaptation.py [--seeds=0,1,2] [--pairs=amazon,tweets] [--epochs=2]

Per seed and source: a source model (configs/sentiment.cfg's recipe on the source sentences,
one fine-tuning epoch), then `--epochs` more fine-tuning epochs from it (`--init_from`), once
per arm with the same seed: source-only (no target data), `marginal` and `class` MMD with the
movie snippets' 'train' half as unlabelled target data (`--mmd_weight`). Target accuracy is on
the movie snippets' 2,008 labelled test sentences, which adaptation never sees. Needs
`make text-assets`.
"""

from __future__ import annotations

import argparse
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
from ktransfer.training import train  # noqa: E402

FLAGFILE = Path(__file__).resolve().parents[1] / "configs" / "sentiment.cfg"
TARGET = "builtin:sentiment_movies"


def arm_values(name: str, weight: float) -> dict:
    if name == "source-only":
        return {}
    return dict(target_data=TARGET, mmd_alignment=name, mmd_weight=weight)


def run_pair(source: str, seed: int, args: argparse.Namespace, tmp: str) -> dict[str, float]:
    """Target accuracy of every arm for one source set and seed."""
    common = dict(data=f"builtin:sentiment_{source}", train_per_class=0, seed=seed,
                  split_seed=seed, target_eval_data=TARGET, verbose=0, tensorboard=False,
                  report=False, early_stopping=0)
    first = train(config.from_flagfile(FLAGFILE, fine_tune_epochs=1,
                                       run_dir=f"{tmp}/{source}{seed}", **common))
    out = {"source model": first.metrics["adaptation"]["target_accuracy"]}
    for arm in args.arms.split(","):
        run = train(config.from_flagfile(
            FLAGFILE, init_from=str(first.run_dir), epochs=0, fine_tune_epochs=args.epochs,
            warmup_epochs=0, run_dir=f"{tmp}/{source}{seed}-{arm}", **common,
            **arm_values(arm, args.mmd_weight)))
        out[arm] = run.metrics["adaptation"]["target_accuracy"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pairs", default="amazon,tweets")
    parser.add_argument("--arms", default="source-only,marginal,class")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--mmd_weight", type=float, default=0.3)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.time()
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.pairs.split(","):
            results[source] = {}
            for seed in seeds:
                results[source][seed] = run_pair(source, seed, args, tmp)
                print(source, seed, results[source][seed], flush=True)
    print(f"\ntext_adaptation: -> movie snippets (2,008 labelled test sentences), MiniLM, "
          f"mmd_weight {args.mmd_weight}, {args.epochs} epochs per arm; machine: "
          f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs); one run per "
          f"cell; {(time.time() - started) / 60:.1f} min")
    arms = ["source model", *args.arms.split(",")]
    print(f"{'source':<8} {'arm':<14} " + " ".join(f"seed {s:<3}" for s in seeds)
          + "    mean    std   gain")
    for source, by_seed in results.items():
        base = np.mean([by_seed[s]["source-only"] for s in seeds]) \
            if "source-only" in arms else None
        for arm in arms:
            values = [by_seed[s][arm] for s in seeds]
            gain = f"{100 * (np.mean(values) - base):+6.1f}" if base is not None and \
                arm not in ("source-only", "source model") else ""
            print(f"{source:<8} {arm:<14} " + " ".join(f"{v:8.4f}" for v in values)
                  + f"  {np.mean(values):.4f} {np.std(values):.4f} {gain}")


if __name__ == "__main__":
    main()
