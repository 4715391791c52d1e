"""The probe's label audit and learning curve, measured on labels we corrupted ourselves.

    python benchmarks/probe_audit.py [--seeds=0,1,2] [--out=benchmarks/results/probe_audit.json]

Data: scikit-learn's digits 5-9 as PNG class folders (seeded draw: 100 training images per
class, 20 validation and 40 test per class). (b) Audit: 5 % and 10 % of the training labels
flipped to another class at random; `ktransfer.probe` with the shipped digits backbone flags
doubtful labels; precision and recall of the flagged set against the flipped one; then
configs/quickstart.cfg's recipe trained on the noisy folder and on the noisy folder without
what was flagged, test accuracy of each. (c) Learning curve: the probe on half the (clean)
training images predicts the linear probe's validation accuracy with all of them; compared with
the probe run on all (the same validation images).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.probing.probe import probe  # noqa: E402
from ktransfer.training import train  # noqa: E402

BACKBONE = "small_cnn@ktransfer/assets/digits04_small_cnn.weights.h5"
TRAIN, VAL, TEST = 100, 20, 40
FLIPS = (0.05, 0.10)


def folders(root: Path, seed: int, flip: float, train_per_class: int = TRAIN) -> set[str]:
    """train/ (labels flipped at rate `flip`), val/ and test/ folders; the flipped files'
    names. The same seed gives the same validation and test images for any train size."""
    digits, rng = load_digits(), np.random.default_rng(seed)
    flipped = set()
    for digit in range(5, 10):
        picked = rng.permutation(np.flatnonzero(digits.target == digit))
        for n, i in enumerate(picked[:VAL + TEST + train_per_class]):
            split = "val" if n < VAL else "test" if n < VAL + TEST else "train"
            label = digit
            if split == "train" and rng.random() < flip:
                label = int(rng.choice([d for d in range(5, 10) if d != digit]))
                flipped.add(f"{i}.png")
            (root / split / str(label)).mkdir(parents=True, exist_ok=True)
            pixels = np.clip(digits.images[i] * 16, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).convert("RGB").save(root / split / str(label) / f"{i}.png")
    return flipped


def _probe(root: Path, out: Path, seed: int):
    return probe(config.build_probe(data=str(root / "train"), val_data=str(root / "val"),
                                    test_data=str(root / "test"), image_size=32, verbose=0,
                                    seed=seed, split_seed=seed, backbones=(BACKBONE,),
                                    output_dir=str(out)))


def _train(data: Path, test: Path, seed: int, run_dir: Path) -> float:
    cfg = config.from_flagfile("configs/quickstart.cfg", data=str(data),
                               val_data=str(test.parent / "val"), test_data=str(test),
                               classes=(), train_per_class=0, test_split=0.0,
                               seed=seed, split_seed=seed, verbose=0, tensorboard=False,
                               report=False, run_dir=str(run_dir))
    return float(train(cfg).metrics["test"]["accuracy"])


def audit(flip: float, seed: int, tmp: Path) -> dict[str, float]:
    root = tmp / f"flip{flip}_{seed}"
    flipped = folders(root, seed, flip)
    result = _probe(root, root / "probe", seed)
    found = {Path(row["example"]).name for row in result.audit["flagged"]}
    hits = len(found & flipped)
    cleaned = root / "cleaned"
    shutil.copytree(root / "train", cleaned)
    for row in result.audit["flagged"]:
        (cleaned / Path(row["example"]).relative_to(root / "train")).unlink()
    return {"flipped": len(flipped), "flagged": len(found),
            "precision": hits / max(len(found), 1), "recall": hits / max(len(flipped), 1),
            "noisy_accuracy": _train(root / "train", root / "test", seed, root / "noisy"),
            "cleaned_accuracy": _train(cleaned, root / "test", seed, root / "clean")}


def learning_curve(seed: int, tmp: Path) -> dict[str, float]:
    found = {}
    for name, per_class in (("half", TRAIN // 2), ("all", TRAIN)):
        root = tmp / f"curve_{name}_{seed}"
        folders(root, seed, 0.0, per_class)
        found[name] = _probe(root, root / "probe", seed).ranking[0].curve
    predicted, spread = found["half"].predicted.get("2x", (float("nan"), float("nan")))
    return {"predicted_2x": predicted, "predicted_2x_std": spread,
            "measured_2x": float(np.mean(found["all"].scores[-1])),
            "measured_half": float(np.mean(found["half"].scores[-1]))}


def measure(part: str, seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    if part == "curve":
        return {"learning_curve": learning_curve(seed, tmp)}
    flip = float(part)
    return {f"flip_{flip:.2f}": audit(flip, seed, tmp)}


def main() -> None:
    args = record.parser(__doc__, "probe_audit").parse_args()
    seeds = args.seeds
    runs = record.run_seeds(seeds, [*map(str, FLIPS), "curve"], measure)
    arms = [f"flip_{f:.2f}" for f in FLIPS] + ["learning_curve"]
    metrics = ["flipped", "flagged", "precision", "recall", "noisy_accuracy",
               "cleaned_accuracy", "predicted_2x", "predicted_2x_std", "measured_2x",
               "measured_half"]
    summary = record.summarize(runs, arms, metrics)
    record.write(args.out, seeds=seeds, backbone=BACKBONE, train_per_class=TRAIN,
                 val_per_class=VAL, test_per_class=TEST, runs=runs, summary=summary)


if __name__ == "__main__":
    main()
