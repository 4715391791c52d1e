"""What evaluation, the report and the model card show of a regression run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ktransfer.runs import plotting
from ktransfer.tasks.presentation import Presentation
from ktransfer.tasks.regression.core import SHOWN, errors_of, intervals_of
from ktransfer.tasks.task import table


def _interval_lines(summary: dict[str, Any]) -> list[str]:
    if "interval_coverage" not in summary:
        return []
    return [f"conformal intervals (width {summary['interval_width']:.4g}): coverage "
            f"{summary['interval_coverage']:.4f} (asked {summary['coverage_asked']:.2f})"]


def _plot_pairs(summary: dict[str, Any], path: Path) -> None:
    plt = plotting.pyplot()
    pairs = np.array(summary["pairs"]).reshape(-1, 2)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.scatter(pairs[:, 0], pairs[:, 1], s=8, alpha=0.6)
    if len(summary["range"]) == 2:
        ax.plot(summary["range"], summary["range"], color="grey", linewidth=1)
    ax.set_xlabel(f"true {summary['target']}")
    ax.set_ylabel("predicted")
    ax.set_title(f"R² {summary['r2']:.3f}, MAE {summary['mae']:.3g}")
    fig.tight_layout()
    plotting.save(fig, path)



class RegressionPresentation(Presentation):
    """Errors, predicted against true, conformal intervals, the largest errors."""

    def summarize(self, outputs: np.ndarray, targets: np.ndarray, names: tuple[str, ...],
                  ids: list[str] | None, top_k: int, state: dict[str, Any]) -> dict[str, Any]:
        """MAE, RMSE, R², the target's range, a sample of (true, predicted) pairs for the
        scatter plot and the examples of largest error."""
        predicted = outputs[:, 0].astype(np.float64)
        error = np.abs(predicted - targets)
        shown = np.random.default_rng(0).permutation(len(targets))[:SHOWN]
        worst = np.argsort(-error, kind="stable")[:12]
        return {"num_examples": int(len(targets)), **errors_of(predicted, targets),
                **intervals_of(predicted, targets, state),
                "class_names": list(names), "target": names[0],
                "range": [float(targets.min()), float(targets.max())] if len(targets) else [],
                "pairs": [[float(targets[i]), float(predicted[i])] for i in sorted(shown)],
                "mistakes": [{"index": int(i), "file": None if ids is None else str(ids[i]),
                              "true": f"{targets[i]:.4g}", "predicted": f"{predicted[i]:.4g}",
                              "confidence": float(error[i]), "how": f"off by {error[i]:.3g}",
                              "output": 0} for i in worst]}

    def lines(self, summary: dict[str, Any], top_k: int) -> list[str]:
        return [f"examples: {summary['num_examples']}  MAE: {summary['mae']:.4g}  RMSE: "
                f"{summary['rmse']:.4g}  R²: {summary['r2']:.4f}  Pearson r: "
                f"{summary['pearson']:.4f}  Spearman ρ: {summary['spearman']:.4f}",
                *_interval_lines(summary),
                "  largest errors:",
                *(f"  {m['file'] or m['index']}: true {m['true']}, predicted "
                  f"{m['predicted']}" for m in summary["mistakes"][:5])]

    def sections(self, summary: dict[str, Any], out_dir: Path) -> str:
        _plot_pairs(summary, out_dir / "predicted_vs_true.png")
        rows = [[m["file"] or m["index"], m["true"], m["predicted"], m["how"]]
                for m in summary["mistakes"]]
        return (f"<p>MAE {summary['mae']:.4g}, RMSE {summary['rmse']:.4g}, R² "
                f"{summary['r2']:.3f} (0 is predicting the mean, 1 is perfect), Pearson r "
                f"{summary['pearson']:.3f}, Spearman ρ {summary['spearman']:.3f}</p>"
                + "".join(f"<p>{line}</p>" for line in _interval_lines(summary))
                + "<h3>Predicted against true</h3>"
                + plotting.img_tag(out_dir / "predicted_vs_true.png", "predicted against true")
                + "<h3>Largest errors</h3>"
                + table(["example", "true", "predicted", "error"], rows))

    def limits(self, summary: dict[str, Any]) -> list[str]:
        """The target range it saw and its largest errors."""
        found = []
        if summary["range"]:
            found.append(f"tested on targets from {summary['range'][0]:.4g} to "
                         f"{summary['range'][1]:.4g}; outside that range it extrapolates")
        worst = summary["mistakes"][:3]
        if worst:
            found.append("largest errors: " + "; ".join(
                f"true {m['true']}, predicted {m['predicted']}" for m in worst))
        return found
