"""The learning-rate range test (Smith, "Cyclical learning rates for training neural networks",
2017; fastai's `lr_find`): train for a few dozen steps while the rate grows exponentially from
`--start_lr` to `--end_lr`, record each batch's loss, and read a good peak rate off the curve.

    find_lr   load the data, build the network (pretrained weights), freeze as the phase does
    head      for --phase=fine_tune: train the head first (--epochs at --lr), as train would
    test      one step per rate, stopping once the smoothed loss diverges
    suggest   two named rules on the smoothed curve: `valley` (fastai's default: a third of
              the way into the longest stretch of falling loss) and `steepest` (the fastest
              fall per decade of rate, before the minimum)
    write     lr_find.csv, lr_find.png (loss vs rate, both suggestions marked), lr_find.json

Everything happens in memory on a freshly built network: no run directory is written, and no
run's weights change. The suggestion is a peak rate for `--lr` (head) or `--fine_tune_lr`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer import preflight
from ktransfer.config import LRFinderConfig, RunConfig
from ktransfer.data.examples import Splits
from ktransfer.errors import ConfigError
from ktransfer.modality import Feed, Modality, Network
from ktransfer.network import features, lora, remat
from ktransfer.network.classifier import compile_classifier
from ktransfer.network.freezing import (
    check_fine_tuning,
    freeze,
    layer_lr_multipliers,
    select,
    set_trainable,
)
from ktransfer.optim.schedules import make_schedule
from ktransfer.runs import atomic, plotting

log = logging.getLogger(__name__)
SMOOTHING = 0.98  # of the loss curve: exponential moving average with bias correction
FLAG_OF_PHASE = {"head": "lr", "fine_tune": "fine_tune_lr"}


@dataclass
class LRFindResult:
    """The recorded curve and what it suggests.

    Args:
        lrs: [N] the learning rate of each step.
        losses: [N] the training loss of each step's batch.
        smoothed: [N] `losses` smoothed (bias-corrected exponential average, 0.98).
        suggestions: {"valley": rate, "steepest": rate}.
        phase: "head" or "fine_tune".
        output_dir: where the files went.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestions: dict[str, float]
    phase: str
    output_dir: Path

    @property
    def flag(self) -> str:
        """The train flag the suggestion is for: --lr or --fine_tune_lr."""
        return FLAG_OF_PHASE[self.phase]


class ExponentialRange(keras.optimizers.schedules.LearningRateSchedule):
    """start x (end / start) ^ (step / (steps - 1)): `steps` rates from start to end, evenly
    spaced on a log scale."""

    def __init__(self, start: float, end: float, steps: int):
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def __call__(self, step):
        fraction = keras.ops.cast(step, "float32") / float(self.steps - 1)
        return self.start * keras.ops.power(self.end / self.start, fraction)

    def rate(self, step: int) -> float:
        return self.start * (self.end / self.start) ** (step / (self.steps - 1))

    def get_config(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "steps": self.steps}


class _Recorder(keras.callbacks.Callback):
    """Each batch's loss (metrics are reset after every batch, so the logged loss is that
    batch's alone); stops when the loss is not finite or the smoothed loss passes `diverge`
    times its lowest value."""

    def __init__(self, schedule: ExponentialRange, diverge: float):
        super().__init__()
        self.schedule, self.diverge = schedule, diverge
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        self.model.reset_metrics()
        if not math.isfinite(loss):
            self.model.stop_training = True
            return
        self.lrs.append(self.schedule.rate(len(self.lrs)))
        self.losses.append(loss)
        smoothed = smooth(np.asarray(self.losses))
        if len(smoothed) > 5 and smoothed[-1] > self.diverge * smoothed.min():
            self.model.stop_training = True


