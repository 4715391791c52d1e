"""Learning-rate schedules and optimizers."""

from __future__ import annotations

import keras
import pytest

from ktransfer.config import TrainConfig
from ktransfer.optimizers import make_optimizer
from ktransfer.schedules import Warmup, make_schedule


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
