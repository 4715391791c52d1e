"""Real ImageNet transfer, measured: EfficientNet-Lite0 with its genuine ImageNet weights
against the same network from scratch and against the digits source backbone, on two tasks.

    python benchmarks/imagenet_transfer.py [--seeds=0,1,2] [--tasks=faces,digits_m]
        [--out=benchmarks/results/imagenet_transfer.json]

Arms (configs/quickstart_imagenet*.cfg, unchanged but for the data): `imagenet` (Lite0, head
20 epochs on frozen features, then blocks 6-7 and the head 5 epochs, 224 px); `scratch` (Lite0
from random weights, every layer 25 epochs); `digits_backbone` (the shipped small_cnn trained on
digits 0-4, at 32 px, configs/quickstart.cfg's recipe). Tasks: `faces` (scikit-image's
lfw_subset: real 25x25 photo patches, face vs not, 10 labelled per class, 100 test) and
`digits_m` (the colour-textured digits 5-9, 10 labelled per class, 448 test). The seed draws
the labelled examples and initialises the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.training import train  # noqa: E402

ARMS = {"imagenet": "configs/quickstart_imagenet.cfg",
        "scratch": "configs/quickstart_imagenet_scratch.cfg",
        "digits_backbone": "configs/quickstart_imagenet_digits.cfg"}
TASKS = {"faces": {},
         "digits_m": {"data": "builtin:digits_m", "classes": ("5", "6", "7", "8", "9")}}


def measure(task: str, seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    found = {}
    for arm, flagfile in ARMS.items():
        cfg = config.from_flagfile(flagfile, seed=seed, split_seed=seed, verbose=0,
                                   tensorboard=False, report=False,
                                   run_dir=str(tmp / f"{task}_{arm}{seed}"), **TASKS[task])
        metrics = train(cfg).metrics
        found[f"{task}_{arm}"] = {"accuracy": metrics["test"]["accuracy"],
                                  "seconds": metrics["seconds"]}
    return found


def main() -> None:
    parser = record.parser(__doc__, "imagenet_transfer")
    parser.add_argument("--tasks", default="faces,digits_m")
    args = parser.parse_args()
    seeds, tasks = args.seeds, args.tasks.split(",")
    runs = record.run_seeds(seeds, tasks, measure)
    arms = [f"{task}_{arm}" for task in tasks for arm in ARMS]
    summary = record.summarize(runs, arms, ["accuracy", "seconds"])
    record.write(args.out, seeds=seeds, arms=ARMS, tasks=TASKS, runs=runs, summary=summary)


if __name__ == "__main__":
    main()
