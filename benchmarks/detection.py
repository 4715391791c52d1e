"""Detection on real-pixel scenes: the detector transferred from EfficientNet-Lite0's ImageNet
weights against the same detector from scratch, and its int8 TFLite copy against it.

    python benchmarks/detection.py [--seeds=0,1,2] [--labelled=200] [--out=F.json]

Data (benchmarks/scenes.py: cats and cups cut from photographs that ship with scikit-image,
pasted onto other bundled photographs, 128 px, boxes exact): a labelled pool of 320 scenes
(drawn with seed 0) and a fixed test set of 80 (seed 1). Per seed, `--labelled` scenes of the
pool (chosen by the seed; 20 % of them validate). Arms, `--task=detection` at 128 px, batch 16:
`transferred` (--weights=imagenet: 10 epochs on the frozen backbone at 1e-3, then 5 of
fine-tuning at 1e-4) and `scratch` (--weights=none: 15 epochs training everything at 1e-3).
COCO mAP@[.50:.95] and AP50 on the test set, training seconds and images per second; for the
transferred arm also the int8 TFLite copy's mAP (`export --tflite=int8`, calibrated on the
training images). Results in benchmarks/results/detection.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks import record  # noqa: E402
from benchmarks.scenes import write_scenes  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.deploy.serving import export_saved  # noqa: E402
from ktransfer.training import train  # noqa: E402

COMMON = dict(task="detection", backbone="efficientnet_lite0", image_size=128, batch_size=16,
              lr_schedule="constant", aug_flip="horizontal", verbose=0, tensorboard=False,
              report=False)
ARMS = {  # arm -> flags beside COMMON
    "transferred": dict(weights="imagenet", epochs=10, lr=1e-3, fine_tune_epochs=5,
                        fine_tune_lr=1e-4),
    "scratch": dict(weights="none", epochs=0, fine_tune_epochs=15, fine_tune_lr=1e-3),
}


def subset(pool: Path, count: int, seed: int, out: Path) -> Path:
    """A COCO file of `count` images of `pool` chosen by `seed`, its images beside it."""
    found = json.loads(pool.read_text())
    rng = np.random.default_rng(seed)
    ids = {int(i) for i in rng.choice([im["id"] for im in found["images"]], count,
                                      replace=False)}
    images = [dict(im, file_name=str(pool.parent / "images" / im["file_name"]))
              for im in found["images"] if im["id"] in ids]
    out.write_text(json.dumps({**found, "images": images, "annotations": [
        a for a in found["annotations"] if a["image_id"] in ids]}))
    return out


def measure(pool: Path, test: Path, labelled: int):
    def arms(part: str, seed: int, folder: Path) -> dict[str, dict[str, float]]:
        data = subset(pool, labelled, seed, folder / f"labelled-{seed}.json")
        cfg = config.build(data=str(data), test_data=str(test), seed=seed, split_seed=seed,
                           run_dir=str(folder / f"{part}-{seed}"), **COMMON, **ARMS[part])
        started = time.time()
        result = train(cfg)
        seconds = time.time() - started
        seen = result.metrics["num_examples"]["train"] * sum(result.metrics["epochs"].values())
        found = {"map": float(result.metrics["test"]["map"]),
                 "ap50": float(result.metrics["test"]["ap50"]), "seconds": round(seconds, 1),
                 "images_per_second": round(seen / seconds, 2)}
        if part == "transferred":
            version = export_saved(config.ExportConfig(
                run_dir=str(result.run_dir), export_dir=str(folder / f"export-{seed}"),
                tflite="int8", on_accuracy_drop="warn"))
            copy = json.loads((version / "conversions.json").read_text())["tflite"]
            found |= {"int8_map": float(copy["accuracy"]), "int8_drop": float(copy["drop"]),
                      "int8_bytes": int(copy["bytes"])}
        return {part: found}

    return arms


def main() -> None:
    parser = record.parser(__doc__, "detection")
    parser.add_argument("--labelled", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_scenes(Path(tmp) / "pool", 320, seed=0)
        test = write_scenes(Path(tmp) / "test", 80, seed=1)
        runs = record.run_seeds(args.seeds, list(ARMS), measure(pool, test, args.labelled))
    for seed in runs:
        runs[seed]["gain"] = {"map": runs[seed]["transferred"]["map"]
                              - runs[seed]["scratch"]["map"]}
    summary = record.summarize(runs, [*ARMS, "gain"],
                               ["map", "ap50", "seconds", "images_per_second", "int8_map",
                                "int8_drop", "int8_bytes"])
    record.write(args.out, seeds=args.seeds, labelled=args.labelled, test_images=80,
                 common=COMMON, arms=ARMS, runs=runs, summary=summary)


if __name__ == "__main__":
    main()
