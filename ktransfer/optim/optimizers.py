"""Optimizers: Adam, AdamW and SGD with momentum, each with optional decoupled weight decay, and
a transfer variant of each with three optional additions:

- per-variable learning-rate multipliers (layer-wise learning-rate decay). Scaling gradients
  would not lower Adam's step (Adam is invariant to gradient scale), so the multiplier is applied
  to the learning rate inside `update_step`, per variable;
- L2-SP (Li et al., "Explicit inductive bias for transfer learning with convolutional networks",
  ICML 2018): the gradient of ALPHA/2 |w - w0|^2 for variables with an anchor w0 (the pretrained
  backbone) and of BETA/2 |w|^2 for the others (the new head), added to each variable's gradient
  (the same as adding the penalty to the loss, without a second pass over the weights);
- an exponential moving average of the weights (Keras's `use_ema`) that the training callbacks
  swap in and out (`callbacks.EMAWeights`); `finalize_variable_values` leaves the weights alone,
  because the callback, not the end of `fit`, decides which weights the model keeps;
- gradient accumulation (Keras's `gradient_accumulation_steps`) that also works under
  tf.distribute strategies with several replicas, where Keras' own fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import TrainConfig
from ktransfer.optim.catalog import OPTIMIZERS
from ktransfer.optim.schedules import inverse_momentum

# For the type checker the mixin is an optimizer (it is only ever mixed into one).
_OptimizerBase: Any = keras.optimizers.Optimizer if TYPE_CHECKING else object


class _LayerwiseMixin(_OptimizerBase):
    """Learning-rate multipliers (`lr_multipliers[variable.path]`, 1 if absent) and L2-SP
    (`l2sp=(ALPHA, BETA)` toward `anchors[variable.path]`); both resolved once, when the
    optimizer is built for its variables. Anchors are non-trainable optimizer variables, so they
    are saved and restored with the optimizer's state."""

    def __init__(self, *args, lr_multipliers: dict[str, float] | None = None,
                 l2sp: tuple[float, float] | None = None,
                 anchors: dict[str, np.ndarray] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self.l2sp = tuple(l2sp) if l2sp else None
        self._anchors = anchors or {}
        self._multiplier_by_index: list[float] = []
        self._anchor_by_index: list[Any] = []

    def build(self, var_list):
        super().build(var_list)
        self._multiplier_by_index = [float(self.lr_multipliers.get(v.path, 1.0))
                                     for v in var_list]
        if self.l2sp:
            self._anchor_by_index = [self._anchor_variable(v) for v in var_list]

    def _anchor_variable(self, variable) -> Any:
        value = self._anchors.get(variable.path)
        if value is None:
            return None
        return self.add_variable(
            shape=variable.shape, dtype=variable.dtype, name="l2sp_anchor",
            initializer=lambda shape, dtype: tf.constant(value, dtype=dtype, shape=shape))

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        scale = self._multiplier_by_index[index]
        if scale != 1.0:
            learning_rate = learning_rate * scale
        if self.l2sp:
            gradient = tf.convert_to_tensor(gradient)  # sparse embedding gradients included
            anchor = self._anchor_by_index[index]
            alpha, beta = self.l2sp
            gradient = (gradient + alpha * (variable - anchor) if anchor is not None
                        else gradient + beta * variable)
        return super().update_step(gradient, variable, learning_rate)

    def finalize_variable_values(self, var_list):
        """Leaves the weights as they are (see the module docstring)."""

    def _backend_apply_gradients(self, grads, trainable_variables):
        """Keras' gradient accumulation, made to work under strategies that merge replicas.

        Keras decides between "update" and "accumulate" with a cond in the replica context,
        and its update branch calls `merge_call`, which tf.distribute refuses there
        (keras-team/keras#20582). Here the gradients are summed over replicas first (as Keras'
        own update does), and the cond runs in the cross-replica context, the way Keras'
        LossScaleOptimizer handles its own cond. One device: Keras' code, unchanged.
        """
        if (not self.gradient_accumulation_steps
                or tf.__internal__.distribute.strategy_supports_no_merge_call()):
            return super()._backend_apply_gradients(grads, trainable_variables)
        replica = tf.distribute.get_replica_context()
        grads = replica.all_reduce(tf.distribute.ReduceOp.SUM, list(grads))
        replica.merge_call(self._accumulate_across_replicas,
                           args=(grads, list(trainable_variables)))
        if self.use_ema:
            self._update_model_variables_moving_average(self._trainable_variables)

    def _accumulate_across_replicas(self, distribution, grads, variables) -> None:
        """Cross-replica: adds the summed gradients to the accumulators, or on every N-th
        batch applies their mean and clears them."""
        accumulators = [self._accumulated_gradients[self._get_variable_index(v)].value
                        for v in variables]

        def accumulate():
            for total, grad in zip(accumulators, grads, strict=True):
                distribution.extended.update(total, lambda t, g: t.assign_add(g), args=(grad,),
                                             group=False)

        def update():
            distribution.extended.call_for_each_replica(
                self._apply_accumulated, args=(grads, variables, accumulators))
            for total in accumulators:
                distribution.extended.update(total, lambda t: t.assign(tf.zeros_like(t)),
                                             group=False)

        steps = self.gradient_accumulation_steps
        tf.cond((self._iterations + 1) % steps == 0, update, accumulate)

    def _apply_accumulated(self, grads, variables, accumulators) -> None:
        """Replica context: the mean of the N batches' gradients, clipped, then weight decay
        and the update step (the gradients are already summed over replicas)."""
        steps = self.gradient_accumulation_steps
        mean = [(g + tf.cast(t, g.dtype)) / steps for g, t in zip(grads, accumulators, strict=True)]
        mean = self._clip_gradients(mean)
        self._apply_weight_decay(variables)
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step, self._distribution_strategy,
            list(zip(mean, [v.value for v in variables], strict=True)),
            self.learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers,
                "l2sp": list(self.l2sp) if self.l2sp else None}


