"""Text training speed on this machine, as ratios measured side by side in one run.

    python benchmarks/text_speed.py [--texts=1024] [--max_length=64] [--rounds=3] [--block=20]

Three comparisons on movie-review snippets with all-MiniLM-L6-v2 (batch 32):

1. frozen phase: an epoch of the head on cached sentence vectors vs an epoch that runs the
   frozen encoder every time (the one-time embedding pass is reported separately);
2. fine-tuning: ktransfer's batches (tokenised once, length buckets, each batch cut to its
   longest text) vs the same model on batches padded to --max_length;
3. fine-tuning: ktransfer vs a hand-written keras-hub `TextClassifier.fit` on the same texts,
   model, sequence length, batch size and optimizer (keras-hub pads to the sequence length and
   tokenises in its input pipeline every epoch).

Each arm runs blocks of at least --block seconds (whole epochs), arms interleaved within each
round; the figure per arm is the median over rounds of texts per second. Needs
`make text-assets`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.network import features
from ktransfer.network.classifier import compile_classifier  # noqa: E402
from ktransfer.network.freezing import freeze  # noqa: E402
from ktransfer.text.encoders import resolve_handle  # noqa: E402
from ktransfer.text.modality import TEXT  # noqa: E402
from ktransfer.text.pipeline import TextFeed  # noqa: E402


def block(fit_epoch: Callable[[], None], texts: int, seconds: float) -> float:
    """Texts per second over whole epochs lasting at least `seconds`."""
    started, epochs = time.perf_counter(), 0
    while time.perf_counter() - started < seconds or epochs == 0:
        fit_epoch()
        epochs += 1
    return epochs * texts / (time.perf_counter() - started)


def arms(args: argparse.Namespace) -> tuple[dict[str, Callable[[], None]], int, float]:
    """{arm: one epoch}, the number of texts, and the seconds of the one-time embedding."""
    cfg = config.build(modality="text", data="builtin:sentiment_movies", backbone="minilm",
                       max_length=args.max_length, batch_size=32, optimizer="adamw")
    texts = TEXT.load_splits(cfg).train.subset(np.arange(args.texts))
    network = TEXT.build(cfg, 2)
    feed = TEXT.feed(cfg, network)
    assert isinstance(feed, TextFeed)
    fixed = TextFeed(feed.preprocessor, feed.mask_key, args.max_length, buckets=False)
    fixed_ds = fixed.dataset(texts, batch_size=32, training=True).map(
        lambda x, y: ({k: _pad(v, args.max_length) for k, v in x.items()}, y))
    bucketed = feed.dataset(texts, batch_size=32, training=True)
    tuned, padded = _copy(network.model), _copy(network.model)  # own weights and optimizers
    compile_classifier(tuned, cfg, 3e-5)
    compile_classifier(padded, cfg, 3e-5)
    freeze(network.backbone)
    extractor, head = features.split_classifier(network.model)
    started = time.perf_counter()
    vectors = features.compute(extractor, feed, texts, 32)
    embed_seconds = time.perf_counter() - started
    cached = features.feature_dataset(vectors, texts.labels, lambda y: tf.one_hot(y, 2), 32,
                                      training=True)
    frozen = keras.Model(network.model.input, network.model.output)
    compile_classifier(head, cfg, 1e-3)
    compile_classifier(frozen, cfg, 1e-3)
    hub_fit = _keras_hub_fit(cfg, texts, args.max_length)
    return {
        "frozen, cached vectors": lambda: head.fit(cached, verbose=0),
        "frozen, encoder every epoch": lambda: frozen.fit(bucketed, verbose=0),
        "fine-tune, ktransfer batches": lambda: tuned.fit(bucketed, verbose=0),
        "fine-tune, padded to max_length": lambda: padded.fit(fixed_ds, verbose=0),
        "fine-tune, keras-hub TextClassifier": hub_fit,
    }, len(texts), embed_seconds


def _copy(model: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _pad(value, length: int):
    return tf.pad(value, [[0, 0], [0, length - tf.shape(value)[1]]])


def _keras_hub_fit(cfg: config.RunConfig, texts, max_length: int) -> Callable[[], None]:
    """One epoch of the hand-written keras-hub recipe on the same texts and settings."""
    handle = resolve_handle("minilm")
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(handle, strip_accents=True)
    preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
        handle, sequence_length=max_length, tokenizer=tokenizer)
    classifier = keras_hub.models.TextClassifier.from_preset(handle, num_classes=2,
                                                             preprocessor=preprocessor)
    classifier.compile(optimizer=keras.optimizers.AdamW(3e-5),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    x, y = [str(t) for t in texts.texts], texts.labels
    return lambda: classifier.fit(x=x, y=y, batch_size=32, epochs=1, verbose=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block", type=float, default=20.0)
    args = parser.parse_args()
    runs, n, embed = arms(args)
    for fit_epoch in runs.values():  # warm-up: tracing is not speed
        fit_epoch()
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fit_epoch in runs.items():
            speeds[name].append(block(fit_epoch, n, args.block))
    median = {name: float(np.median(v)) for name, v in speeds.items()}
    print(f"text_speed: {n} movie snippets, MiniLM, max_length {args.max_length}, batch 32; "
          f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs); "
          f"median of {args.rounds} interleaved blocks of >= {args.block:.0f} s")
    for name, values in speeds.items():
        print(f"{name:<38} {median[name]:8.1f} texts/s   (" +
              ", ".join(f"{v:.1f}" for v in values) + ")")
    print(f"one-time embedding pass for the cache: {embed:.1f} s ({n / embed:.1f} texts/s)")
    ours = median["fine-tune, ktransfer batches"]
    print(f"cached vs uncached frozen epochs: "
          f"{median['frozen, cached vectors'] / median['frozen, encoder every epoch']:.1f}x")
    print(f"ktransfer batches vs padded to max_length (fine-tune): "
          f"{ours / median['fine-tune, padded to max_length']:.2f}x")
    print(f"ktransfer vs keras-hub TextClassifier.fit (fine-tune): "
          f"{ours / median['fine-tune, keras-hub TextClassifier']:.2f}x")


if __name__ == "__main__":
    main()