def smooth(losses: np.ndarray, beta: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average of `losses` [N] with bias correction (as fastai)."""
    out, average = np.empty(len(losses)), 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out[i] = average / (1 - beta ** (i + 1))
    return out


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's valley rule: the longest run of steps over which the loss keeps falling (a
    longest decreasing subsequence), and the rate a bit past a third of the way into it."""
    n = len(losses)
    length, start, end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
        if length[i] > length[end]:
            end = i
            start = end - length[end]
    section = (end - start) / 3
    return float(lrs[max(0, start + int(section) + int(section / 2))])


def steepest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate where the loss falls fastest per decade of rate, before its minimum."""
    stop = max(int(np.argmin(losses)), 2)
    slopes = np.gradient(losses[:stop + 1], np.log10(lrs[:stop + 1]))
    return float(lrs[int(np.argmin(slopes))])


SUGGESTIONS = {"valley": valley, "steepest": steepest}


def find_lr(cfg: LRFinderConfig) -> LRFindResult:
    """Runs the range test for `cfg.find.phase` and writes its files; see the module docstring.

    Example:
        result = find_lr(config.build_find_lr(data="builtin:digits", backbone="small_cnn"))
        print(result.flag, result.suggestions["valley"])
    """
    cfg = dataclasses.replace(cfg, run=preflight.with_defaults(cfg.run, run_dir=False))
    modality = preflight.check_find_lr(cfg)
    return range_test(cfg, modality, modality.load_splits(cfg.run))


def range_test(cfg: LRFinderConfig, modality: Modality, splits: Splits) -> LRFindResult:
    """`find_lr` on examples already read (and flags already checked): `train --lr=auto`
    reads its data once. The network is built afresh, since the test trains it."""
    run, find = _for_range_test(cfg.run), cfg.find
    keras.utils.set_random_seed(run.train.seed)
    network = modality.build(run, len(splits.class_names))
    if find.phase == "fine_tune":
        check_fine_tuning(network.backbone, run)
    feed = modality.feed(run, network)
    cache = Path(find.output_dir) / "cache"
    model, batches = _head_target(run, feed, splits, network, cache)
    multipliers = None
    if find.phase == "fine_tune":
        _train_head(run, model, batches, math.ceil(len(splits.train) / run.data.batch_size))
        model, batches, multipliers = _fine_tune_target(run, feed, splits, network)
    schedule = ExponentialRange(find.start_lr, find.end_lr, find.num_steps)
    compile_classifier(model, run, schedule, multipliers)
    recorder = _Recorder(schedule, find.diverge)
    model.fit(batches, epochs=1, steps_per_epoch=find.num_steps, callbacks=[recorder],
              verbose=0, shuffle=False)
    if len(recorder.losses) < 10:
        raise ConfigError("start_lr", f"the loss diverged after {len(recorder.losses)} steps, "
                          f"at a rate of {schedule.rate(len(recorder.losses)):.3g}; give a lower "
                          "--start_lr")
    return _write(_result(recorder, find.phase, Path(find.output_dir)))


def _for_range_test(run: RunConfig) -> RunConfig:
    """The run's flags without what would blur the curve: one update per batch, no average."""
    return dataclasses.replace(run, train=dataclasses.replace(run.train, accumulate=1, ema=0.0))


def _head_target(run: RunConfig, feed: Feed, splits: Splits, network: Network, cache: Path
                 ) -> tuple[keras.Model, tf.data.Dataset]:
    """(model, endless training batches) of the head phase: the head on cached features
    (--cache_features, no augmentation) or the classifier with its backbone frozen."""
    freeze(network.backbone)
    if features.why_not_cacheable(run, feed, network.model) is None:
        extractor, head = features.split_classifier(network.model)
        key = features.splits_key(run, str(network.info), splits)
        train, _ = features.cached_datasets(run, extractor, feed, splits, cache, key, repeat=True)
        return head, train
    return network.model, _batches(run, feed, splits)


def _batches(run: RunConfig, feed: Feed, splits: Splits) -> tf.data.Dataset:
    return feed.dataset(splits.train, batch_size=run.data.batch_size, training=True,
                        seed=run.train.seed, repeat=True)


def _train_head(run: RunConfig, head: keras.Model, batches: tf.data.Dataset, steps: int
                ) -> None:
    """The head phase as `train` runs it (--epochs at --lr with the schedule, `steps` batches
    an epoch), so the fine-tune test starts from a trained head; --epochs=0 skips it (e.g. with
    --init_from)."""
    t = run.train
    if not t.epochs:
        return
    compile_classifier(head, run, make_schedule(t, t.lr, steps, t.epochs))
    head.fit(batches, epochs=t.epochs, steps_per_epoch=steps, verbose=0, shuffle=False)
    log.info("find_lr: trained the head for %d epochs at --lr=%g first", t.epochs, t.lr)


def _fine_tune_target(run: RunConfig, feed: Feed, splits: Splits, network: Network
                      ) -> tuple[keras.Model, tf.data.Dataset, dict[str, float] | None]:
    """(classifier, endless batches, layer-wise multipliers) of the fine-tuning phase: the
    --unfreeze layers train, with --lr_layer_decay, through LoRA adapters and recomputed
    blocks as the run's flags ask (the memory a fine-tuning step needs is the run's)."""
    backbone, t = network.backbone, run.train
    set_trainable(backbone, select(backbone, t.unfreeze), run.model.bn_trainable)
    lora.enable(backbone, run.model)
    remat.enable(backbone, t.remat)
    multipliers = (layer_lr_multipliers(backbone, t.lr_layer_decay)
                   if t.lr_layer_decay < 1.0 else None)
    return network.model, _batches(run, feed, splits), multipliers


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> dict[str, float]:
    """{rule: rate} from the smoothed curve, leaving out its first tenth (the smoothing's
    start-up) and its last 5 steps (the divergence), as fastai does."""
    keep = slice(len(lrs) // 10, max(len(lrs) - 5, len(lrs) // 10 + 3))
    return {name: rule(lrs[keep], smoothed[keep]) for name, rule in SUGGESTIONS.items()}


def _result(recorder: _Recorder, phase: str, output_dir: Path) -> LRFindResult:
    lrs, losses = np.asarray(recorder.lrs), np.asarray(recorder.losses)
    smoothed = smooth(losses)
    return LRFindResult(lrs, losses, smoothed, suggest(lrs, smoothed), phase, output_dir)


def _write(result: LRFindResult) -> LRFindResult:
    """lr_find.csv (step, lr, loss, smoothed), lr_find.json and lr_find.png."""
    out = result.output_dir
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["step", "lr", "loss", "smoothed"])
    for i, row in enumerate(zip(result.lrs, result.losses, result.smoothed, strict=True)):
        writer.writerow([i, *(f"{v:.6g}" for v in row)])
    atomic.write_text(out / "lr_find.csv", buffer.getvalue())
    atomic.write_json(out / "lr_find.json", {
        "phase": result.phase, "flag": f"--{result.flag}", "suggestions": result.suggestions,
        "suggested": result.suggestions["valley"], "steps": len(result.lrs)})
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, color="0.8", label="loss per batch")
    ax.plot(result.lrs, result.smoothed, color="C0", label="smoothed")
    for (name, lr), color in zip(result.suggestions.items(), ("C2", "C3"), strict=True):
        ax.axvline(lr, color=color, linestyle="--", label=f"{name}: {lr:.2g}")
    ax.set(xscale="log", xlabel=f"learning rate (--{result.flag})", ylabel="training loss",
           title=f"learning-rate range test, {result.phase} phase")
    falling = result.smoothed[:int(np.argmin(result.smoothed)) + 1]
    ax.set_ylim(bottom=0.0, top=1.25 * float(falling.max()))  # the divergence is cut off
    ax.legend()
    fig.tight_layout()
    plotting.save(fig, out / "lr_find.png")
    return result
