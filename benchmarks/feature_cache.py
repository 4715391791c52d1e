"""Phase 1 (frozen backbone, head training) with and without `--cache_features`: seconds per
epoch after the first, and the accuracy reached.

    python benchmarks/feature_cache.py [--epochs=8] [--image_size=96] [--setting=digits|lite0]

Task (`digits`): digits 5-9, all labelled images, on the shipped digits 0-4 small_cnn backbone;
(`lite0`): the faces vs non-faces photo patches, all 200 (60 % train), on EfficientNet-Lite0 with
its ImageNet weights at --image_size (224 is its own). Epoch 1 of
the cached run includes computing the features once; later epochs train on them. Figures are
from one run on the machine named in the output.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ktransfer import config  # noqa: E402
from ktransfer.training import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "digits": {"data": "builtin:digits", "classes": ["5", "6", "7", "8", "9"],
               "backbone": "small_cnn",
               "weights": str(REPO / "ktransfer" / "assets" / "digits04_small_cnn.weights.h5")},
    "lite0": {"data": "builtin:faces", "val_split": 0.2, "test_split": 0.2,
              "backbone": "efficientnet_lite0", "weights": "imagenet"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--setting", default="digits", choices=sorted(SETTINGS))
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cached in (False, True):
            cfg = config.build(
                **SETTINGS[args.setting],
                image_size=args.image_size, batch_size=32, epochs=args.epochs, lr=0.01,
                dropout=0.0, cache_features=cached, verbose=0, tensorboard=False, report=False,
                run_dir=f"{tmp}/cached_{cached}", seed=0)
            result = train(cfg)
            history = list(csv.DictReader(open(result.run_dir / "history.csv")))
            seconds = [float(r["seconds"]) for r in history]
            rows[cached] = (seconds[0], sum(seconds[1:]) / len(seconds[1:]),
                            result.metrics["val"]["accuracy"])
            counts = result.metrics["num_examples"]
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)"
    print(f"feature_cache: phase 1, {args.epochs} epochs, {args.setting} at {args.image_size} "
          f"px ({counts['train']} train / {counts['val']} val images); machine: "
          f"{machine}; one run")
    print(f"{'cache':<6} {'epoch 1 s':>10} {'later epochs s':>15} {'val accuracy':>13}")
    for cached in (False, True):
        first, later, accuracy = rows[cached]
        print(f"{'on' if cached else 'off':<6} {first:>10.2f} {later:>15.3f} {accuracy:>13.4f}")
    print(f"later epochs: {rows[False][1] / rows[True][1]:.1f}x faster with the cache; "
          f"accuracy difference {rows[True][2] - rows[False][2]:+.4f}")


if __name__ == "__main__":
    main()
