"""Training throughput (images/second) per backbone, phase, precision, XLA and batch size, and
how close ktransfer's input pipeline comes to the in-memory limit. The script a GPU machine
runs to fill the GPU table of docs/results/speed.md; it runs on CPUs too.

    python benchmarks/train_speed.py [--image_size=224] [--batch_sizes=32,64,128]
        [--backbones=MobileNetV3Small,ResNet50] [--xla=off,on] [--block=20]

Each cell is measured twice, interleaved: `pipeline` trains on ktransfer's own input pipeline
(decoded images in an ImageSet -> resize -> cache -> shuffle -> batch -> prefetch, as `train`
feeds them) and `limit` on one in-memory batch repeated (TensorFlow's own limit for the model).
Every timing is a block of whole epochs lasting at least --block seconds (short blocks on a busy
machine come out quantised), 3 blocks per cell, the median reported; `pipeline / limit` is the
ratio of the two medians. Mixed precision is mixed_float16 on a GPU and mixed_bfloat16 on a CPU.
Weights are random (nothing to download); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.image.backbones import build_backbone, get_spec  # noqa: E402
from ktransfer.image.classifier import build_classifier  # noqa: E402
from ktransfer.image.imageset import ImageSet  # noqa: E402
from ktransfer.image.pipeline import make_dataset  # noqa: E402
from ktransfer.network.freezing import freeze, select, set_trainable  # noqa: E402

IMAGES = 512  # in the pipeline's ImageSet (decoded, 256 x 256, resized by the pipeline)


def machine() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return f"{len(gpus)} x {name}"
    return f"CPU only ({platform.machine()}, {os.cpu_count()} cores)"


def build(name: str, phase: str, policy: str, jit: bool, size: int) -> keras.Model:
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    spec = get_spec(name)
    backbone = build_backbone(spec, "none", size)
    model = build_classifier(spec, backbone, 10, size,
                             config.ModelConfig(backbone=name, weights="none"))
    if phase == "frozen":
        freeze(backbone)
    else:
        set_trainable(backbone, select(backbone, "all"))
    model.compile(keras.optimizers.Adam(1e-4), "categorical_crossentropy", jit_compile=jit)
    return model


def datasets(size: int, batch: int) -> dict[str, tuple[tf.data.Dataset, int]]:
    """{arm: (dataset, steps per epoch)}: the pipeline over IMAGES images, and the limit."""
    rng = np.random.default_rng(0)
    images = ImageSet(class_names=tuple(str(i) for i in range(10)),
                      labels=np.arange(IMAGES) % 10,
                      images=rng.integers(0, 256, (IMAGES, 256, 256, 3), dtype=np.uint8))
    steps = IMAGES // batch
    pipeline = make_dataset(images, image_size=size, batch_size=batch, training=True,
                            repeat=True)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = np.eye(10, dtype="float32")[np.arange(batch) % 10]
    return {"pipeline": (pipeline, steps),
            "limit": (tf.data.Dataset.from_tensors((x, y)).repeat(), steps)}


def block(model: keras.Model, ds: tf.data.Dataset, steps: int, batch: int,
          seconds: float) -> float:
    """Images per second over whole epochs of `steps` steps lasting at least `seconds`."""
    started, done = time.perf_counter(), 0
    while True:
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
        done += steps * batch
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def cell(args: argparse.Namespace, name: str, phase: str, policy: str, jit: bool,
         batch: int) -> dict[str, float]:
    """Median images/s of the pipeline and the limit, interleaved blocks."""
    model = build(name, phase, policy, jit, args.image_size)
    arms = datasets(args.image_size, batch)
    for ds, _ in arms.values():  # trace, compile, fill the cache
        model.fit(ds, steps_per_epoch=IMAGES // batch, epochs=1, verbose=0)
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(3):
        for arm, (ds, steps) in arms.items():
            rates[arm].append(block(model, ds, steps, batch, args.block))
    keras.mixed_precision.set_global_policy("float32")
    return {arm: float(np.median(values)) for arm, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_sizes", default="32,64,128")
    parser.add_argument("--backbones", default="MobileNetV3Small,ResNet50")
    parser.add_argument("--xla", default="off,on", help="XLA settings to measure: off,on")
    parser.add_argument("--block", type=float, default=20.0, help="seconds per timed block")
    args = parser.parse_args()
    mixed = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    print(f"train_speed: images/second at {args.image_size} px, median of 3 interleaved blocks "
          f"of >= {args.block:g} s; machine: {machine()}; one run")
    print(f"{'backbone':<17} {'phase':<10} {'precision':<15} {'XLA':<4} {'batch':>5} "
          f"{'pipeline':>9} {'limit':>9} {'ratio':>6}")
    for name in args.backbones.split(","):
        for phase in ("frozen", "fine-tune"):
            for policy in ("float32", mixed):
                for jit in [x == "on" for x in args.xla.split(",")]:
                    for batch in (int(b) for b in args.batch_sizes.split(",")):
                        r = cell(args, name, phase, policy, jit, batch)
                        print(f"{name:<17} {phase:<10} {policy:<15} {'on' if jit else 'off':<4} "
                              f"{batch:>5} {r['pipeline']:>9.1f} {r['limit']:>9.1f} "
                              f"{r['pipeline'] / r['limit']:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
