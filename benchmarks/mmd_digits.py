"""Domain adaptation benchmark: digits (source, labelled) -> digits-M (target, unlabelled), the
same network continued source-only and with each alignment, over several seeds, reported the
way the field reports it and more honestly: mean ± std, the share of the source-only -> oracle
gap closed, the worst seed, and last-epoch beside unsupervised-selection numbers.

    python benchmarks/mmd_digits.py [--seeds=0,1,2,3,4] [--source_epochs=30] [--epochs=20]
                                    [--arms=adabn,marginal+adabn,class+adabn,...]
                                    [--mmd_weight=0.3] [--no-oracle]

Per seed: small_cnn from random weights at 16 px (the digits are 8x8), BatchNorm training, a
128-unit hidden head layer, trained `--source_epochs` on the source alone; and the oracle, the
same recipe trained on digits-M's own labels (the ceiling). From the source model
(`--init_from`), each arm trains `--epochs` more with the same seed and schedule. An arm is
`ALIGNMENT[+adabn][+LOSS]`: ALIGNMENT one of `--mmd_alignment`'s (marginal = DAN, class,
joint = JAN, cdan = CDAN+E) or `adabn` (no alignment loss, BatchNorm per domain), `+adabn`
adds AdaBN, LOSS a `--target_loss` (entropy, im, mcc), +clusters / +balanced
`--pseudo_labels` (class only); a part NAME=VALUE sets one of
mmd_weight, class_threshold, target_loss_weight or seed for that arm (e.g. class+adabn+
class_threshold=0.8; seed=N restarts the adaptation with another seed from the same source
model). `source-only` always runs first. `--sources=K` trains K source models per seed (the
same split, initialisation seeds seed + 100 k) and adapts each arm from every one; its
"best-of-K" row keeps, per seed, the run whose last epoch `--pick` (default im) scores highest,
without target labels: what `ktransfer.tune --space=adaptation --hp_init_from=...` does.
Target accuracy is on digits-M's labelled 'test' half, which training never sees; the
unlabelled 'train' half is the target data.

Every adaptation run also records, per epoch, each validator's score and the true target
accuracy (`--da_select`'s scoring; the last epoch is kept), so the second table shows which
epoch each validator would have chosen, against the last epoch and the best one there was (the
epoch a paper picks when it reads target labels). Those per-epoch accuracies are before AdaBN's
final re-estimate of the BatchNorm statistics, so they are lower than the first table's for
AdaBN arms but comparable between epochs.
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
from ktransfer.domain.catalog import TARGET_LOSSES, VALIDATORS  # noqa: E402
from ktransfer.training import train  # noqa: E402

TARGET = "builtin:digits_m"
ARMS = "adabn,marginal+adabn,class+adabn,joint+adabn,cdan+adabn,class+adabn+im"
ARM_SETTINGS = {"mmd_weight": float, "class_threshold": float, "target_loss_weight": float,
                "seed": int}


def common(seed: int, epochs: int, run_dir: str) -> dict:
    return dict(
        data="builtin:digits", backbone="small_cnn", weights="none", image_size=16,
        batch_size=64, epochs=0, fine_tune_epochs=epochs, bn_trainable=True, head_hidden=[128],
        dropout=0.2, val_split=0.15, test_split=0.0, target_eval_data=TARGET,
        seed=seed, split_seed=seed, verbose=0, tensorboard=False, report=False, run_dir=run_dir)


def arm_values(arm: str, weight: float) -> dict:
    """The flags of an arm named ALIGNMENT[+adabn][+LOSS] (module docstring)."""
    if arm == "source-only":
        return {}
    alignment, *extras = arm.split("+")
    values: dict = dict(target_data=TARGET, adabn=alignment == "adabn" or "adabn" in extras)
    if alignment == "adabn":
        values.update(mmd_weight=0.0)
    else:
        values.update(mmd_weight=weight, mmd_alignment=alignment)
    for extra in extras:
        name, _, value = extra.partition("=")
        if extra in TARGET_LOSSES:
            values.update(target_loss=extra)
        elif extra in ("clusters", "balanced"):
            values.update(pseudo_labels=extra)
        elif value and name in ARM_SETTINGS:
            values[name] = ARM_SETTINGS[name](value)
        elif extra != "adabn":
            raise SystemExit(f"--arms: unknown part {extra!r} in {arm!r}")
    return values


def source_run(seed: int, init: int, args: argparse.Namespace, tmp: str) -> str:
    """Trains the source model of `seed`'s split with initialisation seed `init`; its run."""
    values = common(seed, args.source_epochs, f"{tmp}/src{seed}-{init}")
    source = train(config.build(**{**values, "seed": init}, fine_tune_lr=3e-3, warmup_epochs=1))
    print(f"seed {seed} (init {init}) after {args.source_epochs} source epochs: target "
          f"accuracy {source.metrics['adaptation']['target_accuracy']:.4f}", flush=True)
    return str(source.run_dir)


def adapt_arm(seed: int, init: int, arm: str, source: str, args: argparse.Namespace,
              tmp: str) -> dict:
    """One arm's adaptation metrics, from the source run `source`."""
    values = common(seed, args.epochs, f"{tmp}/{arm}{seed}-{init}")
    values.update(init_from=source, fine_tune_lr=1e-3, warmup_epochs=0,
                  **arm_values(arm, args.mmd_weight))
    out = train(config.build(**values)).metrics["adaptation"]
    print(f"seed {seed} (init {init}) {arm}: target accuracy {out['target_accuracy']:.4f}",
          flush=True)
    return out


