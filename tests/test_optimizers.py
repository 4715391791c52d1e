"""The transfer optimizers: L2-SP toward the pretrained weights, and the weight average (--ema)
with the callback that swaps it in for validation, checkpoints and the end of a fit."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ktransfer.config import TrainConfig
from ktransfer.optim.optimizers import LayerwiseAdam, LayerwiseSGD, make_optimizer
from ktransfer.training.callbacks import EMAWeights


def _two_layer_model(seed: int = 0) -> keras.Model:
    """A 'backbone' Dense layer and a 'head' Dense layer, [B, 4] -> [B, 3] probabilities."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh", name="body")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(hidden))


def _anchors(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: v.numpy() for v in model.get_layer("body").weights}


def _data(seed: int = 0, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, np.eye(3)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 1)].astype("float32")


def test_l2sp_step_pulls_the_backbone_toward_its_anchor_and_the_head_toward_zero():
    model = _two_layer_model()
    anchors = _anchors(model)
    for v in model.trainable_variables:  # move every weight away from where it started
        v.assign(v.numpy() + 1.0)
    before = [v.numpy() for v in model.trainable_variables]
    cfg = TrainConfig(optimizer="sgd", momentum=0.0, l2sp="0.5,0.2")
    optimizer = make_optimizer(cfg, 0.1, anchors=anchors)
    assert isinstance(optimizer, LayerwiseSGD)
    zeros = [np.zeros(v.shape, "float32") for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    for v, old in zip(model.trainable_variables, before, strict=True):
        # SGD with no data gradient: w -= lr * ALPHA (w - w0), or lr * BETA * w for the head.
        expected = (old - 0.1 * 0.5 * (old - anchors[v.path]) if v.path in anchors
                    else old - 0.1 * 0.2 * old)
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, err_msg=v.path)


@pytest.mark.slow  # two fine-tuning runs: make test-slow
def test_l2sp_keeps_fine_tuned_weights_closer_to_the_pretrained_ones_than_l2():
    x, y = _data()

    def distance_after_training(cfg: TrainConfig, use_anchors: bool) -> float:
        model = _two_layer_model()
        anchors = _anchors(model)
        model.compile(optimizer=make_optimizer(cfg, 0.05, anchors=anchors if use_anchors
                                               else None), loss="categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=20, shuffle=False, verbose=0)
        return float(sum(np.sum((model.get_layer("body").get_weights()[i] - w) ** 2)
                         for i, w in enumerate(anchors.values())) ** 0.5)

    # Plain L2 of the same strength is L2-SP without anchors (every weight pulled to zero).
    l2sp = distance_after_training(TrainConfig(optimizer="adam", l2sp="0.5,0.5"), True)
    l2 = distance_after_training(TrainConfig(optimizer="adam", l2sp="0.5,0.5"), False)
    free = distance_after_training(TrainConfig(optimizer="adam"), False)
    assert l2sp < 0.5 * l2 and l2sp < 0.5 * free, (l2sp, l2, free)


def _ema_fit(model: keras.Model, x, y, epochs: int, initial_epoch: int = 0,
             callbacks=(), decay: float = 0.8) -> keras.Model:
    if not model.compiled:
        model.compile(optimizer=make_optimizer(TrainConfig(optimizer="sgd", ema=decay), 0.1),
                      loss="categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=list(callbacks))
    return model


class _Recorder(keras.callbacks.Callback):
    """The model's weights after every batch (raw) and at every epoch's end."""

    def __init__(self):
        super().__init__()
        self.steps, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(self.model.get_weights())

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.model.get_weights())


def test_ema_is_what_validation_checkpoints_and_the_fitted_model_see():
    x, y = _data()
    recorder = _Recorder()
    model = _ema_fit(_two_layer_model(), x, y, 2, callbacks=[EMAWeights(), recorder])
    assert isinstance(model.optimizer, LayerwiseSGD) and model.optimizer.use_ema
    average = None  # Keras: the first update starts the average, then decay 0.8 per update
    for i, weights in enumerate(recorder.steps):
        average = weights if average is None else [
            0.8 * a + 0.2 * w for a, w in zip(average, weights, strict=True)]
        if i == 3:  # 4 batches per epoch: what a checkpoint after epoch 1 saves
            for a, b in zip(recorder.epochs[0], average, strict=True):
                np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(model.get_weights(), average, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(model.get_weights()[0], recorder.steps[-1][0], atol=1e-4)


def test_a_resumed_ema_fit_continues_exactly_where_the_saved_one_stopped(tmp_path):
    x, y = _data()
    saved = tmp_path / "epoch2.weights.h5"

    class SaveAfterEpochTwo(keras.callbacks.Callback):  # as ResumeState does, after EMAWeights
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.save_weights(saved)

    whole = _ema_fit(_two_layer_model(), x, y, 4, callbacks=[EMAWeights(), SaveAfterEpochTwo()])
    resumed = _two_layer_model(seed=1)
    resumed.compile(optimizer=make_optimizer(TrainConfig(optimizer="sgd", ema=0.8), 0.1),
                    loss="categorical_crossentropy")
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.load_weights(saved)  # the model gets the average, the optimizer the raw weights
    _ema_fit(resumed, x, y, 4, initial_epoch=2, callbacks=[EMAWeights(average_in_model=True)])
    for a, b in zip(resumed.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_early_stopping_with_ema_restores_the_best_average():
    x, y = _data()
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    recorder = _Recorder()
    model = _two_layer_model()
    model.compile(optimizer=make_optimizer(TrainConfig(optimizer="adam", ema=0.5), 3.0),
                  loss="categorical_crossentropy")  # a rate so high that the loss goes up
    model.fit(x, y, batch_size=16, epochs=30, shuffle=False, verbose=0,
              callbacks=[EMAWeights(), recorder, stop])
    assert isinstance(model.optimizer, LayerwiseAdam)
    assert len(recorder.epochs) < 30, "the loss never stopped improving"
    best = recorder.epochs[stop.best_epoch]
    for a, b in zip(model.get_weights(), best, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("flags, match", [
    (dict(l2sp="0"), "^--l2sp: must be ALPHA or ALPHA,BETA"),
    (dict(l2sp="0.1,x"), "^--l2sp: must be ALPHA or ALPHA,BETA"),
    (dict(l2sp="0.1", weight_decay=1e-4), "^--l2sp: replaces weight decay"),
    (dict(ema=1.0), r"^--ema: must be in \[0, 1\)"),
])
def test_bad_l2sp_and_ema_values_are_named(flags, match):
    from ktransfer.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        TrainConfig(**flags)
    assert TrainConfig(l2sp="0.1").l2sp_weights() == (0.1, pytest.approx(0.01))
