"""`DistributeConfig`: tf.distribute strategy, precision policy, XLA."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import option, require


@dataclass(frozen=True)
class DistributeConfig:
    """Where and how fast: tf.distribute strategy, precision policy, XLA."""

    strategy: str = option("auto", "auto: all GPUs of this machine (mirrored) or the one device; "
                          "one_device; mirrored (all local GPUs, or --cpu_devices); "
                          "multi_worker (TF_CONFIG); tpu.",
                          registry="ktransfer.training.catalog:STRATEGIES")
    mixed_precision: str = option("auto", "auto: mixed_float16 on GPUs that run float16 fast "
                                 "(compute capability >= 7.0), float32 otherwise (CPU).",
                                 ("auto", "float32", "mixed_float16", "mixed_bfloat16"))
    jit_compile: str = option("auto", "Compile training steps with XLA: on, off, or auto "
                             "(Keras' choice: on for GPUs when every layer supports it).",
                             ("auto", "on", "off"))
    cpu_devices: int = option(0, "Split the CPU into this many logical devices (to try "
                             "--strategy=mirrored without GPUs); 0 leaves it whole.")

    def __post_init__(self) -> None:
        require(self.cpu_devices >= 0, "cpu_devices", "must be >= 0")
