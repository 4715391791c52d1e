"""The probe's scoring and audit, shared by `ktransfer.probe` (several backbones) and
`train --probe` (the run's own, before training): feature vectors through a network, LogME, the
cross-validated linear probe, the learning curve, and the label audit."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ktransfer.config import ProbeConfig, RunConfig
from ktransfer.data.examples import Examples, Splits
from ktransfer.modality import Modality, Network, Presentation
from ktransfer.network import features
from ktransfer.probing import duplicates, report
from ktransfer.probing.curve import learning_curve
from ktransfer.probing.logme import logme
from ktransfer.probing.results import ProbeResult, Scored
from ktransfer.tasks import probe_of, task_of
from ktransfer.tasks.probe import Flagged, TaskProbe

log = logging.getLogger("ktransfer.probing")


def network_features(network: Network, run: RunConfig, modality: Modality, splits: Splits,
                     cache_dir: Path) -> dict[str, np.ndarray]:
    """{split: feature vectors [N, D]} of every split through `network`'s backbone (inference
    mode), cached in `cache_dir`."""
    extractor, _ = features.split_classifier(network.model)
    feed = modality.feed(run, network)
    key = features.splits_key(run, str(network.info), splits)
    return {name: features.cached(extractor, feed, examples, cache_dir, [*key, name],
                                  run.data.batch_size)
            for name, examples in splits.named().items()}


def score_backbone(name: str, found: dict[str, np.ndarray], splits: Splits, probe: TaskProbe,
                   run: RunConfig, folds: int, points: int, seconds: float
                   ) -> tuple[Scored, np.ndarray]:
    """(the backbone's scores, the linear probe's out-of-fold outputs on the training split)."""
    x, labels, task, seed = found["train"], splits.train.labels, task_of(run), run.train.seed
    outputs = task.outputs(splits.class_names)
    oof = probe.out_of_fold(x, labels, outputs, folds, seed)
    evaluate = found["val"] if len(splits.val) else x
    eval_labels = splits.val.labels if len(splits.val) else labels

    def draw(fraction: float, draw_seed: int) -> np.ndarray:
        return (np.arange(len(labels)) if fraction >= 1
                else task.split(labels, fraction, draw_seed)[1])

    curve = learning_curve(points, len(labels), draw, lambda kept, s: probe.fit_score(
        x[kept], labels[kept], evaluate, eval_labels, outputs, s), seed)
    scored = Scored(name, logme(x, probe.targets(labels, outputs)), probe.score(oof, labels),
                    curve, int(x.shape[1]), seconds)
    log.info("%s: LogME %.3f, linear probe %s %.4f (%d folds), %d features", name,
             scored.logme, probe.metric, scored.probe, folds, scored.dims)
    return scored, oof


def _example_names(examples: Examples, split: str, presentation: Presentation) -> list[str]:
    """Each example's name (its file, or SPLIT #i), with its text where it has one."""
    names = examples.names() or [f"{split} #{i}" for i in range(len(examples))]
    shown = presentation.shown(examples)
    return names if shown is None else [f"{name}: {text[:300]}" for name, text
                                        in zip(names, shown, strict=True)]


def audit(found: dict[str, np.ndarray], oof: np.ndarray, splits: Splits, probe: TaskProbe,
          threshold: float, presentation: Presentation) -> dict[str, Any]:
    """Doubtful training labels, confused classes and near-duplicates, from the best
    backbone's features and its linear probe's out-of-fold outputs."""
    names = {split: _example_names(examples, split, presentation)
             for split, examples in splits.named().items()}
    flagged: list[Flagged] = probe.audit(oof, splits.train.labels, splits.class_names)
    centre = found["train"].mean(axis=0)
    unit = {split: duplicates.unit(x, centre) for split, x in found.items()}
    found_pairs = []
    for a, b in [("train", "train"), *[("train", s) for s in unit if s != "train"],
                 *([("val", "test")] if "test" in unit else [])]:
        for i, j, sim in duplicates.pairs(unit[a], unit[b], threshold, same=a == b):
            found_pairs.append({"split": a, "example": names[a][i], "other_split": b,
                                "other": names[b][j], "similarity": round(sim, 4)})
    return {"method": probe.audits,
            "flagged": [{"index": f.index, "example": names["train"][f.index],
                         "given": f.given, "suggested": f.suggested,
                         "score": round(f.score, 4)} for f in flagged],
            "train_examples": len(splits.train),
            "confused": probe.confused(oof, splits.train.labels, splits.class_names),
            "duplicates": found_pairs, "duplicate_similarity": threshold}


def conclude(ranking: list[Scored], found: dict[str, np.ndarray], oof: np.ndarray,
             best_run: RunConfig, splits: Splits, modality: Modality, options: ProbeConfig,
             started: float) -> ProbeResult:
    """The audit from the best backbone's features (`found`) and out-of-fold outputs, written
    with the ranking (best first) to `options.output_dir`."""
    task_probe = probe_of(best_run)
    out = Path(options.output_dir)
    findings = audit(found, oof, splits, task_probe, options.duplicate_similarity,
                     modality.presentation)
    result = ProbeResult(task_probe.metric, ranking, findings, out, out / "best.cfg",
                         time.time() - started)
    report.write(result, best_run, splits.class_names)
    return result


def probe_run(run: RunConfig, modality: Modality, splits: Splits, network: Network,
              out: Path, cache_dir: Path) -> ProbeResult:
    """`train --probe`: the audit of the run's own training data from its backbone as it
    starts, before training, written to `out` (RUN/probe). The features go to `cache_dir`
    under the keys the head phase uses (`features.splits_key`), so `--cache_features` reuses
    them instead of a second pass."""
    began, options = time.time(), ProbeConfig(output_dir=str(out))
    task_probe = probe_of(run)
    found = network_features(network, run, modality, splits, cache_dir)
    scored, oof = score_backbone(run.model.backbone, found, splits, task_probe, run,
                                 options.folds, options.curve_points, time.time() - began)
    result = conclude([scored], found, oof, run, splits, modality, options, began)
    findings = result.audit
    log.info("label audit (--probe): %d doubtful label(s) of %d, %d near-duplicate pair(s); "
             "see %s", len(findings["flagged"]), findings["train_examples"],
             len(findings["duplicates"]), out / "probe.html")
    return result


