"""Outputs users can trust, measured: temperature scaling's calibration error, conformal sets'
coverage and the abstain rule's rejection of classes the model never saw.

    python benchmarks/calibration.py [--seeds=0,1,2] [--runs=quickstart,sentiment]
                                     [--out=benchmarks/results/calibration.json]

Each run is a shipped config (configs/quickstart.cfg: digits 5-9 from 2 labelled images per
class on a backbone trained on 0-4; configs/sentiment.cfg: fine-tuned MiniLM on movie
sentences, needs `make text-assets`) with --calibrate=temperature --coverage=0.9
--abstain_rate=0.05 and the seed given (which also draws the splits). Per run: the test
split's expected calibration error (15 bins) before and after, accuracy, the 90 % sets'
coverage and mean size, the share of test examples abstained on. Quickstart runs also score
every scikit-learn digit 0-4 (never seen by the head): the share abstained on, and how well
the unknown-input score (1 - top probability) and, for comparison, the energy score
(-logsumexp of the logits) separate them from the test digits (AUROC).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import logsumexp  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.deploy.prediction import probabilities  # noqa: E402
from ktransfer.deploy.saving import open_classifier  # noqa: E402
from ktransfer.image.builtin import BUILTIN  # noqa: E402
from ktransfer.image.modality import IMAGE  # noqa: E402
from ktransfer.tasks.uncertainty import unknown_score  # noqa: E402
from ktransfer.training import train  # noqa: E402

FLAGS = {"calibrate": "temperature", "coverage": 0.9, "abstain_rate": 0.05}


def unseen_digits(run_dir: Path, cfg: config.RunConfig) -> dict[str, float]:
    """How the quickstart model's abstain rule and scores treat digits 0-4 against its own
    test digits 5-9."""
    clf = open_classifier(run_dir)
    every = BUILTIN.get("digits", "data")()["all"]
    never = [i for i, name in enumerate(every.class_names) if name not in clf.class_names]
    unseen = every.subset(np.flatnonzero(np.isin(every.labels, never)))
    test = IMAGE.load_splits(cfg).test
    logits = keras.Model(clf.model.inputs, clf.model.get_layer("logits").output)
    found: dict[str, float] = {}
    scores = {}
    for name, examples in (("unseen", unseen), ("test", test)):
        p = probabilities(clf.model, clf.feed, examples)
        z = np.asarray(logits.predict(clf.feed.inputs(examples, 64), verbose=0), np.float64)
        scores[name] = (unknown_score(p), -logsumexp(z, axis=1))
        found[f"abstained_{name}"] = float(np.mean(
            unknown_score(p) > clf.state["abstain"]["threshold"]))
    truth = np.r_[np.ones(len(unseen)), np.zeros(len(test))]
    for i, score in enumerate(("max_probability", "energy")):
        found[f"auroc_{score}"] = float(roc_auc_score(
            truth, np.r_[scores["unseen"][i], scores["test"][i]]))
    found["num_unseen"] = len(unseen)
    return found


def run(name: str, seed: int, tmp: Path) -> dict[str, float]:
    cfg = config.from_flagfile(f"configs/{name}.cfg", seed=seed, split_seed=seed, verbose=0,
                               tensorboard=False, report=False, run_dir=f"{tmp}/{name}{seed}",
                               **FLAGS)
    metrics = train(cfg).metrics
    test, calibration = metrics["test"], metrics["calibration"]["test"]
    found = {"ece_before": calibration["ece_before"], "ece_after": calibration["ece_after"],
             "nll_before": calibration["nll_before"], "nll_after": calibration["nll_after"],
             "temperature": metrics["calibration"]["temperature"],
             "accuracy": test["accuracy"], "set_coverage": test["set_coverage"],
             "mean_set_size": test["mean_set_size"], "abstained_test": test["abstained"],
             "accuracy_answered": test["accuracy_answered"], "seconds": metrics["seconds"]}
    if name == "quickstart":
        found.update(unseen_digits(Path(cfg.train.run_dir), cfg))
    return found


def main() -> None:
    parser = record.parser(__doc__, "calibration")
    parser.add_argument("--runs", default="quickstart,sentiment")
    args = parser.parse_args()
    seeds, names = args.seeds, args.runs.split(",")
    runs = record.run_seeds(seeds, names, lambda name, seed, tmp: {name: run(name, seed, tmp)})
    metrics = sorted({m for s in seeds for arm in runs[s].values() for m in arm})
    summary = record.summarize(runs, names, metrics)
    record.write(args.out, flags=FLAGS, seeds=seeds, runs=runs, summary=summary)


if __name__ == "__main__":
    main()
