"""Domain adaptation benchmark: digits (source, labelled) -> digits-M (target, unlabelled), the
same network trained source-only and with the MMD loss, over several seeds.

    python benchmarks/mmd_digits.py [--seeds=0,1,2] [--epochs=12] [--mmd_weight=1.0]

small_cnn from random weights at 32 px, all layers training (BatchNorm included), a 128-unit
hidden head layer; MMD on the pooled backbone features and on the hidden layer. Target accuracy
is on digits-M's labelled 'test' half, which adaptation never sees; the unlabelled 'train' half
is the target data. Prints one table: target accuracy per seed, mean and spread, and the gain.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.training import train  # noqa: E402


def run(seed: int, adapt: bool, epochs: int, weight: float, tmp: str) -> dict:
    values = dict(
        data="builtin:digits", backbone="small_cnn", weights="none", image_size=32,
        batch_size=64, epochs=0, fine_tune_epochs=epochs, fine_tune_lr=0.003, bn_trainable=True,
        head_hidden=[128], dropout=0.2, warmup_epochs=1, val_split=0.15, test_split=0.0,
        target_eval_data="builtin:digits_m", seed=seed, split_seed=seed, verbose=0,
        tensorboard=False, report=False, run_dir=f"{tmp}/{'mmd' if adapt else 'src'}_{seed}")
    if adapt:
        values.update(target_data="builtin:digits_m", mmd_weight=weight)
    return train(config.build(**values)).metrics["adaptation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--mmd_weight", type=float, default=1.0)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for adapt in (False, True):
                a = run(seed, adapt, args.epochs, args.mmd_weight, tmp)
                results[adapt].append(a)
                print(f"seed {seed} {'MMD' if adapt else 'source-only'}: target accuracy "
                      f"{a['target_accuracy']:.4f}, domain MMD {a['mmd_before']:.4f} -> "
                      f"{a['mmd_after']:.4f}", flush=True)
    print(f"\nmmd_digits: digits -> digits-M, small_cnn from scratch, {args.epochs} epochs, "
          f"mmd_weight {args.mmd_weight}; machine: {platform.node()} ({platform.machine()}, "
          f"{os.cpu_count()} CPUs); one run per cell")
    print(f"{'training':<12} " + " ".join(f"{'seed ' + str(s):>8}" for s in seeds)
          + f" {'mean':>7} {'std':>6} {'MMD after':>10}")
    means = {}
    for adapt in (False, True):
        acc = np.array([a["target_accuracy"] for a in results[adapt]])
        after = np.mean([a["mmd_after"] for a in results[adapt]])
        means[adapt] = acc.mean()
        print(f"{'MMD' if adapt else 'source-only':<12} " + " ".join(f"{v:>8.4f}" for v in acc)
              + f" {acc.mean():>7.4f} {acc.std():>6.4f} {after:>10.4f}")
    gains = [m["target_accuracy"] - s["target_accuracy"]
             for s, m in zip(results[False], results[True], strict=True)]
    print(f"gain (MMD - source-only): mean {100 * np.mean(gains):+.1f} points, per seed "
          + ", ".join(f"{100 * g:+.1f}" for g in gains))


if __name__ == "__main__":
    main()
