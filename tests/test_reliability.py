"""Reliability: a killed run resumes from its last epoch, NaN stops cleanly, bad data is named,
and no flag value or image byte string crashes the tool with a traceback."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, error_line, run_cli

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _epochs_done(run_dir) -> int:
    try:
        return json.loads((run_dir / "resume" / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [2, 5])  # in phase 1, in phase 2
def test_killed_run_resumes_from_its_last_epoch(tmp_path, kill_after):
    run_dir = tmp_path / "run"
    args = ["--data=builtin:digits", "--backbone=small_cnn", "--weights=none",
            "--image_size=16", "--epochs=3", "--fine_tune_epochs=4", "--fine_tune_lr=0.003",
            "--lr_schedule=cyclic", "--cycle_epochs=2.5", "--bn_trainable", "--verbose=0",
            "--notensorboard", "--noreport", f"--run_dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "ktransfer.train", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _epochs_done(run_dir) < kill_after and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = _epochs_done(run_dir)
    assert kill_after <= killed_at < 7
    assert not (run_dir / "metrics.json").exists()

    resumed = run_cli("train", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir} after epoch {killed_at}" in resumed.stderr
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 8))  # none lost, none repeated
    assert [r["phase"] for r in rows] == ["head"] * 3 + ["fine_tune"] * 4
    _assert_schedule_continues(run_dir / "lr.csv", killed_at)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == {"head": 3, "fine_tune": 4}
    assert metrics["val"]["accuracy"] > 0.1 + 0.3  # 10 classes
    assert not (run_dir / "resume").exists()
    if kill_after == 2:  # once is enough: finished, the same command now refuses
        again = run_cli("train", *args)
        assert again.returncode == 2 and "already holds a run" in error_line(again)


def _assert_schedule_continues(lr_csv, killed_at: int) -> None:
    """The cyclic rate goes on from where the killed run left it: the first rate of the resumed
    epoch lies next to the last one before the kill (a restarted count would drop to the
    floor, 40 % of the swing away at these epoch counts)."""
    rows = list(csv.DictReader(open(lr_csv)))
    before = [r for r in rows if int(r["epoch"]) == killed_at]
    after = [r for r in rows if int(r["epoch"]) == killed_at + 1]
    if before[-1]["phase"] != after[0]["phase"]:
        return  # killed at the phase boundary: the new phase starts its own cycle
    phase = [float(r["lr"]) for r in rows if r["phase"] == after[0]["phase"]]
    swing = max(phase) - min(phase)
    assert abs(float(after[0]["lr"]) - float(before[-1]["lr"])) < 0.25 * swing


def test_resuming_with_other_flags_is_refused(tmp_path, tiny_config):
    from ktransfer.errors import ConfigError
    from ktransfer.runs.rundir import MARKER, resume_state, write_flagfile

    run_dir = tmp_path / "run"
    (run_dir / "resume").mkdir(parents=True)
    (run_dir / "resume" / "state.json").write_text('{"epoch": 1}')
    (run_dir / MARKER).write_text("{}")
    write_flagfile(run_dir, tiny_config(lr=0.01))
    assert resume_state(tiny_config(lr=0.01, verbose=2))["epoch"] == 1
    with pytest.raises(ConfigError, match="^--run_dir: .* unfinished run with other flags"):
        resume_state(tiny_config(lr=0.02))
    assert resume_state(tiny_config(lr=0.02, overwrite=True)) is None


@pytest.mark.slow  # a run that diverges: make test-slow
def test_nan_loss_in_the_first_epoch_is_one_line_without_a_traceback(tmp_path):
    bad = run_cli("train", "--data=builtin:digits", "--backbone=small_cnn", "--weights=none",
                  "--image_size=16", "--epochs=0", "--fine_tune_epochs=2",
                  "--fine_tune_lr=1e30", "--optimizer=sgd", "--verbose=0", "--notensorboard",
                  "--noreport", f"--run_dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    line = error_line(bad)
    assert "the loss became NaN or infinite in epoch 1, batch" in line
    assert "no epoch finished, so there is no checkpoint" in line
    assert "with a lower learning rate" in line


@pytest.mark.slow  # a run that diverges late: make test-slow
def test_nan_loss_keeps_the_last_good_checkpoint_and_history(tiny_config, monkeypatch):
    """Epoch 1 trains normally; in epoch 2 the learning rate jumps to 1e30 and the loss
    becomes NaN: training stops, and the files still hold epoch 1."""
    import keras

    from ktransfer import training
    from ktransfer.deploy.saving import load_model
    from ktransfer.errors import TrainingError
    from ktransfer.training import phases

    def exploding(cfg, peak, steps_per_epoch, epochs, offset_epochs=0):
        return keras.optimizers.schedules.PiecewiseConstantDecay([steps_per_epoch], [1e-3, 1e30])

    monkeypatch.setattr(phases, "make_schedule", exploding)
    cfg = tiny_config(epochs=0, fine_tune_epochs=3, optimizer="sgd", bn_trainable=True)
    with pytest.raises(TrainingError, match="NaN or infinite in epoch 2, batch") as info:
        training.train(cfg)
    run_dir = cfg.train.run_dir
    assert f"last good checkpoint is {run_dir}/checkpoints/last.keras (epoch 1)" in str(info.value)
    model = load_model(f"{run_dir}/checkpoints/last.keras")
    assert all(np.isfinite(w).all() for w in model.get_weights())
    rows = list(csv.DictReader(open(f"{run_dir}/history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1] and np.isfinite(float(rows[0]["loss"]))
    state = json.loads(open(f"{run_dir}/resume/state.json").read())
    assert state["epoch"] == 1 and state["nan_stop"]
    # The documented recovery: the same command with another learning rate resumes after
    # epoch 1 (other changed flags are still refused); the old flags go to flags.history.
    monkeypatch.undo()
    from ktransfer.errors import ConfigError

    with pytest.raises(ConfigError, match="unfinished run with other flags"):
        training.train(tiny_config(epochs=0, fine_tune_epochs=4, optimizer="sgd",
                                   bn_trainable=True))
    resumed = training.train(tiny_config(epochs=0, fine_tune_epochs=3, optimizer="sgd",
                                         bn_trainable=True, fine_tune_lr=1e-3))
    assert resumed.metrics["epochs"] == {"head": 0, "fine_tune": 3}
    rows = list(csv.DictReader(open(f"{run_dir}/history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert "--fine_tune_lr=0.0001" in open(f"{run_dir}/flags.history").read()
    assert "--fine_tune_lr=0.001" in open(f"{run_dir}/flags.cfg").read()


@pytest.mark.slow
def test_awkward_but_valid_images_train_and_bad_files_are_named(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for c, name in enumerate(["chat", "chien", "ñandú"]):  # non-ASCII class names
        colour = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220]][c], np.uint8)
        for i in range(6):
            h, w = int(rng.integers(10, 90)), int(rng.integers(10, 90))  # very different sizes
            pixels = np.clip(colour + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            kind = i % 6
            target = root / name / f"img{i}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == 0:
                Image.fromarray(pixels).convert("CMYK").save(f"{target}.jpg")
            elif kind == 1:
                Image.fromarray(pixels).convert("L").save(f"{target}.png")
            elif kind == 2:
                Image.fromarray(pixels).convert("RGBA").save(f"{target}.png")
            elif kind == 3:  # 16-bit grayscale PNG
                Image.fromarray(pixels[..., c].astype(np.uint16) * 257).save(f"{target}.png")
            elif kind == 4:
                Image.fromarray(pixels).save(f"{target}.gif")
            else:
                Image.fromarray(pixels).save(f"{target}.jpg")
    (root / "empty_class").mkdir()
    (root / "chat" / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    (root / "chat" / "zero.jpg").write_bytes(b"")
    full = root / "chien" / "img5.jpg"
    (root / "chien" / "truncated.jpg").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 3])
    (root / "ñandú" / "fake.png").write_bytes(b"GIF89a not really")
    args = [f"--data={root}", "--backbone=small_cnn", "--weights=none", "--image_size=16",
            "--epochs=1", "--batch_size=4", "--verbose=0", "--notensorboard", "--noreport",
            "--val_split=0.3", "--test_split=0"]
    failed = run_cli("train", *args, f"--run_dir={tmp_path / 'r1'}")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "is not a readable image" in error_line(failed) and "--on_bad_image=skip" in \
        error_line(failed)
    assert not (tmp_path / "r1").exists()
    skipped = run_cli("train", *args, "--on_bad_image=skip", f"--run_dir={tmp_path / 'r2'}")
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 3 unreadable image file(s)" in skipped.stderr
    assert "zero.jpg" in skipped.stderr and "truncated.jpg" in skipped.stderr
    assert "skipped 1 class folder(s) with no images" in skipped.stderr
    metrics = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert metrics["class_names"] == ["chat", "chien", "ñandú"]
    assert metrics["num_examples"]["train"] + metrics["num_examples"]["val"] == 18

    one = tmp_path / "one" / "only"
    one.mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(one / f"{i}.png")
    single = run_cli("train", f"--data={tmp_path / 'one'}", *args[1:],
                     f"--run_dir={tmp_path / 'r3'}")
    assert single.returncode == 2 and "one class only" in error_line(single)


# ------------------------------------------------------------------ property / fuzz tests

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TEXT = st.one_of(st.text(max_size=12), st.sampled_from(
    ["0", "-1", "1e309", "nan", "inf", "-inf", "1.5", "all", "none", "3,x", ",", "/nonexistent",
     "builtin:nope", "tfds:", "hub:", "file:x.keras", "2", "0.999999", "1e-300"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([
    "data", "val_split", "test_split", "batch_size", "image_size", "classes", "cache",
    "backbone", "weights", "head_hidden", "dropout", "l2", "label_smoothing", "epochs", "lr",
    "fine_tune_epochs", "unfreeze", "gradual_unfreeze", "lr_layer_decay", "warmup_epochs",
    "lr_schedule", "optimizer", "momentum", "seed", "verbose", "export_dir", "aug_crop",
    "aug_noise", "on_bad_image", "preprocess", "train_per_class", "aug_randaugment",
    "aug_mixup", "aug_cutmix", "aug_erasing", "cycle_epochs", "cyclic_policy", "lr_floor",
    "cycle_gamma", "accumulate", "l2sp", "ema", "weight_decay", "momentum_low",
    "fine_tune_lr", "mmd_layers", "da_select", "target_loss", "class_threshold",
    "mmd_alignment"]), _TEXT, max_size=6))
def test_any_command_line_gives_a_config_or_a_one_line_error(values):
    """Flags as the CLI sees them (strings): absl rejects a value with flags.Error, or the config
    is built, or a KtransferError names the flag; nothing else escapes."""
    from absl import flags

    from ktransfer import config
    from ktransfer.errors import KtransferError

    fv = flags.FlagValues()
    config.define_flags(fv)
    argv = ["ktransfer", "--data=builtin:digits"] + [f"--{k}={v}" for k, v in values.items()]
    try:
        fv(argv)
    except flags.Error:
        return  # the CLI prints it as one line (see test_cli)
    try:
        cfg = config.from_flags(fv)
    except KtransferError as exc:
        assert str(exc).startswith("--") and "\n" not in str(exc)
    else:
        assert isinstance(cfg, config.RunConfig)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff",
                                                  b"GIF89a", b"BM"]))
def test_any_file_bytes_are_an_image_or_a_named_problem(tmp_path_factory, data, magic):
    from ktransfer.errors import DataError
    from ktransfer.image.prediction import load_pixels
    from ktransfer.image.sources import image_problem

    path = tmp_path_factory.mktemp("fuzz") / "x.jpg"
    path.write_bytes(magic + data)
    problem = image_problem(str(path))
    if problem is None:
        assert load_pixels(str(path), 8).shape == (8, 8, 3)
    else:
        assert isinstance(problem, str) and problem
        with pytest.raises(DataError, match="x.jpg: not a readable image"):
            load_pixels(str(path), 8)
