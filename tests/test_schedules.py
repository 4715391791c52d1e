"""Learning-rate schedules and optimizers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from ktransfer.config import TrainConfig
from ktransfer.optim.optimizers import make_optimizer
from ktransfer.optim.schedules import Warmup, make_schedule

from conftest import REPO


def _lr(schedule, step: int) -> float:
    value = schedule(step) if callable(schedule) else schedule
    return float(keras.ops.convert_to_numpy(value))


def test_constant():
    assert make_schedule(TrainConfig(lr_schedule="constant"), 0.1, 10, 5) == 0.1


def test_exponential_decays_by_rate_per_epoch():
    s = make_schedule(TrainConfig(lr_schedule="exponential", decay_rate=0.5), 0.1, 10, 5)
    assert _lr(s, 0) == pytest.approx(0.1)
    assert _lr(s, 10) == pytest.approx(0.05)
    assert _lr(s, 30) == pytest.approx(0.0125)


def test_cosine_with_warmup():
    cfg = TrainConfig(lr_schedule="cosine", warmup_epochs=1, cosine_alpha=0.1)
    s = make_schedule(cfg, 0.2, 10, 5)  # 10 warm-up steps, 40 cosine steps
    assert isinstance(s, Warmup)
    assert _lr(s, 0) == pytest.approx(0.02)
    assert _lr(s, 4) == pytest.approx(0.1)
    assert _lr(s, 10) == pytest.approx(0.2)
    assert _lr(s, 30) == pytest.approx(0.2 * (0.1 + 0.9 * 0.5), rel=1e-4)  # half way
    assert _lr(s, 50) == pytest.approx(0.02, rel=1e-4)


def test_step_divides_every_n_epochs():
    cfg = TrainConfig(lr_schedule="step", step_every=2, step_factor=10)
    s = make_schedule(cfg, 1.0, 5, 6)
    assert [_lr(s, e * 5) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_schedules_serialize_inside_an_optimizer():
    cfg = TrainConfig(lr_schedule="step", step_every=1, warmup_epochs=1)
    opt = make_optimizer(cfg, make_schedule(cfg, 0.5, 4, 3))
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    for step in (0, 3, 5, 9):
        assert _lr(again.learning_rate, step) == pytest.approx(_lr(opt.learning_rate, step))


@pytest.mark.parametrize("name, cls", [("adam", keras.optimizers.Adam),
                                       ("adamw", keras.optimizers.AdamW),
                                       ("sgd", keras.optimizers.SGD)])
def test_optimizers(name, cls):
    opt = make_optimizer(TrainConfig(optimizer=name, weight_decay=1e-4, momentum=0.8), 0.01)
    assert isinstance(opt, cls)
    assert opt.weight_decay == pytest.approx(1e-4)
    if name == "sgd":
        assert opt.momentum == pytest.approx(0.8)


@pytest.mark.parametrize("policy, second_peak", [("triangular", 1.0), ("triangular2", 0.55),
                                                 ("exp_range", None)])
def test_cyclic_policies(policy, second_peak):
    # 10 steps per epoch, 2-epoch cycles: the rate rises for 10 steps and falls for 10.
    cfg = TrainConfig(lr_schedule="cyclic", cycle_epochs=2, cyclic_policy=policy,
                      cycle_gamma=0.99, lr_floor=0.1)
    s = make_schedule(cfg, 1.0, 10, 6)
    assert _lr(s, 0) == pytest.approx(0.1)
    assert _lr(s, 5) == pytest.approx(0.1 + 0.9 * 0.5 * (0.99 ** 5 if policy == "exp_range"
                                                       else 1.0), rel=1e-4)
    assert _lr(s, 20) == pytest.approx(0.1)  # back at the floor after one cycle
    expected = second_peak if second_peak is not None else 0.1 + 0.9 * 0.99 ** 30
    assert _lr(s, 30) == pytest.approx(expected, rel=1e-4)
    first_peak = _lr(s, 10)
    assert first_peak == pytest.approx(1.0 if policy != "exp_range" else 0.1 + 0.9 * 0.99 ** 10,
                                       rel=1e-4)


def test_one_cycle_rises_then_anneals_to_the_floor():
    cfg = TrainConfig(lr_schedule="one_cycle", cosine_alpha=0.01)
    s = make_schedule(cfg, 1.0, 10, 10)  # 100 steps, rising for the first 30
    values = [_lr(s, step) for step in range(100)]
    assert values[0] == pytest.approx(1.0 / 25)
    assert max(values) == pytest.approx(1.0, rel=1e-3) and values.index(max(values)) == 30
    assert all(a <= b for a, b in zip(values[:30], values[1:31], strict=True))
    assert all(a >= b for a, b in zip(values[30:-1], values[31:], strict=True))
    assert _lr(s, 100) == pytest.approx(0.01, rel=1e-4)
    own_rise = make_schedule(TrainConfig(lr_schedule="one_cycle", warmup_epochs=2), 1.0, 10, 10)
    assert _lr(own_rise, 20) == pytest.approx(1.0, rel=1e-4)  # --warmup_epochs sets the rise


@pytest.mark.parametrize("cfg", [
    TrainConfig(lr_schedule="cyclic", cyclic_policy="triangular2", warmup_epochs=1),
    TrainConfig(lr_schedule="cyclic", cyclic_policy="exp_range", cycle_gamma=0.9),
    TrainConfig(lr_schedule="one_cycle"),
])
def test_cyclic_schedules_survive_a_keras_file(tmp_path, cfg):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(make_optimizer(cfg, make_schedule(cfg, 0.5, 4, 6, offset_epochs=1)), "mse")
    model.optimizer.build(model.trainable_variables)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    for step in (0, 3, 7, 11, 17):
        assert _lr(again.optimizer._learning_rate, step) == pytest.approx(
            _lr(model.optimizer._learning_rate, step))


def _fit_dense(cfg: TrainConfig, batch_size: int, x, y, policy: str = "float32"):
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                                  keras.layers.Activation("softmax", dtype="float32")])
        model.compile(make_optimizer(cfg, 0.1), "categorical_crossentropy")
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        return model
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_accumulating_two_half_batches_equals_one_whole_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = np.eye(3)[rng.integers(0, 3, 64)].astype("float32")
    whole = _fit_dense(TrainConfig(optimizer="sgd", momentum=0.0), 32, x, y)
    halves = _fit_dense(TrainConfig(optimizer="sgd", momentum=0.0, accumulate=2), 16, x, y)
    single = _fit_dense(TrainConfig(optimizer="sgd", momentum=0.0), 16, x, y)
    for a, b in zip(whole.get_weights(), halves.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(whole.get_weights()[0], single.get_weights()[0], atol=1e-4)


def test_accumulation_under_loss_scaling_updates_every_n_batches():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = np.eye(3)[rng.integers(0, 3, 48)].astype("float32")
    model = _fit_dense(TrainConfig(optimizer="adam", accumulate=3), 8, x, y, "mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    inner = model.optimizer.inner_optimizer
    assert int(inner._iterations.numpy()) == 6 and int(inner.iterations.numpy()) == 2


# Two logical CPUs must be set before TensorFlow starts: hence a process of its own.
MIRRORED_ACCUMULATION = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from ktransfer.config import TrainConfig
    from ktransfer.optim.optimizers import make_optimizer

    def fit(cfg, batch, x, y, strategy, policy="float32"):
        keras.mixed_precision.set_global_policy(policy)
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                                      keras.layers.Activation("softmax", dtype="float32")])
            model.compile(make_optimizer(cfg, 0.1), "categorical_crossentropy")
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        return model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = np.eye(3)[rng.integers(0, 3, 64)].astype("float32")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    sgd = TrainConfig(optimizer="sgd", momentum=0.0)
    whole = fit(sgd, 32, x, y, tf.distribute.get_strategy())
    halves = fit(TrainConfig(optimizer="sgd", momentum=0.0, accumulate=2), 16, x, y, mirrored)
    print("difference", max(float(np.abs(a - b).max())
                            for a, b in zip(whole.get_weights(), halves.get_weights())))
    adam = fit(TrainConfig(optimizer="adamw", weight_decay=0.01, accumulate=3), 8, x[:48], y[:48],
               mirrored, "mixed_float16").optimizer.inner_optimizer
    print("steps", int(adam._iterations.numpy()), int(adam.iterations.numpy()))
""")


