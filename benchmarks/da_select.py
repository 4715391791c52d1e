"""Which validator picks good adapted models without target labels? digits -> digits-M.

    python benchmarks/da_select.py [--seeds=0,1,2] [--weights=0.1,0.3,1.0] [--epochs=10]

Per seed: a source model (configs/digits_m_source.cfg's recipe), then one class-MMD + AdaBN
adaptation run per MMD weight (`--init_from` the source model), each scoring every epoch with
every validator of `ktransfer.domain.validators` and recording the epoch's true target accuracy
beside the scores (--target_eval_data, which only this benchmark looks at). Prints, per validator:
the Spearman rank correlation between its score and target accuracy (over the epochs of each
run, then averaged), and the target accuracy of the epoch it would select vs the last epoch vs
the best epoch there was (an oracle no user has). Target accuracies are before AdaBN's final
re-estimate, the same for every epoch, so the comparison is fair between epochs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.domain.catalog import VALIDATORS  # noqa: E402
from ktransfer.training import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation (ties get their order of appearance; enough for float scores)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(ra) == 0 or np.std(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def adaptation_epochs(seed: int, weight: float, epochs: int, tmp: str) -> list[dict]:
    """The selection rows (every epoch's scores and target accuracy) of one adaptation run."""
    common = dict(seed=seed, split_seed=seed, verbose=0, tensorboard=False, report=False)
    source = f"{tmp}/source{seed}"
    if not Path(source, "metrics.json").is_file():
        train(config.from_flagfile(REPO / "configs" / "digits_m_source.cfg", run_dir=source,
                                   **common))
    cfg = config.from_flagfile(REPO / "configs" / "digits_m_adapt.cfg", init_from=source,
                               run_dir=f"{tmp}/adapt{seed}-{weight}", mmd_weight=weight,
                               fine_tune_epochs=epochs, da_select="source_val", **common)
    return train(cfg).metrics["adaptation"]["selection"]["epochs"]


def summarise(runs: list[list[dict]]) -> None:
    print(f"{'validator':<11} {'rank corr.':>10} {'selected':>9} {'last':>7} {'best':>7}")
    last = np.mean([rows[-1]["target_accuracy"] for rows in runs])
    best = np.mean([max(r["target_accuracy"] for r in rows) for rows in runs])
    for name in VALIDATORS:
        corr = [spearman([r["scores"][name] for r in rows], [r["target_accuracy"] for r in rows])
                for rows in runs]
        picked = [max(rows, key=lambda r: r["scores"][name])["target_accuracy"] for rows in runs]
        print(f"{name:<11} {np.nanmean(corr):10.3f} {np.mean(picked):9.4f} {last:7.4f} "
              f"{best:7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--weights", default="0.1,0.3,1.0")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    started, runs = time.time(), []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            for weight in (float(w) for w in args.weights.split(",")):
                rows = adaptation_epochs(seed, weight, args.epochs, tmp)
                runs.append(rows)
                print(seed, weight, [round(r["target_accuracy"], 4) for r in rows], flush=True)
    print(f"\nda_select: digits -> digits-M, class MMD + AdaBN, {len(runs)} runs of "
          f"{args.epochs} epochs; machine {platform.node()} ({platform.machine()}, "
          f"{os.cpu_count()} CPUs); {(time.time() - started) / 60:.1f} min")
    summarise(runs)


if __name__ == "__main__":
    main()
