"""Callbacks: atomic best/last checkpoints, the history across phases, the NaN guard and the
resume state."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest

from ktransfer.config import TrainConfig
from ktransfer.optim.optimizers import make_optimizer
from ktransfer.optim.schedules import make_schedule
from ktransfer.training.callbacks import AtomicCheckpoint, HistoryWriter, NaNGuard, ResumeState


def _model() -> keras.Model:
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_best_checkpoint_by_val_accuracy_saves_only_improvements(tmp_path):
    model = _model()
    best = AtomicCheckpoint(tmp_path / "best.keras", monitor="val_accuracy")
    best.set_model(model)
    saved = []
    for epoch, accuracy in enumerate([0.5, 0.7, 0.6, 0.7, 0.9]):
        before = (tmp_path / "best.keras").stat().st_mtime_ns if saved else None
        best.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": 1.0})
        after = (tmp_path / "best.keras").stat().st_mtime_ns
        saved.append(after != before)
    assert saved == [True, True, False, False, True]  # max mode: only strict improvements
    assert best.best == 0.9
    loss = AtomicCheckpoint(tmp_path / "low.keras", monitor="val_loss")
    loss.set_model(model)
    loss.on_epoch_end(0, {"val_loss": 2.0})
    loss.on_epoch_end(1, {"val_loss": 3.0})
    assert loss.best == 2.0  # min mode


def test_checkpoint_saves_its_target_and_nothing_after_a_nan(tmp_path):
    model, other = _model(), _model()
    guard = NaNGuard()
    last = AtomicCheckpoint(tmp_path / "last.keras", target=other, guard=guard)
    last.set_model(model)
    last.on_epoch_end(0, {})
    reloaded = keras.saving.load_model(tmp_path / "last.keras")
    for a, b in zip(reloaded.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    guard.tripped = (2, 1)
    (tmp_path / "last.keras").unlink()
    last.on_epoch_end(1, {})
    assert not (tmp_path / "last.keras").exists()


def test_the_last_checkpoint_copies_the_best_one_written_in_the_same_epoch(tmp_path,
                                                                          monkeypatch):
    model = _model()
    best = AtomicCheckpoint(tmp_path / "best.keras", monitor="val_loss", deferred=True)
    last = AtomicCheckpoint(tmp_path / "last.keras", twin=best)
    saves = []
    save = keras.Model.save
    monkeypatch.setattr(keras.Model, "save", lambda self, path: saves.append(1) or save(self, path))
    for epoch, loss in enumerate([1.0, 2.0, 0.5]):
        for checkpoint in (best, last):
            checkpoint.set_model(model)
            checkpoint.on_epoch_begin(epoch)
        model.layers[-1].kernel.assign(model.layers[-1].kernel + 1.0)  # this epoch's weights
        best.on_epoch_end(epoch, {"val_loss": loss})
        last.on_epoch_end(epoch, {"val_loss": loss})
        for a, b in zip(keras.saving.load_model(tmp_path / "last.keras").get_weights(),
                        model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        best.promote()
    assert len(saves) == 3  # best at epochs 1 and 3 (copied by last), last alone at epoch 2
    assert (tmp_path / "best.keras").read_bytes() == (tmp_path / "last.keras").read_bytes()


def test_history_keeps_one_row_per_epoch_across_phases_and_resumes(tmp_path):
    model = _model()
    path = tmp_path / "history.csv"
    history = HistoryWriter(path)
    history.set_model(model)
    for phase, epochs in (("head", [0, 1]), ("fine_tune", [2])):
        history.phase = phase
        for epoch in epochs:
            history.on_epoch_begin(epoch)
            history.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_accuracy": 0.5})
    rows = list(csv.DictReader(open(path)))
    assert [(r["epoch"], r["phase"]) for r in rows] == [("1", "head"), ("2", "head"),
                                                        ("3", "fine_tune")]
    assert float(rows[0]["lr"]) == pytest.approx(0.1) and float(rows[2]["loss"]) == 1.0 / 3
    assert all(float(r["seconds"]) >= 0 for r in rows)
    resumed = HistoryWriter(path, keep_until=2)  # a run resumed after epoch 2
    assert [r["epoch"] for r in resumed.rows] == ["1", "2"]
    assert {r["epoch"] for r in resumed.lr_rows} == {"1", "2"}


def test_lr_csv_follows_a_schedule_within_each_epoch(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cfg = TrainConfig(lr_schedule="cyclic", cycle_epochs=1, lr_floor=0.0)
    model.compile(make_optimizer(cfg, make_schedule(cfg, 1.0, 8, 2)), "mse")
    history = HistoryWriter(tmp_path / "history.csv")
    model.fit(np.zeros((32, 2)), np.zeros((32, 1)), batch_size=4, epochs=2, verbose=0,
              callbacks=[history])
    rows = list(csv.DictReader(open(tmp_path / "lr.csv")))
    positions = [float(r["position"]) for r in rows]
    rates = [float(r["lr"]) for r in rows]
    assert positions == sorted(positions) and positions[0] == 0 and positions[-1] == 1 + 7 / 8
    assert min(rates) == pytest.approx(0.0, abs=1e-6)
    peaks = [p for p, r in zip(positions, rates, strict=True) if r > 0.9]
    assert peaks and all(0.4 <= p % 1 <= 0.6 for p in peaks)  # one cycle an epoch, peak mid-way


def test_nan_guard_stops_at_the_batch_and_remembers_where():
    model = _model()
    guard = NaNGuard()
    guard.set_model(model)
    guard.on_epoch_begin(3)
    guard.on_train_batch_end(0, {"loss": 0.5})
    assert guard.tripped is None and not model.stop_training
    guard.on_train_batch_end(4, {"loss": float("nan")})
    assert guard.tripped == (4, 5) and model.stop_training


def test_resume_state_commits_weights_then_state_and_keeps_one_weights_file(tmp_path):
    model = _model()
    state = ResumeState(tmp_path)
    state.set_model(model)
    state.phase, state.stage, state.extra = "head", 0, {"head_epochs": 2}
    state.on_epoch_end(0)
    state.on_epoch_end(1)
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["epoch"] == 2 and saved["weights"] == "epoch0002.weights.h5"
    assert saved["head_epochs"] == 2 and not saved["complete"]
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == ["epoch0002.weights.h5"]


@pytest.mark.parametrize("cache", [True, False])
def test_a_head_phase_checkpoints_the_head_alone_and_the_whole_model_once(cache, tiny_config,
                                                                         monkeypatch):
    """The frozen backbone cannot change in the head phase, cached features or not: each epoch
    writes the head's weights (kilobytes), the whole model is written once at the end."""
    from ktransfer.training import train

    saved = []
    real = keras.Model.save
    monkeypatch.setattr(keras.Model, "save", lambda self, path, *a, **k: (
        saved.append(str(path)), real(self, path, *a, **k))[1])
    result = train(tiny_config(epochs=4, cache_features=cache))
    checkpoints = result.run_dir / "checkpoints"
    assert sum(".best." in p or ".last." in p for p in saved) == 2  # not 2 per epoch
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.keras", "last.keras"]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    last = keras.saving.load_model(checkpoints / "last.keras")
    np.testing.assert_allclose(last.predict(pixels, verbose=0),
                               result.model.predict(pixels, verbose=0), atol=1e-6)


def test_a_resume_state_without_the_backbone_refuses_a_different_rebuilt_backbone(tmp_path):
    """The head phase's state leaves the frozen backbone out and keeps its fingerprint: the
    same backbone loads, a different one (other weights) is a one-line error, not a silently
    different model."""
    from ktransfer.errors import TrainingError
    from ktransfer.training.callbacks import load_resumed, weights_fingerprint

    backbone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="backbone")
    model = keras.Sequential([backbone, keras.layers.Dense(2)])
    state = ResumeState(tmp_path)
    state.set_model(model)
    state.skip, state.skip_fingerprint = backbone, weights_fingerprint(backbone)
    state.commit(1, complete=False)
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["backbone_skipped"]
    head = model.layers[-1].kernel.numpy()
    model.layers[-1].kernel.assign(np.zeros_like(head))
    load_resumed(model, tmp_path, saved, backbone)
    np.testing.assert_array_equal(model.layers[-1].kernel.numpy(), head)
    backbone.layers[0].kernel.assign(backbone.layers[0].kernel + 1.0)
    with pytest.raises(TrainingError, match="differs from the one the run started with"):
        load_resumed(model, tmp_path, saved, backbone)