def best_of_sources(seed: int, arms: list[str], first: dict, args: argparse.Namespace,
                    tmp: str) -> dict:
    """--sources=K: every arm from K - 1 more source models of the same split (initialisation
    seeds seed + 100 k), and under 'ARM best-of-K' the run whose last epoch --pick scores
    highest (no target labels used), among those and the first source's."""
    candidates = {arm: [first[arm]] for arm in arms}
    for k in range(1, args.sources):
        source = source_run(seed, seed + 100 * k, args, tmp)
        for arm in arms:
            candidates[arm].append(adapt_arm(seed, seed + 100 * k, arm, source, args, tmp))
    return {f"{arm} best-of-{args.sources}": max(
        runs, key=lambda r: r["selection"]["epochs"][-1]["scores"][args.pick])
        for arm, runs in candidates.items()}


def run_seed(seed: int, arms: list[str], args: argparse.Namespace, tmp: str) -> dict:
    """{arm: adaptation metrics} of one seed, and the oracle's accuracy under 'oracle'."""
    source = source_run(seed, seed, args, tmp)
    out: dict = {}
    if args.oracle:
        oracle = train(config.build(**{**common(seed, args.source_epochs, f"{tmp}/oracle{seed}"),
                                       "data": TARGET, "target_eval_data": ""},
                                    fine_tune_lr=3e-3, warmup_epochs=1))
        out["oracle"] = oracle.metrics["test"]["accuracy"]
        print(f"seed {seed} oracle (digits-M labels): {out['oracle']:.4f}", flush=True)
    for arm in arms:
        out[arm] = adapt_arm(seed, seed, arm, source, args, tmp)
    if args.sources > 1:
        out.update(best_of_sources(seed, arms[1:], out, args, tmp))
    return out


def accuracy_table(arms: list[str], seeds: list[int], runs: list[dict]) -> None:
    """Target accuracy per seed and arm; gain, gap closed and worst seed against the mean."""
    width = max(len(arm) for arm in arms)
    print(f"{'arm':<{width}} " + " ".join(f"{'seed ' + str(s):>7}" for s in seeds)
          + f" {'mean':>6} {'std':>5} {'gain':>6} {'gap':>5} {'worst-mean':>10}")
    base = np.array([run["source-only"]["target_accuracy"] for run in runs])
    oracle = np.array([run.get("oracle", np.nan) for run in runs])
    for arm in arms:
        acc = np.array([run[arm]["target_accuracy"] for run in runs])
        gain = 100 * (acc - base).mean()
        gap = 100 * np.mean((acc - base) / (oracle - base))
        print(f"{arm:<{width}} " + " ".join(f"{100 * v:>7.1f}" for v in acc)
              + f" {100 * acc.mean():>6.1f} {100 * acc.std():>5.1f} {gain:>+6.1f} "
              + f"{gap:>4.0f}% {100 * (acc.min() - acc.mean()):>+10.1f}")
    if not np.isnan(oracle).any():
        print(f"{'oracle':<{width}} " + " ".join(f"{100 * v:>7.1f}" for v in oracle)
              + f" {100 * oracle.mean():>6.1f} {100 * oracle.std():>5.1f}")


def selection_table(arms: list[str], runs: list[dict]) -> None:
    """Per arm, the mean target accuracy of the last epoch, of the epoch each validator
    selects, and of the best epoch (per-epoch accuracies, before AdaBN's final re-estimate)."""
    names = list(VALIDATORS)
    width = max(len(arm) for arm in arms)
    print(f"{'arm':<{width}} {'last':>6} " + " ".join(f"{n:>10}" for n in names) + f" {'best':>6}")
    for arm in arms:
        rows = [run[arm]["selection"]["epochs"] for run in runs if "selection" in run[arm]]
        if not rows:
            continue
        last = np.mean([r[-1]["target_accuracy"] for r in rows])
        best = np.mean([max(e["target_accuracy"] for e in r) for r in rows])
        chosen = [np.mean([max(r, key=lambda e, n=n: e["scores"][n])["target_accuracy"]
                           for r in rows]) for n in names]
        print(f"{arm:<{width}} {100 * last:>6.1f} " + " ".join(f"{100 * c:>10.1f}" for c in chosen)
              + f" {100 * best:>6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--source_epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--arms", default=ARMS)
    parser.add_argument("--mmd_weight", type=float, default=0.3)
    parser.add_argument("--oracle", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sources", type=int, default=1,
                        help="source models per seed (initialisation seeds seed + 100 k); "
                        "with more than one, each arm's 'best-of-K' row keeps the run --pick "
                        "scores highest")
    parser.add_argument("--pick", default="im", choices=list(VALIDATORS))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = ["source-only", *args.arms.split(",")]
    for arm in arms:
        arm_values(arm, args.mmd_weight)  # an unknown arm fails before any training
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(seed, arms, args, tmp) for seed in seeds]
    print(f"\nmmd_digits: digits -> digits-M, small_cnn from scratch at 16 px, "
          f"{args.source_epochs} source epochs then {args.epochs} per arm, weight "
          f"{args.mmd_weight}; machine: {platform.node()} ({platform.machine()}, "
          f"{os.cpu_count()} CPUs); one run per cell; {(time.time() - start) / 60:.0f} min")
    print("target accuracy (%), last epoch; gain over source-only (points), share of the "
          "source-only -> oracle gap closed, worst seed minus mean (points):")
    picked = [f"{arm} best-of-{args.sources}" for arm in arms[1:]] if args.sources > 1 else []
    if picked:
        print(f"('best-of-{args.sources}': of {args.sources} source models per seed, the "
              f"adapted run whose last epoch {args.pick} scores highest)")
    accuracy_table(arms + picked, seeds, runs)
    print("\nwhich epoch (mean target accuracy %, per-epoch, before the final AdaBN):")
    selection_table(arms[1:], runs)


if __name__ == "__main__":
    main()