@pytest.mark.slow  # two runs under a strategy: make test-slow
def test_accumulation_under_a_mirrored_strategy_equals_one_whole_batch():
    """Keras' own accumulation fails under MirroredStrategy (keras-team/keras#20582);
    ktransfer's optimizers accumulate across 2 replicas: two half batches give the weights of
    one whole batch, and with loss scaling and AdamW 6 batches make 2 updates."""
    result = subprocess.run([sys.executable, "-c", MIRRORED_ACCUMULATION], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert float(lines["difference"]) < 1e-6
    assert lines["steps"] == "6 2"


def test_one_cycle_cycles_sgd_momentum_inversely_to_the_rate():
    cfg = TrainConfig(optimizer="sgd", lr_schedule="one_cycle", momentum=0.95,
                      momentum_low=0.85, warmup_epochs=2)
    schedule = make_schedule(cfg, 0.1, 5, 6)  # rise over 10 steps, fall over 20
    from ktransfer.optim.schedules import inverse_momentum

    momentum = inverse_momentum(schedule, 0.95, 0.85)
    assert _lr(momentum, 0) == pytest.approx(0.95)
    assert _lr(momentum, 10) == pytest.approx(0.85)  # the peak rate
    assert _lr(momentum, 30) == pytest.approx(0.95)
    # The optimizer follows it: Nesterov SGD simulated with the scheduled coefficients.
    optimizer = make_optimizer(cfg, schedule)
    variable = keras.Variable(np.ones(3, "float32"))
    w, m = np.ones(3), np.zeros(3)
    for step in range(12):
        gradient = np.array([1.0, -2.0, 0.5]) * (step + 1)
        optimizer.apply_gradients([(gradient.astype("float32"), variable)])
        lr, mu = _lr(schedule, step), _lr(momentum, step)
        m = mu * m - lr * gradient
        w = w + mu * m - lr * gradient
    np.testing.assert_allclose(variable.numpy(), w, rtol=1e-5)


def test_momentum_cycling_needs_sgd_and_one_cycle():
    from ktransfer.errors import ConfigError

    with pytest.raises(ConfigError, match="^--momentum_low: cycles SGD's momentum"):
        TrainConfig(optimizer="adam", lr_schedule="one_cycle", momentum_low=0.85)
    with pytest.raises(ConfigError, match=r"^--momentum_low: must be in \[0, --momentum=0.9\)"):
        TrainConfig(optimizer="sgd", lr_schedule="one_cycle", momentum_low=0.95)
