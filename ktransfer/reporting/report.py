"""The run report: one self-contained `report.html` (plots embedded) per run directory, with the
flags, learning curves of both phases, the confusion matrix, a per-class table and the most
confident mistakes.
"""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path
from typing import Any

from ktransfer.config import build, to_flagfile
from ktransfer.modality import MODALITIES
from ktransfer.reporting.evaluation import MISTAKES_HTML, SECTIONS_HTML
from ktransfer.runs import atomic, plotting
from ktransfer.tasks import DEFAULT, TASKS


def plot_curves(history_csv: str | os.PathLike, path: str | os.PathLike,
                headline: str = "accuracy") -> bool:
    """Loss and the task's `headline` metric per epoch, training and validation (what the
    history has of it), and the learning rate within each
    epoch (lr.csv beside the history, when there), with the phase boundary marked. Returns
    False when there is no history."""
    rows = list(csv.DictReader(open(history_csv, encoding="utf-8")))
    if not rows:
        return False
    lr_csv = Path(history_csv).with_name("lr.csv")
    lr_rows = list(csv.DictReader(open(lr_csv, encoding="utf-8"))) if lr_csv.is_file() else []
    plt = plotting.pyplot()
    epochs = [int(r["epoch"]) for r in rows]
    starts = [e for e, prev, cur in zip(epochs[1:], rows[:-1], rows[1:], strict=True)
              if prev["phase"] != cur["phase"]]
    fig, axes = plt.subplots(1, 3 if lr_rows else 2, figsize=(13 if lr_rows else 9, 3.2),
                             dpi=100)
    for ax, metric in zip(axes, ("loss", headline), strict=False):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [float(r[prefix + metric]) if r.get(prefix + metric) else None
                      for r in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", markersize=3,
                        label=("validation " if prefix else "training ") + metric)
        _finish_axis(ax, metric, starts, offset=0.5)
        if ax.get_legend_handles_labels()[0]:  # a headline not logged per epoch has no line
            ax.legend(fontsize=8)
    if lr_rows:  # positions count from 0; epoch N ends at position N, as in the other panels
        axes[2].plot([float(r["position"]) for r in lr_rows], [float(r["lr"]) for r in lr_rows])
        axes[2].set_yscale("log")  # the fine-tuning rates are often 10-100x lower
        _finish_axis(axes[2], "learning rate", [s - 1 for s in starts], offset=0.0)
    fig.tight_layout()
    plotting.save(fig, path)
    return True


def _finish_axis(ax: Any, title: str, starts: list[int], offset: float) -> None:
    """Titles an axis, labels epochs and marks where fine-tuning starts."""
    for start in starts:
        ax.axvline(start - offset, color="grey", linewidth=1)
        ax.text(start - offset + 0.1, ax.get_ylim()[1], " fine-tune", va="top", fontsize=8,
                color="grey")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title)


def _summary_line(metrics: dict[str, Any]) -> str:
    """'backbone X, 32 px; epochs: 20 head + 20 fine-tune; examples: 10 train, 179 val, ...';
    the modality's presentation words the network and its data notes."""
    shown = MODALITIES.get(metrics.get("modality", "image")).presentation
    epochs = metrics.get("epochs", {})
    counts = metrics.get("num_examples", {})
    line = (f"{shown.network_words(metrics.get('network', {}))}; epochs: "
            f"{epochs.get('head', 0)} head + {epochs.get('fine_tune', 0)} fine-tune; examples: "
            + ", ".join(f"{n} {split}" for split, n in counts.items()))
    line += "".join(f"; {words}" for words in shown.data_words(metrics.get("data", {})))
    calibration = metrics.get("calibration")
    if calibration:
        line += (f"; calibrated (temperature {calibration['temperature']:.3g}): expected "
                 "calibration error " + ", ".join(
                     f"{split} {c['ece_before']:.3f} -> {c['ece_after']:.3f}"
                     for split, c in calibration.items() if isinstance(c, dict)))
    return line


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}img{max-width:100%}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}pre{background:#f5f5f5;padding:8px;
font-size:12px;max-height:320px;overflow:auto}.num{font-size:1.1em}
td.text{text-align:left;max-width:700px}"""


def changed_flags(flags_text: str) -> list[str]:
    """The lines of a run's flags.cfg that differ from the defaults of its modality (a text
    run's recipe counts as default; --modality itself when it is not the default), --data
    always."""
    lines = flags_text.splitlines()
    modality = [line for line in lines if line.startswith("--modality=")]
    given = dict(line[2:].split("=", 1) for line in modality)
    defaults = set(to_flagfile(build(data="builtin:digits", **given)).splitlines())
    defaults -= set(modality) - set(to_flagfile(build(data="builtin:digits")).splitlines())
    return [line for line in lines if line.startswith("--")
            and (line not in defaults or line.startswith("--data="))]


def _data_section(metrics: dict[str, Any]) -> list[str]:
    """Examples per class (label) and split, and what reading left out or cut."""
    counts = metrics.get("class_counts") or {}
    if not counts:
        return []
    splits = [s for s in ("train", "val", "test") if s in counts]
    names = list(counts[splits[0]])
    rows = "".join(f"<tr><td>{html.escape(n)}</td>"
                   + "".join(f"<td>{counts[s].get(n, 0)}</td>" for s in splits) + "</tr>"
                   for n in names)
    totals = metrics.get("num_examples", {})
    head = "".join(f"<th>{'validation' if s == 'val' else s} ({totals.get(s, '')})</th>"
                   for s in splits)
    notes = {k: v for k, v in (metrics.get("data") or {}).items() if v}
    return ["<h2>Data</h2>", f"<table><tr><th>class</th>{head}</tr>{rows}</table>",
            *(f"<p>{html.escape(k.replace('_', ' '))}: {html.escape(_shown(v))}</p>"
              for k, v in notes.items())]


def _probe_section(run: Path) -> list[str]:
    """`train --probe`'s audit of the training labels (RUN/probe/probe.json), when there."""
    path = run / "probe" / "probe.json"
    if not path.is_file():
        return []
    found = json.loads(path.read_text())
    scored, audit = found["ranking"][0], found["audit"]
    rows = "".join(f"<tr><td>{html.escape(str(r['example']))}</td><td>{html.escape(r['given'])}"
                   f"</td><td>{html.escape(r['suggested'])}</td><td>{r['score']}</td></tr>"
                   for r in audit["flagged"][:10])
    return ["<h2>Label audit before training (--probe)</h2>",
            f"<p>From the backbone's frozen features: LogME {scored['logme']:.3f}, linear probe "
            f"{found['metric']} {scored['linear_probe']:.4f}; {len(audit['flagged'])} doubtful "
            f"label(s) of {audit['train_examples']} ({html.escape(audit['method'])}), "
            f"{len(audit['duplicates'])} near-duplicate pair(s). All of it: "
            "<a href='probe/probe.html'>probe/probe.html</a>, probe/label_audit.csv.</p>",
            f"<table><tr><th>example</th><th>given</th><th>suggested</th><th>score</th></tr>"
            f"{rows}</table>" if rows else ""]


