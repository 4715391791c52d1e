"""The same Keras Tuner head search with and without the feature cache: time and best accuracy.

    python benchmarks/tune_speed.py [--trials=5] [--epochs=10] [--image_size=64]

Task: digits 5-9 (all labelled images) on the shipped digits 0-4 small_cnn backbone, frozen.
Both searches use the same seed, so they try the same hyperparameters in the same order; only
where the backbone runs differs (once, or every epoch of every trial). Prints one table with the
machine named; figures are from this one run.
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

from ktransfer import config  # noqa: E402
from ktransfer.config import TuneConfig  # noqa: E402
from ktransfer.tuning import search  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image_size", type=int, default=64)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cached in (False, True):
            cfg = config.build(
                data="builtin:digits", classes=["5", "6", "7", "8", "9"], val_split=0.2,
                test_split=0.2, backbone="small_cnn",
                weights=str(REPO / "ktransfer" / "assets" / "digits04_small_cnn.weights.h5"),
                image_size=args.image_size, batch_size=32, epochs=args.epochs,
                cache_features=cached, verbose=0, seed=0)
            tune = TuneConfig(tuner="random", max_trials=args.trials, directory=tmp,
                              project=f"cached_{cached}", hp_layers=1, hp_units=(64, 128))
            started = time.perf_counter()
            result = search(cfg, tune)
            seconds = time.perf_counter() - started
            best = max(r["val_accuracy"] for r in result.trials if r["val_accuracy"] is not None)
            results[cached] = (seconds, best, len(result.trials))
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)"
    print(f"tune_speed: {args.trials} trials x {args.epochs} epochs, small_cnn at "
          f"{args.image_size} px, digits 5-9; machine: {machine}; one run")
    print(f"{'feature cache':<14} {'trials':>6} {'seconds':>9} {'best val acc':>13}")
    for cached in (False, True):
        seconds, best, n = results[cached]
        print(f"{'on' if cached else 'off':<14} {n:>6} {seconds:>9.1f} {best:>13.4f}")
    ratio = results[False][0] / results[True][0]
    print(f"speed-up with the cache: {ratio:.1f}x; best accuracy difference: "
          f"{results[True][1] - results[False][1]:+.4f}")


if __name__ == "__main__":
    main()
