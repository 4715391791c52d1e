"""The optimisation registries, importable without TensorFlow: `--optimizer` and
`--lr_schedule` names, each entry built by `optim.optimizers` / `optim.schedules`."""

from __future__ import annotations

from ktransfer.registry import Registry

_OPTIMIZERS = "ktransfer.optim.optimizers"
_SCHEDULES = "ktransfer.optim.schedules"

# name -> OptimizerKind (plain Keras optimizer class, its layer-wise twin, its options)
OPTIMIZERS: Registry = Registry("optimizer", "optimizer", {
    "adam": f"{_OPTIMIZERS}:ADAM", "adamw": f"{_OPTIMIZERS}:ADAMW", "sgd": f"{_OPTIMIZERS}:SGD"})

# name -> builder(cfg, peak, steps_per_epoch, decay_steps) of the schedule after warm-up.
SCHEDULES: Registry = Registry("learning-rate schedule", "lr_schedule", {
    name: f"{_SCHEDULES}:{name}_schedule"
    for name in ("constant", "exponential", "cosine", "step", "cyclic", "one_cycle")})
