"""Runs ADAPT's deep domain-adaptation methods on arrays that benchmarks/adapt_peer.py wrote
(one .npz per seed), in ADAPT's own environment (TF_USE_LEGACY_KERAS=1), and prints the table.

    TF_USE_LEGACY_KERAS=1 python adapt_digits.py [--methods=DANN,CDAN] [--source_epochs=30]
        [--epochs=20] seed0.npz seed1.npz ...

The network is ktransfer's small_cnn at 16 px with its head (--head_hidden=128 --dropout=0.2),
rebuilt in tf.keras: encoder = the 5 convolutions with BatchNorm and global average pooling
(128 features, where ktransfer's MMD also aligns), task = dropout, Dense(128, relu), dropout,
Dense(10, softmax). Adam 1e-3, batch 64; ADAPT's default discriminator and method settings.
"""

import argparse
import platform
import time
from pathlib import Path

import adapt.feature_based as methods
import numpy as np
import tensorflow as tf


def encoder() -> tf.keras.Model:
    inputs = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Rescaling(1 / 255)(inputs)
    for block, (filters, convs) in enumerate(((32, 2), (64, 2), (128, 1)), start=1):
        for _ in range(convs):
            x = tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = tf.keras.layers.BatchNormalization(momentum=0.9)(x)
            x = tf.keras.layers.Activation("relu")(x)
        if block < 3:
            x = tf.keras.layers.MaxPooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(x))


def task() -> tf.keras.Model:
    return tf.keras.Sequential([tf.keras.Input((128,)), tf.keras.layers.Dropout(0.2),
                                tf.keras.layers.Dense(128, activation="relu"),
                                tf.keras.layers.Dropout(0.2),
                                tf.keras.layers.Dense(10, activation="softmax")])


def accuracy(model, data) -> float:
    return float((model.predict(data["xe"], verbose=0).argmax(1) == data["ye"]).mean())


def source_model(data, seed: int, epochs: int) -> tuple[tf.keras.Model, tf.keras.Model]:
    """(encoder, task) trained `epochs` on the labelled source alone."""
    tf.keras.utils.set_random_seed(seed)
    enc, head = encoder(), task()
    model = tf.keras.Sequential([enc, head])
    model.compile(tf.keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    model.fit(data["xs"], np.eye(10)[data["ys"]], batch_size=64, epochs=epochs, verbose=0)
    return enc, head


def continued(arm: str, source, data, seed: int, epochs: int) -> float:
    """Target accuracy after `epochs` more from the source model: on the source alone, or
    with ADAPT's method `arm` (copies of the source networks, ADAPT's defaults)."""
    tf.keras.utils.set_random_seed(seed)
    enc, head = (tf.keras.models.clone_model(m) for m in source)
    for copy, original in zip((enc, head), source, strict=True):
        copy.set_weights(original.get_weights())
    if arm == "source-only":
        model = tf.keras.Sequential([enc, head])
        model.compile(tf.keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    else:
        model = getattr(methods, arm)(enc, head, Xt=data["xt"], random_state=seed,
                                      optimizer=tf.keras.optimizers.Adam(1e-3),
                                      loss="categorical_crossentropy", verbose=0)
    model.fit(data["xs"], np.eye(10)[data["ys"]], batch_size=64, epochs=epochs, verbose=0)
    return accuracy(model, data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="DANN,CDAN,DeepCORAL,MDD")
    parser.add_argument("--source_epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    arms = ["source-only", *args.methods.split(",")]
    results = {arm: [] for arm in arms}
    started = time.time()
    for path in args.files:
        seed = int(Path(path).stem.removeprefix("seed"))  # adapt_peer.py writes seedN.npz
        data = dict(np.load(path))
        source = source_model(data, seed, args.source_epochs)
        for arm in arms:
            acc = continued(arm, source, data, seed, args.epochs)
            results[arm].append(acc)
            print(f"seed {seed} {arm}: target accuracy {acc:.4f}", flush=True)
    print(f"\nadapt_peer: ADAPT on digits -> digits-M, ktransfer's small_cnn at 16 px, "
          f"{args.source_epochs} source epochs then {args.epochs}; machine: "
          f"{platform.node()}; one run per cell; {(time.time() - started) / 60:.0f} min")
    base = np.array(results["source-only"])
    for arm in arms:
        acc = np.array(results[arm])
        gain = f"{100 * (acc - base).mean():+6.1f}" if arm != arms[0] else ""
        print(f"{arm:<12} " + " ".join(f"{100 * v:6.1f}" for v in acc)
              + f"   mean {100 * acc.mean():5.1f} ± {100 * acc.std():4.1f} {gain}")


if __name__ == "__main__":
    main()