@keras.saving.register_keras_serializable(package="ktransfer")
class LayerwiseAdam(_LayerwiseMixin, keras.optimizers.Adam):
    """Adam, transfer variant: learning-rate multipliers, L2-SP, EMA (module docstring)."""


@keras.saving.register_keras_serializable(package="ktransfer")
class LayerwiseAdamW(_LayerwiseMixin, keras.optimizers.AdamW):
    """AdamW, transfer variant: learning-rate multipliers, L2-SP, EMA (module docstring)."""


class _CycledSGD(keras.optimizers.SGD):
    """SGD whose momentum coefficient follows `momentum_schedule(iterations)` (one-cycle's
    inverse momentum cycling) instead of the constant `momentum`, which then only says that
    there is momentum at all (its slots are built)."""

    def __init__(self, *args, momentum_schedule: Callable[[Any], Any] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.momentum_schedule = momentum_schedule

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum_schedule is None or self.momentum == 0:
            return super().update_step(gradient, variable, learning_rate)
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        momentum = keras.ops.cast(self.momentum_schedule(self.iterations), variable.dtype)
        m = self.momentums[self._get_variable_index(variable)]
        step = keras.ops.subtract(keras.ops.multiply(m, momentum),
                                  keras.ops.multiply(gradient, learning_rate))
        self.assign(m, step)
        if self.nesterov:  # as keras.optimizers.SGD: one more momentum step ahead
            step = keras.ops.subtract(keras.ops.multiply(m, momentum),
                                      keras.ops.multiply(gradient, learning_rate))
        self.assign_add(variable, step)


@keras.saving.register_keras_serializable(package="ktransfer")
class LayerwiseSGD(_LayerwiseMixin, _CycledSGD):
    """SGD, transfer variant: learning-rate multipliers, L2-SP, EMA (module docstring)."""


@dataclass(frozen=True)
class OptimizerKind:
    """A plain Keras optimizer class and its layer-wise twin; `options(cfg)` are the keyword
    arguments the flags give it."""

    plain: type[keras.optimizers.Optimizer]
    layerwise: type[keras.optimizers.Optimizer]
    options: Callable[[TrainConfig], dict[str, Any]]


ADAM = OptimizerKind(keras.optimizers.Adam, LayerwiseAdam,
                     lambda cfg: {"weight_decay": cfg.weight_decay or None})
ADAMW = OptimizerKind(keras.optimizers.AdamW, LayerwiseAdamW,
                      lambda cfg: {"weight_decay": cfg.weight_decay})
SGD = OptimizerKind(keras.optimizers.SGD, LayerwiseSGD,
                    lambda cfg: {"momentum": cfg.momentum, "nesterov": True,
                                 "weight_decay": cfg.weight_decay or None})


def make_optimizer(cfg: TrainConfig, learning_rate,
                   lr_multipliers: dict[str, float] | None = None,
                   anchors: dict[str, np.ndarray] | None = None) -> keras.optimizers.Optimizer:
    """Builds the optimizer `cfg.optimizer` with `learning_rate` (a float or a schedule), with
    gradient accumulation when `cfg.accumulate` > 1 and an average of the weights with
    `cfg.ema`.

    Args:
        cfg: the training flags.
        learning_rate: a float or a schedule.
        lr_multipliers: {variable path: factor}, for layer-wise learning rates.
        anchors: {variable path: value} of the backbone's weights w0, for `cfg.l2sp`.

    Any of lr_multipliers, --l2sp and --ema selects the transfer variant (`LayerwiseAdam`, ...).
    """
    kind = OPTIMIZERS.get(cfg.optimizer)
    options = kind.options(cfg)
    if cfg.accumulate > 1:  # Keras averages the N gradients; schedules count every batch
        options["gradient_accumulation_steps"] = cfg.accumulate
    if cfg.ema:
        options.update(use_ema=True, ema_momentum=cfg.ema)
    if cfg.l2sp:
        options.update(l2sp=cfg.l2sp_weights(), anchors=anchors or {})
    if cfg.momentum_low:  # the config allows it with sgd and one_cycle only
        options["momentum_schedule"] = inverse_momentum(learning_rate, cfg.momentum,
                                                        cfg.momentum_low)
    if lr_multipliers or cfg.l2sp or cfg.ema or cfg.momentum_low or cfg.accumulate > 1:
        return kind.layerwise(learning_rate, lr_multipliers=lr_multipliers, **options)
    return kind.plain(learning_rate, **options)
