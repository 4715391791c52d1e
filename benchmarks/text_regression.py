"""Regression on real human ratings: predict each tweet's mean sentiment rating (-4 .. 4, about
20 raters each) with fine-tuned all-MiniLM-L6-v2 against TF-IDF + ridge regression.

    python benchmarks/text_regression.py [--seeds=0,1,2] [--data=builtin:ratings_tweets]
                                         [--out=benchmarks/results/text_regression.json]

Both arms see the same training sentences (the set's fixed 80 % train split less a seeded 10 %
validation split, which only MiniLM uses to choose its epoch) and are scored on the same fixed
20 % test split. MiniLM follows configs/ratings.cfg (configs/sentiment.cfg with
--task=regression: MSE loss, the epoch kept by validation MAE): a head on the cached sentence
vectors, then the whole encoder fine-tuned. TF-IDF: word 1-2-grams, ridge with alpha 1. Prints
and writes test Pearson r and MAE per seed, with the mean and standard deviation; needs
`make text-assets`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.text.modality import TEXT  # noqa: E402
from ktransfer.training import train  # noqa: E402

FLAGFILE = ROOT / "configs" / "ratings.cfg"


def tfidf_ridge(train_texts, train_y, test_texts) -> np.ndarray:
    """Ridge regression (alpha 1) on TF-IDF word 1-2-grams; predictions of `test_texts`."""
    vectors = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = Ridge(alpha=1.0).fit(vectors.fit_transform(train_texts), train_y)
    return model.predict(vectors.transform(test_texts))


def run_seed(data: str, seed: int, tmp: str) -> dict[str, dict[str, float]]:
    cfg = config.from_flagfile(FLAGFILE, data=data, seed=seed, split_seed=seed, verbose=0,
                               tensorboard=False, report=False, run_dir=f"{tmp}/s{seed}")
    splits = TEXT.load_splits(cfg)
    assert splits.test is not None
    truth = splits.test.labels
    started = time.time()
    guess = tfidf_ridge(list(splits.train.texts), splits.train.labels, list(splits.test.texts))
    out = {"tfidf_ridge": {"pearson": float(stats.pearsonr(guess, truth)[0]),
                           "mae": float(np.mean(np.abs(guess - truth))),
                           "seconds": round(time.time() - started, 1)}}
    metrics = train(cfg).metrics
    out["fine_tuned_minilm"] = {"pearson": metrics["test"]["pearson"],
                                "mae": metrics["test"]["mae"], "seconds": metrics["seconds"]}
    out["num_examples"] = metrics["num_examples"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data", default="builtin:ratings_tweets")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                             "text_regression.json"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            runs[seed] = run_seed(args.data, seed, tmp)
            print(f"seed {seed}: {json.dumps(runs[seed])}", flush=True)
    summary = {}
    for arm in ("tfidf_ridge", "fine_tuned_minilm"):
        for metric in ("pearson", "mae"):
            values = [runs[s][arm][metric] for s in seeds]
            summary[f"{arm}_{metric}"] = {"mean": float(np.mean(values)),
                                          "std": float(np.std(values)), "runs": values}
            print(f"{arm:18} {metric:8} {np.mean(values):.4f} ± {np.std(values):.4f}  "
                  f"({' / '.join(f'{v:.4f}' for v in values)})")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    record = {"command": "python benchmarks/text_regression.py " + " ".join(sys.argv[1:]),
              "commit": commit, "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
              "data": args.data, "seeds": seeds, "runs": runs, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
