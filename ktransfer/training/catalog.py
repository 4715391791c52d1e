"""The training registries, importable without TensorFlow: `--strategy` names."""

from __future__ import annotations

from ktransfer.registry import Registry

# name -> make(DistributeConfig) -> tf.distribute.Strategy
STRATEGIES: Registry = Registry("distribution strategy", "strategy", {
    name: f"ktransfer.training.distribute:{name}_strategy"
    for name in ("auto", "one_device", "mirrored", "multi_worker", "tpu")})
