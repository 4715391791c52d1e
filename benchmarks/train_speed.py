"""Training throughput (images/second) of the frozen phase and the fine-tune phase, for a small
and a large backbone, float32 vs mixed precision, with and without XLA (`jit_compile`).

    python benchmarks/train_speed.py [--image_size=96] [--batch_size=32] [--steps=8]

Mixed precision is mixed_float16 on a GPU and mixed_bfloat16 on a CPU (float16 is emulated and
very slow on CPUs). Random pixels, in memory: this measures the model, not the input pipeline
(see input_pipeline.py). Weights are random (no download needed); speed does not depend on them.
One table, the machine named; each cell is the median of 3 timings of --steps steps, after
2 warm-up steps, in one run.
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
from ktransfer.freezing import freeze, select, set_trainable  # noqa: E402
from ktransfer.image.backbones import build_backbone, get_spec  # noqa: E402
from ktransfer.image.classifier import build_classifier  # noqa: E402


def machine() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return f"{len(gpus)} x {name}"
    return f"CPU only ({platform.machine()}, {os.cpu_count()} cores)"


def throughput(backbone_name: str, phase: str, policy: str, jit: bool, size: int, batch: int,
               steps: int) -> float:
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    spec = get_spec(backbone_name)
    backbone = build_backbone(spec, "none", size)
    model = build_classifier(spec, backbone, 10, size, config.ModelConfig(
        backbone=backbone_name, weights="none"))
    if phase == "frozen":
        freeze(backbone)
    else:
        set_trainable(backbone, select(backbone, "all"))
    model.compile(keras.optimizers.Adam(1e-4), "categorical_crossentropy", jit_compile=jit)
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = np.eye(10, dtype="float32")[np.arange(batch) % 10]
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # trace, compile, warm up
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
        timings.append(time.perf_counter() - started)
    keras.mixed_precision.set_global_policy("float32")
    return steps * batch / sorted(timings)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--backbones", default="MobileNetV3Small,ResNet50")
    parser.add_argument("--xla", default="off,on", help="XLA settings to measure: off,on")
    args = parser.parse_args()
    mixed = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    print(f"train_speed: images/second, {args.image_size} px, batch {args.batch_size}, median "
          f"of 3 x {args.steps} steps per cell; machine: {machine()}; one run")
    header = f"{'backbone':<18} {'phase':<10} {'precision':<15} {'XLA':<4} {'images/s':>9}"
    print(header)
    for name in args.backbones.split(","):
        for phase in ("frozen", "fine-tune"):
            for policy in ("float32", mixed):
                for jit in [x == "on" for x in args.xla.split(",")]:
                    speed = throughput(name, phase, policy, jit, args.image_size,
                                       args.batch_size, args.steps)
                    print(f"{name:<18} {phase:<10} {policy:<15} {'on' if jit else 'off':<4} "
                          f"{speed:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
