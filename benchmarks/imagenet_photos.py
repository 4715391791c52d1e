"""Does the converted EfficientNet-Lite name real photos? The top 5 ImageNet classes of every
photo in `ktransfer.image.sample_photos` (scikit-image's and scikit-learn's bundled photos,
expected classes chosen before any network saw them), per variant.

    python benchmarks/imagenet_photos.py [--variants=efficientnet_lite0,efficientnet_lite1,
        efficientnet_lite2] [--out=benchmarks/results/imagenet_photos.json]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from keras_hub.src.utils.imagenet.imagenet_utils import IMAGENET_NAMES  # noqa: E402

from benchmarks import record  # noqa: E402
from ktransfer.image import sample_photos  # noqa: E402
from ktransfer.image.efficientnet_lite import VARIANTS, imagenet_logits  # noqa: E402


def top5(key: str) -> list[dict]:
    """Per photo: its expected classes, the top 5 (name, probability) and whether one hit."""
    logits = imagenet_logits(sample_photos.photos(VARIANTS[key].size), key)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    rows = []
    for photo, row, hit in zip(sample_photos.PHOTOS, probabilities,
                               sample_photos.top5_hits(logits), strict=True):
        best = np.argsort(-row)[:5]
        rows.append({"photo": photo.name,
                     "expected": [IMAGENET_NAMES[i][1] for i in photo.expected],
                     "top5": [[IMAGENET_NAMES[int(i)][1], round(float(row[i]), 3)] for i in best],
                     "hit": hit})
        print(f"{key} {photo.name:28} {'-' if hit is None else hit!s:5} "
              + ", ".join(f"{name} {p:.2f}" for name, p in rows[-1]["top5"]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=str(record.RESULTS / "imagenet_photos.json"))
    args = parser.parse_args()
    found = {key: top5(key) for key in args.variants.split(",")}
    hits = {key: f"{sum(r['hit'] is True for r in rows)} of "
                 f"{sum(r['hit'] is not None for r in rows)}" for key, rows in found.items()}
    print(hits)
    record.write(args.out, hits=hits, photos=found)


if __name__ == "__main__":
    main()
