"""Multi-label from real examples, measured: images of 1-3 handwritten digits (which digits
are shown) transferred vs from scratch, and texts joined from 1-3 human-rated sentences of
different sources (which sources) with fine-tuned MiniLM vs TF-IDF one-vs-rest.

    python benchmarks/multi_label.py [--seeds=0,1,2] [--parts=images,texts]
                                     [--out=benchmarks/results/multi_label.json]

No real multi-label set ships offline, so both are built from real examples, with the seed:
- images: 200 and 1,500 pictures of a 2 x 2 grid of 8 x 8 cells, 1-3 cells holding distinct
  scikit-learn digits 0-9 (the rest blank), labels the digits shown; a CSV table of PNG files
  read with --task=multi_label, at 64 px (each digit at 32 px, the size the backbone learnt
  digits at). Transferred: configs/quickstart.cfg's backbone (small_cnn trained on digits
  0-4) and phases (head 20 epochs, then all layers 20 epochs); scratch:
  configs/quickstart_scratch.cfg's (the same network from random weights, 40 epochs, rate
  0.003, BatchNorm training); and the transferred start with scratch's rate and BatchNorm.
- texts: 3,000 texts, each 1-3 sentences of different sources among the human-rated
  movies / tweets / amazon / nyt sentences (`make text-assets`), labels the sources; a JSON-lines
  table. MiniLM: configs/sentiment.cfg's flags with --task=multi_label, kept by val_map;
  TF-IDF: word 1-2-grams, one logistic regression per label, thresholds chosen on the same
  validation split by F1 as ktransfer chooses its own.
Both arms see the same train / validation / test split (ktransfer's, by seed); scored on the
test split by mean average precision (mAP, macro over labels) and macro F1 at the thresholds.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import average_precision_score, f1_score  # noqa: E402

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.tasks.multi_label.core import best_thresholds  # noqa: E402
from ktransfer.text import builtin  # noqa: E402
from ktransfer.text.modality import TEXT  # noqa: E402
from ktransfer.training import train  # noqa: E402

SOURCES = ("movies", "tweets", "amazon", "nyt")
IMAGE_SIZES = (200, 1500)  # pictures in all (train 60 %, validation 15 %, test 25 %)
IMAGE_ARMS = (  # (name, flagfile, flags over it)
    ("transferred", "quickstart", {}),
    # the pretrained start with scratch's optimisation: rate 0.003, BatchNorm training
    ("transferred_scratch_schedule", "quickstart",
     {"fine_tune_lr": 0.003, "bn_trainable": True}),
    ("scratch", "quickstart_scratch", {}),
)


def digit_grids(root: Path, n: int, seed: int) -> Path:
    """ROOT/grids.csv over ROOT/<i>.png (16 x 16 px, 1-3 digits in a 2 x 2 grid)."""
    digits, rng = load_digits(), np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = [["file", "digits"]]
    for i in range(n):
        shown = rng.choice(10, int(rng.integers(1, 4)), replace=False)
        cells = rng.choice(4, len(shown), replace=False)
        pixels = np.zeros((16, 16), np.float64)
        for digit, cell in zip(shown, cells, strict=True):
            image = digits.images[rng.choice(np.flatnonzero(digits.target == digit))]
            r, c = divmod(int(cell), 2)
            pixels[8 * r:8 * r + 8, 8 * c:8 * c + 8] = image * 16
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB").save(
            root / f"{i:04d}.png")
        rows.append([f"{i:04d}.png", "|".join(str(d) for d in sorted(shown))])
    with (root / "grids.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root / "grids.csv"


def joined_sentences(path: Path, n: int, seed: int) -> Path:
    """PATH (JSON lines): `n` texts of 1-3 sentences from different sources, labels the
    sources."""
    rng = np.random.default_rng(seed)
    pools = {s: [t for split in builtin.BUILTIN.get(f"ratings_{s}", "data")().values()
                 for t in split.texts] for s in SOURCES}
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            chosen = sorted(rng.choice(len(SOURCES), int(rng.integers(1, 4)), replace=False))
            parts = [pools[SOURCES[i]][rng.integers(len(pools[SOURCES[i]]))] for i in chosen]
            order = rng.permutation(len(parts))
            f.write(json.dumps({"text": " ".join(parts[i] for i in order),
                                "label": [SOURCES[i] for i in chosen]}) + "\n")
    return path


def scores(truth: np.ndarray, outputs: np.ndarray, thresholds: list[float]) -> dict[str, float]:
    """mAP and macro F1 of outputs [N, C] against label sets [N, C]."""
    decided = outputs >= np.asarray(thresholds)[None, :]
    return {"map": float(average_precision_score(truth, outputs, average="macro")),
            "macro_f1": float(f1_score(truth, decided, average="macro", zero_division=0))}


def images(seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    """Both arms at each size of the labelled set (IMAGE_SIZES examples in all)."""
    found = {}
    for size in IMAGE_SIZES:
        table = digit_grids(tmp / f"grids{seed}-{size}", size, seed)
        for arm, flagfile, extra in IMAGE_ARMS:
            cfg = config.from_flagfile(
                f"configs/{flagfile}.cfg", data=str(table), task="multi_label",
                label_column="digits", classes=(), train_per_class=0, val_split=0.15,
                test_split=0.25, image_size=64, batch_size=32, seed=seed, split_seed=seed,
                verbose=0, tensorboard=False, report=False,
                run_dir=str(tmp / f"{arm}{seed}-{size}"), **extra)
            metrics = train(cfg).metrics
            found[f"{arm}_{size}"] = {"map": metrics["test"]["map"],
                                      "macro_f1": metrics["test"]["macro_f1"],
                                      "seconds": metrics["seconds"],
                                      "train_examples": metrics["num_examples"]["train"]}
    return found


def texts(seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    table = joined_sentences(tmp / f"joined{seed}.jsonl", 3000, seed)
    cfg = config.from_flagfile(
        "configs/sentiment.cfg", data=str(table), task="multi_label", train_per_class=0,
        val_split=0.15, test_split=0.25, monitor="val_map", seed=seed, split_seed=seed,
        verbose=0, tensorboard=False, report=False, run_dir=str(tmp / f"minilm{seed}"))
    splits = TEXT.load_splits(cfg)
    assert splits.test is not None
    vectors = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vectors.fit_transform(list(splits.train.texts))
    models = [LogisticRegression(max_iter=2000, C=10.0).fit(x, splits.train.labels[:, j])
              for j in range(len(splits.class_names))]

    def tfidf(examples) -> np.ndarray:
        v = vectors.transform(list(examples.texts))
        return np.stack([m.predict_proba(v)[:, 1] for m in models], axis=1)

    thresholds = best_thresholds(tfidf(splits.val), splits.val.labels)
    found = {"tfidf_one_vs_rest": scores(splits.test.labels > 0.5, tfidf(splits.test),
                                         thresholds)}
    metrics = train(cfg).metrics
    found["fine_tuned_minilm"] = {"map": metrics["test"]["map"],
                                  "macro_f1": metrics["test"]["macro_f1"],
                                  "seconds": metrics["seconds"]}
    return found


def main() -> None:
    parser = record.parser(__doc__, "multi_label")
    parser.add_argument("--parts", default="images,texts")
    args = parser.parse_args()
    seeds, parts = args.seeds, args.parts.split(",")
    measure = {"images": images, "texts": texts}
    runs = record.run_seeds(seeds, parts, lambda part, seed, tmp: measure[part](seed, tmp))
    arms = [f"{arm}_{size}" for size in IMAGE_SIZES for arm, _, _ in IMAGE_ARMS]
    arms += ["tfidf_one_vs_rest", "fine_tuned_minilm"]
    summary = record.summarize(runs, arms, ["map", "macro_f1", "seconds", "train_examples"])
    record.write(args.out, seeds=seeds, parts=parts, runs=runs, summary=summary)


if __name__ == "__main__":
    main()
