"""What every benchmark writes beside its figures: the command, commit, date and machine, each
arm's runs with their mean and standard deviation (`benchmarks/results/NAME.json`)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


Runs = dict[int, dict[str, dict[str, float]]]  # seed -> arm -> metric -> value


def parser(doc: str, result: str) -> argparse.ArgumentParser:
    """A benchmark's command line: --seeds (parsed: a list of ints) and --out
    (benchmarks/results/RESULT.json), its docstring's first line as the description."""
    found = argparse.ArgumentParser(description=doc.splitlines()[0])
    found.add_argument("--seeds", default="0,1,2",
                       type=lambda given: [int(s) for s in given.split(",")])
    found.add_argument("--out", default=str(RESULTS / f"{result}.json"))
    return found


def run_seeds(seeds: list[int], parts: list[str],
              measure: Callable[[str, int, Path], dict[str, dict[str, float]]]) -> Runs:
    """runs[seed]: the arms `measure(part, seed, folder)` returns for every part, printed as
    they come; one temporary folder for all."""
    runs: Runs = {s: {} for s in seeds}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for part in parts:
                found = measure(part, seed, Path(tmp))
                runs[seed].update(found)
                print(f"seed {seed} {part}: {found}", flush=True)
    return runs


def spread(values: list[float]) -> dict[str, Any]:
    """{mean, std (population), runs} of one metric over seeds."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values)),
            "runs": [float(v) for v in values]}


def summarize(runs: Runs, arms: list[str],
              metrics: list[str]) -> dict[str, Any]:
    """{arm_metric: spread over the seeds}, each printed as mean ± std (runs)."""
    found = {}
    for arm in arms:
        for metric in metrics:
            values = [runs[s][arm][metric] for s in runs if metric in runs[s].get(arm, {})]
            if not values:
                continue
            found[f"{arm}_{metric}"] = spread(values)
            print(f"{arm:24} {metric:18} {np.mean(values):.4f} ± {np.std(values):.4f}  "
                  f"({' / '.join(f'{v:.4f}' for v in values)})", flush=True)
    return found


def write(out: str | os.PathLike, **record: Any) -> None:
    """Writes the record with the command that made it, the commit, date and machine."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                      capture_output=True, text=True, cwd=ROOT).stdout.strip():
        commit += " with uncommitted changes"
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    full = {"command": " ".join(["python", str(script), *sys.argv[1:]]), "commit": commit,
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU", **record}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(full, indent=1) + "\n")
    print(f"written: {out}")
