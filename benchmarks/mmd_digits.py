"""Domain adaptation benchmark: digits (source, labelled) -> digits-M (target, unlabelled), the
same network continued source-only and with MMD losses, over several seeds.

    python benchmarks/mmd_digits.py [--seeds=0,1,2] [--source_epochs=30] [--epochs=20]
                                    [--arms=marginal,class,adabn,...] [--mmd_weight=0.3]

Per seed: small_cnn from random weights at 16 px (the digits are 8x8), BatchNorm training, a
128-unit hidden head layer, trained `--source_epochs` on the source alone. From that model
(`--init_from`), each arm trains `--epochs` more: source-only (the baseline), and one run per MMD
alignment (`--mmd_alignment`: marginal = DAN, class = class-conditional), all with the same seed
and schedule, and `adabn`: source-only training with --adabn (no MMD; BatchNorm statistics re-
estimated on the target images); `marginal+adabn` and `class+adabn` combine them. Target accuracy
is on digits-M's labelled 'test' half, which training never sees; the unlabelled 'train' half is
the target data. Prints one table: target accuracy per seed, mean and spread per arm, and each
arm's gain over source-only.
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


def common(seed: int, epochs: int, run_dir: str) -> dict:
    return dict(
        data="builtin:digits", backbone="small_cnn", weights="none", image_size=16,
        batch_size=64, epochs=0, fine_tune_epochs=epochs, bn_trainable=True, head_hidden=[128],
        dropout=0.2, val_split=0.15, test_split=0.0, target_eval_data="builtin:digits_m",
        seed=seed, split_seed=seed, verbose=0, tensorboard=False, report=False, run_dir=run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--source_epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--arms", default="marginal,class,adabn,marginal+adabn,class+adabn")
    parser.add_argument("--mmd_weight", type=float, default=0.3)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = ["source-only", *args.arms.split(",")]
    results: dict[str, list[float]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            source = train(config.build(**common(seed, args.source_epochs, f"{tmp}/src{seed}"),
                                        fine_tune_lr=3e-3, warmup_epochs=1))
            print(f"seed {seed} after {args.source_epochs} source epochs: target accuracy "
                  f"{source.metrics['adaptation']['target_accuracy']:.4f}", flush=True)
            for arm in arms:
                values = common(seed, args.epochs, f"{tmp}/{arm}{seed}")
                values.update(init_from=str(source.run_dir), fine_tune_lr=1e-3, warmup_epochs=0)
                alignment = arm.split("+")[0]
                if arm != "source-only":
                    values.update(target_data="builtin:digits_m", adabn=arm.endswith("adabn"))
                if alignment in ("marginal", "class"):
                    values.update(mmd_weight=args.mmd_weight, mmd_alignment=alignment)
                elif alignment == "adabn":
                    values.update(mmd_weight=0.0)
                a = train(config.build(**values)).metrics["adaptation"]
                results[arm].append(a["target_accuracy"])
                print(f"seed {seed} {arm}: target accuracy {a['target_accuracy']:.4f}, domain "
                      f"MMD {a['mmd_before']:.4f} -> {a['mmd_after']:.4f}", flush=True)
    print(f"\nmmd_digits: digits -> digits-M, small_cnn from scratch at 16 px, "
          f"{args.source_epochs} source epochs then {args.epochs} per arm, mmd_weight "
          f"{args.mmd_weight}; machine: {platform.node()} ({platform.machine()}, "
          f"{os.cpu_count()} CPUs); one run per cell")
    width = max(len(arm) for arm in arms)
    print(f"{'arm':<{width}} " + " ".join(f"{'seed ' + str(s):>8}" for s in seeds)
          + f" {'mean':>7} {'std':>6} {'gain':>7}")
    base = np.array(results["source-only"])
    for arm in arms:
        acc = np.array(results[arm])
        gain = f"{100 * (acc - base).mean():+6.1f}" if arm != "source-only" else ""
        print(f"{arm:<{width}} " + " ".join(f"{v:>8.4f}" for v in acc)
              + f" {acc.mean():>7.4f} {acc.std():>6.4f} {gain:>7}")
    for arm in arms[1:]:
        gains = 100 * (np.array(results[arm]) - base)
        print(f"gain of {arm} over source-only, per seed: "
              + ", ".join(f"{g:+.1f}" for g in gains) + " points")


if __name__ == "__main__":
    main()
