"""Do the training recipes help? Test accuracy of arms that differ from a base flagfile by a few
flags, on the offline quickstart and on a harder built-in set, over several seeds.

    python benchmarks/recipes.py [--group=schedules|augmentation|regularisation|ema|auto_lr|all]
        [--settings=quickstart,digits_m|lite0_digits_m] [--seeds=0,1,2] [--out=F.json]

Settings: `quickstart` is configs/quickstart.cfg (digits 5-9 from a backbone trained on digits
0-4, 2 labels per class); `digits_m` is the same transfer to coloured, textured digits 5-9
(`builtin:digits_m`) with 20 labels per class; `lite0_digits_m` is that task from
EfficientNet-Lite0's genuine ImageNet weights (configs/quickstart_imagenet.cfg: 224 px, head 20
epochs, then blocks 6-7 and the head 5 epochs). `--group=all` runs every group's arms with one
shared base. Every arm of a setting sees the same split for a seed; the seed also sets the
initialisation and the batch order. Prints test accuracy per seed, mean and standard deviation,
and writes them to benchmarks/results/. One run per cell: differences inside the spread are not
effects.
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

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.training import train  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SETTINGS = {  # setting -> (base flagfile, flags that differ from it)
    "quickstart": (CONFIGS / "quickstart.cfg", {}),
    "digits_m": (CONFIGS / "quickstart.cfg", {"data": "builtin:digits_m",
                                              "train_per_class": 20}),
    "lite0_digits_m": (CONFIGS / "quickstart_imagenet.cfg",
                       {"data": "builtin:digits_m", "classes": ("5", "6", "7", "8", "9"),
                        "train_per_class": 20}),
}
GROUPS = {  # group -> arm -> flags that differ from the base flagfile
    "schedules": {
        "cosine (base)": {},
        "one_cycle": {"lr_schedule": "one_cycle", "warmup_epochs": 0.0, "cosine_alpha": 0.01},
        "cyclic triangular": {"lr_schedule": "cyclic", "warmup_epochs": 0.0,
                              "cycle_epochs": 4.0},
        "cyclic triangular2": {"lr_schedule": "cyclic", "warmup_epochs": 0.0,
                               "cycle_epochs": 4.0, "cyclic_policy": "triangular2"},
    },
    "augmentation": {
        "none (base)": {},
        "shear 0.2": {"aug_shear": 0.2},
        "colour jitter 0.4": {"aug_color_jitter": 0.4},
        "RandAugment 2,9": {"aug_randaugment": "2,9"},
        "erasing 0.25": {"aug_erasing": 0.25},
        "MixUp 0.2": {"aug_mixup": 0.2},
        "CutMix 1.0": {"aug_cutmix": 1.0},
    },
    "regularisation": {
        "none (base)": {},
        "L2: weight decay 0.01": {"weight_decay": 0.01},
        "L2-SP 0.1,0.01": {"l2sp": "0.1"},
        "L2-SP 1,0.1": {"l2sp": "1.0"},
    },
    "auto_lr": {
        "config's rates (base)": {},
        "--lr=auto --fine_tune_lr=auto": {"lr": "auto", "fine_tune_lr": "auto"},
    },
    "ema": {
        "none (base)": {},
        "EMA 0.9": {"ema": 0.9},
        "EMA 0.97": {"ema": 0.97},
    },
}


GROUPS["all"] = {name: arm for group in GROUPS.values() for name, arm in group.items()
                 if "(base)" not in name}
GROUPS["all"] = {"the config (base)": {}, **GROUPS["all"]}


def run_cell(setting: str, arm: dict, seed: int, run_dir: str) -> float:
    """Test accuracy of one arm in one setting for one seed."""
    flagfile, flags = SETTINGS[setting]
    cfg = config.from_flagfile(flagfile, run_dir=run_dir, seed=seed, split_seed=seed, verbose=0,
                               tensorboard=False, report=False, **{**flags, **arm})
    return float(train(cfg).metrics["test"]["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", default="schedules", choices=sorted(GROUPS))
    parser.add_argument("--settings", default="quickstart,digits_m")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = GROUPS[args.group]
    started = time.time()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings.split(","):
            results[setting] = {name: [] for name in arms}
            for seed in seeds:  # arms interleaved within a seed
                for i, (name, arm) in enumerate(arms.items()):
                    acc = run_cell(setting, arm, seed, f"{tmp}/{setting}-{seed}-{i}")
                    results[setting][name].append(acc)
                    print(setting, seed, name, f"{acc:.4f}", flush=True)
    print(f"\nrecipes/{args.group}: machine {platform.node()} ({platform.machine()}, "
          f"{os.cpu_count()} CPUs); one run per cell; {(time.time() - started) / 60:.1f} min")
    print(f"{'setting':<11} {'arm':<22} " + " ".join(f"seed {s:<3}" for s in seeds)
          + "    mean    std")
    for setting, by_arm in results.items():
        for name, values in by_arm.items():
            print(f"{setting:<11} {name:<22} " + " ".join(f"{v:8.4f}" for v in values)
                  + f"  {np.mean(values):.4f} {np.std(values):.4f}")
    name = f"recipes_{args.group}_{args.settings.replace(',', '_')}.json"
    out = args.out or record.RESULTS / name
    summary = {setting: {name: record.spread(values) for name, values in by_arm.items()}
               for setting, by_arm in results.items()}
    record.write(out, group=args.group, arms=arms, settings=args.settings.split(","),
                 seeds=seeds, summary=summary)


if __name__ == "__main__":
    main()
