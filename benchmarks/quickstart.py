"""The README's digits quickstart: transfer against the same network from scratch, 3 seeds.

    python benchmarks/quickstart.py [--seeds=0,1,2] [--per_class=2] [--out=F.json]

Arms (configs/, each with --seed=S --split_seed=S, which also picks the labelled images):
`transferred` is configs/quickstart.cfg (a small CNN trained on digits 0-4 in 4 orientations,
transferred to digits 5-9); `scratch` is configs/quickstart_scratch.cfg (the same network and
labels, random weights, BatchNorm training); `scratch_bn_frozen` adds --nobn_trainable. Test
accuracy on the 359 test images of digits 5-9, the gain of transfer over the better scratch
arm per seed, their means and spreads, in benchmarks/results/quickstart.json (or
quickstart_per_class_N.json).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.training import train  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ARMS = {  # arm -> (flagfile, flags beside it)
    "transferred": ("quickstart.cfg", {}),
    "scratch": ("quickstart_scratch.cfg", {}),
    "scratch_bn_frozen": ("quickstart_scratch.cfg", {"bn_trainable": False}),
}


def measure(per_class: int):
    def arms(part: str, seed: int, folder: Path) -> dict[str, dict[str, float]]:
        flagfile, flags = ARMS[part]
        started = time.time()
        cfg = config.from_flagfile(CONFIGS / flagfile, run_dir=str(folder / f"{part}-{seed}"),
                                   seed=seed, split_seed=seed, train_per_class=per_class,
                                   verbose=0, tensorboard=False, report=False, **flags)
        result = train(cfg)
        return {part: {"accuracy": float(result.metrics["test"]["accuracy"]),
                       "seconds": round(time.time() - started, 1)}}

    return arms


def main() -> None:
    parser = record.parser(__doc__, "quickstart")
    parser.add_argument("--per_class", type=int, default=2)
    args = parser.parse_args()
    if args.per_class != 2 and args.out == str(record.RESULTS / "quickstart.json"):
        args.out = str(record.RESULTS / f"quickstart_per_class_{args.per_class}.json")
    runs = record.run_seeds(args.seeds, list(ARMS), measure(args.per_class))
    for seed in runs:
        best_scratch = max(runs[seed]["scratch"]["accuracy"],
                           runs[seed]["scratch_bn_frozen"]["accuracy"])
        runs[seed]["gain"] = {"accuracy": runs[seed]["transferred"]["accuracy"] - best_scratch}
    summary = record.summarize(runs, [*ARMS, "gain"], ["accuracy", "seconds"])
    record.write(args.out, seeds=args.seeds, per_class=args.per_class, arms=ARMS, runs=runs,
                 summary=summary)


if __name__ == "__main__":
    main()
