"""Imbalance, measured: plain cross-entropy against balanced class weights, explicit class
weights and the focal loss, trained on a 10:1 imbalanced set, scored on a balanced test set.

    python benchmarks/imbalance.py [--seeds=0,1,2] [--out=benchmarks/results/imbalance.json]

Data (real scikit-learn digits 5-9, as PNG class folders drawn with the seed): training
folder with 100 images each of 5 and 6 and 10 each of 7, 8 and 9 (10:1), its validation split
stratified (so imbalanced too); a balanced test folder of 40 images per class, never trained
on. Every arm is configs/quickstart.cfg's transfer (small_cnn trained on digits 0-4, head 20
epochs, then all layers 20 epochs) with --monitor=val_loss, changing only the loss or weights:
cross-entropy; --class_weights=balanced (10:1 here, the inverse ratio); explicit
--class_weights=5=1,6=1,7=3,8=3,9=3 (a milder choice a user might make); --loss=focal
--focal_gamma=2. Scored by macro F1 and the minority classes' mean recall.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.training import train  # noqa: E402

TRAIN = {"5": 100, "6": 100, "7": 10, "8": 10, "9": 10}
TEST_PER_CLASS = 40
MINORITY = ("7", "8", "9")
ARMS = {"cross_entropy": {},
        "balanced_weights": {"class_weights": "balanced"},
        "explicit_weights": {"class_weights": "5=1,6=1,7=3,8=3,9=3"},
        "focal": {"loss": "focal", "focal_gamma": 2.0}}


def folders(root: Path, seed: int) -> tuple[Path, Path]:
    """(train folder, test folder) of PNG class folders, disjoint images."""
    digits, rng = load_digits(), np.random.default_rng(seed)
    for name, count in TRAIN.items():
        picked = rng.permutation(np.flatnonzero(digits.target == int(name)))
        for split, files in (("train", picked[:count]),
                             ("test", picked[count:count + TEST_PER_CLASS])):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in files:
                pixels = np.clip(digits.images[i] * 16, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).convert("RGB").save(root / split / name / f"{i}.png")
    return root / "train", root / "test"


def run(arm: str, seed: int, tmp: Path) -> dict[str, float]:
    data, test = folders(tmp / f"data{seed}", seed)
    cfg = config.from_flagfile(
        "configs/quickstart.cfg", data=str(data), test_data=str(test), classes=(),
        train_per_class=0, val_split=0.2, test_split=0.0, monitor="val_loss", seed=seed,
        split_seed=seed, verbose=0, tensorboard=False, report=True,
        run_dir=str(tmp / f"{arm}{seed}"), **ARMS[arm])
    metrics = train(cfg).metrics
    summary = _evaluation(Path(cfg.train.run_dir))
    recall = {r["class"]: r["recall"] for r in summary["per_class"]}
    return {"macro_f1": summary["macro_f1"], "accuracy": metrics["test"]["accuracy"],
            "minority_recall": float(np.mean([recall[c] for c in MINORITY])),
            "seconds": metrics["seconds"]}


def _evaluation(run_dir: Path) -> dict:
    """The run's evaluation of its test split (report/evaluation.json)."""
    return json.loads((run_dir / "report" / "evaluation.json").read_text())


def main() -> None:
    args = record.parser(__doc__, "imbalance").parse_args()
    seeds = args.seeds
    runs = record.run_seeds(seeds, list(ARMS), lambda arm, seed, tmp: {arm: run(arm, seed, tmp)})
    summary = record.summarize(runs, list(ARMS),
                               ["macro_f1", "minority_recall", "accuracy", "seconds"])
    record.write(args.out, seeds=seeds, train_counts=TRAIN, test_per_class=TEST_PER_CLASS,
                 arms=ARMS, runs=runs, summary=summary)


if __name__ == "__main__":
    main()
