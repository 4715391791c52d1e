"""What `ktransfer.probe` writes: probe.json (everything, as data), label_audit.csv (the
doubtful labels, one per row, to fix them from), probe.html (the ranking and the audit), best.cfg
(the best backbone's flags, ready for `ktransfer.train`) and the console table."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

from ktransfer.config import RunConfig, to_flagfile
from ktransfer.probing.results import ProbeResult, Scored
from ktransfer.runs import atomic
from ktransfer.runs.escape import cell

_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
          "text-align:left}td.n{text-align:right}")


def _predicted(scored: Scored) -> str:
    found = scored.curve.predicted
    return ", ".join(f"{k} labels {m:.3f} ± {s:.3f}" for k, (m, s) in found.items()) or "no fit"


def table(result: ProbeResult) -> str:
    """The console ranking: one row per backbone, best first."""
    rows = [f"{'rank':<5}{'backbone':<44}{'LogME':>8}{result.metric:>10}  "
            f"{'learning curve (predicted)':<40}{'seconds':>8}"]
    for rank, s in enumerate(result.ranking, 1):
        rows.append(f"{rank:<5}{s.name[:43]:<44}{s.logme:>8.3f}{s.probe:>10.4f}  "
                    f"{_predicted(s):<40}{s.seconds:>8.1f}")
    return "\n".join(rows)


def _as_data(result: ProbeResult) -> dict[str, Any]:
    return {"metric": result.metric, "seconds": round(result.seconds, 1),
            "ranking": [{"backbone": s.name, "logme": s.logme, "linear_probe": s.probe,
                         "features": s.dims, "seconds": round(s.seconds, 1),
                         "curve": {"labels": s.curve.sizes, "scores": s.curve.scores,
                                   "predicted": s.curve.predicted}}
                        for s in result.ranking],
            "audit": result.audit, "best_flagfile": str(result.best_flagfile)}


def _csv(flagged: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["index", "example", "given", "suggested", "score"])
    writer.writeheader()
    writer.writerows({key: cell(value) if isinstance(value, str) else value
                      for key, value in row.items()} for row in flagged)
    return out.getvalue()


def _rows(items: list[dict[str, Any]], keys: list[str]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(item[k]))}</td>" for k in keys)
                   + "</tr>" for item in items)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(result: ProbeResult) -> str:
    found = result.audit
    ranking = [{"backbone": s.name, "LogME": f"{s.logme:.3f}", result.metric: f"{s.probe:.4f}",
                "measured (labels: score)": ", ".join(
                    f"{n}: {sum(v) / len(v):.3f}" for n, v in zip(s.curve.sizes, s.curve.scores,
                                                                 strict=True)),
                "predicted": _predicted(s), "seconds": f"{s.seconds:.1f}"}
               for s in result.ranking]
    body = ["<h1>ktransfer probe</h1>", "<h2>Backbones, best first</h2>",
            _rows(ranking, list(ranking[0])),
            f"<p>Best backbone's flags: {html.escape(str(result.best_flagfile))}</p>",
            f"<h2>Doubtful labels ({len(found['flagged'])} of {found['train_examples']} "
            "training examples)</h2>", f"<p>{html.escape(found['method'])}; also in "
            "label_audit.csv.</p>",
            _rows(found["flagged"][:500], ["example", "given", "suggested", "score"]),
            "<h2>Classes taken for others</h2>",
            _rows(found["confused"], ["class", "taken_for", "share"]) if found["confused"]
            else "<p>None (or not a class task).</p>",
            f"<h2>Near-duplicates (cosine similarity &ge; {found['duplicate_similarity']})</h2>",
            _rows(found["duplicates"], ["split", "example", "other_split", "other",
                                        "similarity"]) if found["duplicates"] else "<p>None.</p>"]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>ktransfer probe</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def write(result: ProbeResult, best_run: RunConfig, class_names: tuple[str, ...]) -> None:
    """Writes the four files into `result.output_dir`, each atomically."""
    out = result.output_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "probe.json", {**_as_data(result), "classes": list(class_names)})
    atomic.write_text(out / "label_audit.csv", _csv(result.audit["flagged"]))
    atomic.write_text(out / "probe.html", _page(result))
    atomic.write_text(result.best_flagfile, to_flagfile(
        best_run, header=f"ktransfer.probe's best backbone: {result.ranking[0].name}\n"
                         f"python -m ktransfer.train --flagfile={result.best_flagfile}"))