def _shown(value: Any) -> str:
    """A data note as text: lists one item after another, dicts as `key value` pairs."""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _run_section(metrics: dict[str, Any]) -> list[str]:
    """When and by what the run was made, how long it took, where it was exported."""
    made = metrics.get("ktransfer") or {}
    facts = [("finished", made.get("finished")), ("took", f"{metrics['seconds']:.0f} s"
                                                   if "seconds" in metrics else None),
             ("ktransfer", " ".join(v for v in (made.get("version"), made.get("commit"))
                                    if v) or None),
             ("exported to", metrics.get("export"))]
    shown = [(k, v) for k, v in facts if v]
    if not shown:
        return []
    return ["<h2>Run</h2><table>" + "".join(
        f"<tr><td>{k}</td><td class='text'>{html.escape(str(v))}</td></tr>" for k, v in shown)
        + "</table>"]


def write_report(run_dir: str | os.PathLike, evaluated_on: str = "test") -> Path:
    """Writes RUN_DIR/report.html from flags.cfg, history.csv, metrics.json and RUN_DIR/report/
    (evaluation.json and its plots, written by `evaluation.evaluate`)."""
    run = Path(run_dir)
    parts = run / "report"
    metrics = json.loads((run / "metrics.json").read_text()) \
        if (run / "metrics.json").is_file() else {}
    headline = TASKS.get(metrics.get("task", DEFAULT)).headline
    plot_curves(run / "history.csv", parts / "curves.png", headline)
    summary = json.loads((parts / "evaluation.json").read_text()) \
        if (parts / "evaluation.json").is_file() else None
    flags_text = (run / "flags.cfg").read_text() if (run / "flags.cfg").is_file() else ""
    numbers = []
    for split in ("val", "test"):
        if split in metrics:
            numbers.append(f"{'validation' if split == 'val' else 'test'} "
                           f"{headline.replace('_', ' ')} <b>{metrics[split][headline]:.4g}</b>")
    title = f"ktransfer run: {html.escape(run.name)}"
    body = [f"<h1>{title}</h1>",
            f"<p class='num'>{' &middot; '.join(numbers)}</p>" if numbers else "",
            f"<p>{html.escape(_summary_line(metrics))}</p>",
            *_data_section(metrics), *_probe_section(run),
            "<h2>Learning curves</h2>", plotting.img_tag(parts / "curves.png", "learning curves")]
    sections = parts / SECTIONS_HTML  # the task's: confusion matrix, per-class table, ...
    if summary and sections.is_file():
        body += [f"<h2>Evaluation ({html.escape(evaluated_on)} set, "
                 f"{summary['num_examples']} examples)</h2>",
                 sections.read_text(encoding="utf-8")]
        gallery = parts / MISTAKES_HTML  # the modality's sections: mistakes, Grad-CAM, ...
        if gallery.is_file():
            body.append(gallery.read_text(encoding="utf-8"))
    body += _run_section(metrics)
    body += ["<h2>Flags</h2><p>Those that differ from the defaults:</p>",
             f"<pre>{html.escape(chr(10).join(changed_flags(flags_text)))}</pre>",
             "<details><summary>every flag (flags.cfg)</summary>",
             f"<pre>{html.escape(flags_text)}</pre></details>"]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    path = run / "report.html"
    atomic.write_text(path, page)
    return path
