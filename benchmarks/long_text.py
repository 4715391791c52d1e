"""Texts longer than the window: `--long_text=chunks` against truncation on the sentiment run
with a 16-token window.

    python benchmarks/long_text.py [--seeds=0,1] [--out=FILE]

Per seed and arm: configs/sentiment.cfg (real all-MiniLM-L6-v2, 2,000 human-rated sentences,
2,008 fixed test sentences) with `--max_length=16`, which most sentences overflow, the head
trained 2 epochs on the encoder (no feature cache: a chunked run cannot use one) and then the
encoder fine-tuned 3 epochs; the arms differ only in `--long_text`. These are sentences read
through a small window, standing in for long documents, which cannot be downloaded here.
Figures: test accuracy, the share of test texts read as several chunks (chunks) or cut
(truncate), and the run's wall time. Needs `make text-assets`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import record  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.training import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARMS = ["truncate", "chunks"]
METRICS = ["accuracy", "long_share", "wall_s"]


def measure(arm: str, seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    start = time.perf_counter()
    run = train(config.from_flagfile(
        ROOT / "configs" / "sentiment.cfg", max_length=16, long_text=arm, cache_features=False,
        epochs=2, fine_tune_epochs=3, seed=seed, run_dir=str(tmp / f"{arm}{seed}"),
        overwrite=True, verbose=0, tensorboard=False, report=False))
    wall = time.perf_counter() - start
    m = json.loads((run.run_dir / "metrics.json").read_text())
    long = m["data"]["chunked" if arm == "chunks" else "truncated"]["test"]
    return {arm: {"accuracy": m["test"]["accuracy"], "wall_s": wall,
                  "long_share": long / m["num_examples"]["test"]}}


def main() -> None:
    args = record.parser(__doc__, "long_text").parse_args()
    runs = record.run_seeds(args.seeds, ARMS, measure)
    record.write(args.out, arms=ARMS, runs=runs, summary=record.summarize(runs, ARMS, METRICS))


if __name__ == "__main__":
    main()
