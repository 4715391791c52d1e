"""Full fine-tuning vs LoRA (and --remat) on the sentiment run: test accuracy, trainable weights,
step time and peak memory.

    python benchmarks/lora.py [--seeds=0,1,2] [--arms=full,lora4,lora16,remat] [--out=FILE.json]

Arms: full, lora4, lora16, lora16_lr2e-3 (the same at a 4x higher rate), remat.

Every arm is configs/sentiment.cfg (real all-MiniLM-L6-v2, 2,000 human-rated sentences, the
2,008 fixed test sentences) with the seed; the arms differ in phase 2 only. `full` fine-tunes
every encoder weight at the config's 5e-5; `loraR` trains rank-R adapters on the attention
query and value projections (`--lora_rank=R`, alpha = R) at 5e-4 (adapters start at zero and
need a 10x larger rate, the usual LoRA practice; not tuned here); `remat` is `full` with
`--remat`. Each arm runs in a process of its own, so its peak resident memory (ru_maxrss,
the whole process: TensorFlow, data, model) is its own. Step time: the mean seconds per
optimizer step of the fine-tuning epochs after the first (the first includes tracing).
Arms are interleaved within each seed. Needs `make text-assets`.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARMS: dict[str, dict] = {"full": {}, "lora4": {"lora_rank": 4, "fine_tune_lr": 5e-4},
                         "lora16": {"lora_rank": 16, "fine_tune_lr": 5e-4},
                         "lora16_lr2e-3": {"lora_rank": 16, "fine_tune_lr": 2e-3},
                         "remat": {"remat": True}}
METRICS = ["test_accuracy", "trainable_weights", "step_seconds", "peak_rss_mb", "minutes"]


def one(arm: str, seed: int, run_dir: str) -> None:
    """In the child process: trains one arm and prints its figures as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    from ktransfer import config
    from ktransfer.network.classifier import get_backbone
    from ktransfer.training import train

    result = train(config.from_flagfile(
        ROOT / "configs" / "sentiment.cfg", **ARMS[arm], seed=seed, run_dir=run_dir,
        overwrite=True, verbose=0, tensorboard=False, report=False))
    rows = [r for r in csv.DictReader(open(Path(run_dir) / "history.csv"))
            if r["phase"] == "fine_tune"]
    steps = result.metrics["num_examples"]["train"] / 32
    later = [float(r["seconds"]) for r in rows[1:]] or [float(rows[0]["seconds"])]
    adapters = Path(run_dir) / "lora_adapters.npz"
    if adapters.is_file():
        import numpy as np

        with np.load(adapters) as data:
            trainable = sum(data[k].size for k in data.files if k != "__meta__")
    else:
        trainable = sum(int(w.numpy().size) for w in get_backbone(result.model).weights)
    head = sum(int(w.numpy().size) for layer in result.model.layers
               if layer.name != "backbone" for w in layer.weights)
    print(json.dumps({"test_accuracy": result.metrics["test"]["accuracy"],
                      "trainable_weights": trainable + head,
                      "step_seconds": sum(later) / len(later) / steps,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "minutes": result.metrics["seconds"] / 60}))


def measure(arm: str, seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    done = subprocess.run([sys.executable, __file__, "--one", arm, str(seed),
                           str(tmp / f"{arm}-{seed}")], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{arm} seed {seed} failed:\n{done.stderr[-3000:]}")
    return {arm: json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        one(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    found = record.parser(__doc__, "lora")
    found.add_argument("--arms", default="full,lora4,lora16,remat")
    args = found.parse_args()
    arms = args.arms.split(",")
    runs = record.run_seeds(args.seeds, arms, measure)
    record.write(args.out, arms=arms, runs=runs, summary=record.summarize(runs, arms, METRICS))


if __name__ == "__main__":
    main()
