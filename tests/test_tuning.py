"""Keras Tuner searches (the head; adaptation runs): search space, flags, kill-and-resume, and
the winner's flagfile."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from ktransfer import preflight
from ktransfer.config import TuneConfig, build, build_search, parse_flagfile
from ktransfer.errors import ConfigError
from ktransfer.training import train
from ktransfer.tuning import apply_hyperparameters, search

from conftest import REPO, SOURCE_WEIGHTS, error_line, run_cli, tiny_values


def test_bad_search_space_is_a_config_error():
    with pytest.raises(ConfigError, match="^--hp_lr: give min,max"):
        TuneConfig(hp_lr=(0.1, 0.001))
    with pytest.raises(ConfigError, match="^--hp_schedules: unknown learning-rate schedule"):
        preflight.check_names(TuneConfig(hp_schedules=("wavy",)))
    with pytest.raises(ConfigError, match="^--max_trials: must be >= 1"):
        TuneConfig(max_trials=0)


def test_apply_hyperparameters_fills_the_head_and_optimizer(tiny_config):
    cfg = apply_hyperparameters(tiny_config(), {
        "layers": 2, "units": 64, "dropout": 0.25, "l2": 1e-4, "lr": 0.02,
        "lr_schedule": "exponential", "label_smoothing": 0.1})
    assert cfg.model.head_hidden == (64, 64) and cfg.model.dropout == 0.25
    assert (cfg.model.l2, cfg.model.label_smoothing) == (1e-4, 0.1)
    assert (cfg.train.lr, cfg.train.lr_schedule) == (0.02, "exponential")


def _completed(directory) -> int:
    count = 0
    for root, _, files in os.walk(directory):
        if "trial.json" in files:
            with open(os.path.join(root, "trial.json")) as f:
                try:
                    count += json.load(f).get("status") == "COMPLETED"
                except json.JSONDecodeError:
                    pass
    return count


@pytest.mark.slow
def test_search_killed_after_a_trial_resumes_to_three_and_the_winner_trains(tmp_path):
    args = ["--data=builtin:digits", "--classes=5,6,7", "--backbone=small_cnn",
            f"--weights={SOURCE_WEIGHTS}", "--image_size=32", "--epochs=3", "--cache_features",
            "--tuner=random", "--max_trials=3", f"--directory={tmp_path / 'search'}",
            "--project=p", "--verbose=0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    first = subprocess.Popen([sys.executable, "-m", "ktransfer.tune", *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    # A trial is over for Keras Tuner once its tuner state is saved after the trial.
    while not (tmp_path / "search" / "p" / "tuner0.json").exists() and first.poll() is None:
        assert time.time() < deadline, "no trial finished in 300 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL, "the search ended before it could be killed"
    finished_before = _completed(tmp_path / "search")
    assert 1 <= finished_before < 3

    resumed = run_cli("tune", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {tmp_path / 'search' / 'p'}: {finished_before} trial(s)" in resumed.stderr
    assert "feature cache: on" in resumed.stderr
    rows = list(csv.DictReader(open(tmp_path / "search" / "p" / "trials.csv")))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"COMPLETED"}
    assert _completed(tmp_path / "search") == 3

    best = tmp_path / "search" / "p" / "best.cfg"
    assert f"--flagfile={best}" in resumed.stdout
    # Retraining keeps the best epoch, the one the trial was scored on.
    assert "--monitor=val_accuracy" in best.read_text()
    assert re.search(r"^--early_stopping=[1-9]", best.read_text(), re.M)
    again = run_cli("tune", *args)  # a finished search returns at once, same winner
    assert again.returncode == 0 and "resuming" in again.stderr
    trained = run_cli("train", f"--flagfile={best}", f"--run_dir={tmp_path / 'run'}",
                      "--noreport")
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] > 1 / 3 + 0.2


def test_tune_flag_errors_are_one_line(tmp_path):
    result = run_cli("tune", "--data=builtin:digits", "--hp_dropout=0.5", "--backbone=small_cnn",
                     f"--directory={tmp_path}")
    assert result.returncode == 2
    assert error_line(result).startswith("ktransfer.tune: error: --hp_dropout: give min,max")


@pytest.mark.slow
def test_adaptation_search_ranks_runs_by_a_validator_and_resumes(tmp_path):
    """Two adaptation trials (alignment x weight) each train a whole run; a trial's score is
    its kept epoch's source_val score (read back from its run), best.cfg retrains the winner
    keeping the same validator's epoch, and the same search again trains nothing new."""
    values = dict(tiny_values(tmp_path), epochs=1, fine_tune_epochs=1, steps_per_epoch=3,
                  target_data="builtin:digits_m", target_eval_data="builtin:digits_m",
                  space="adaptation", objective="source_val", hp_alignments=("marginal", "class"),
                  hp_mmd_weights=(0.1, 1.0), tuner="random", max_trials=2,
                  directory=str(tmp_path / "search"), project="da")
    result = search(build_search(**values))
    assert [r["status"] for r in result.trials] == ["COMPLETED", "COMPLETED"]
    for row in result.trials:
        kept = json.loads((tmp_path / "search" / "da" / "runs" / row["trial"] / "metrics.json")
                          .read_text())["adaptation"]
        assert row["source_val"] == pytest.approx(kept["selection"]["best"]["scores"]
                                                  ["source_val"])
        assert row["target_accuracy"] == pytest.approx(kept["target_accuracy"])
    assert result.trials[0]["source_val"] >= result.trials[1]["source_val"]
    best = parse_flagfile(result.best_flagfile)
    assert (best["mmd_alignment"], best["mmd_weight"], best["da_select"]) == (
        result.trials[0]["mmd_alignment"], result.trials[0]["mmd_weight"], "source_val")
    with open(tmp_path / "search" / "da" / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    again = search(build_search(**values))
    assert [r["trial"] for r in again.trials] == [r["trial"] for r in result.trials]


def test_adaptation_search_is_refused_without_target_data_or_with_hyperband(tmp_path):
    common = dict(tiny_values(tmp_path), space="adaptation", directory=str(tmp_path / "s"))
    with pytest.raises(ConfigError, match="^--target_data: --space=adaptation"):
        preflight.check_search(build_search(**common))
    with pytest.raises(ConfigError, match="^--tuner: hyperband"):
        build_search(**common, target_data="builtin:digits_m", tuner="hyperband")
    missing = str(tmp_path / "no-such-run")
    with pytest.raises(ConfigError, match=f"^--hp_init_from: '{missing}' does not exist"):
        preflight.check_search(build_search(**common, target_data="builtin:digits_m",
                                            hp_init_from=(missing,)))
    with pytest.raises(ConfigError, match="^--hp_init_from: source runs to adapt from"):
        build_search(**dict(common, space="head"), hp_init_from=(missing,))


@pytest.mark.slow
def test_adaptation_search_over_source_runs_adapts_from_each_and_keeps_the_winners(tmp_path):
    """--hp_init_from: each trial adapts from one of the source runs (the same source training
    with two seeds), and best.cfg retrains from the winner's."""
    sources = []
    for seed in (1, 2):
        values = dict(tiny_values(tmp_path), epochs=0, fine_tune_epochs=1, steps_per_epoch=2,
                      seed=seed, run_dir=str(tmp_path / f"source{seed}"))
        train(build(**values))
        sources.append(values["run_dir"])
    values = dict(tiny_values(tmp_path), epochs=0, fine_tune_epochs=1, steps_per_epoch=2,
                  init_from=str(tmp_path / "not-made"),  # stood in for by --hp_init_from's
                  target_data="builtin:digits_m", space="adaptation", objective="im",
                  hp_alignments=("marginal",), hp_mmd_weights=(0.3,), hp_init_from=tuple(sources),
                  tuner="random", max_trials=2, directory=str(tmp_path / "search"), project="s")
    preflight.check_search(build_search(**values))
    result = search(build_search(**values))
    assert sorted(r["init_from"] for r in result.trials) == sources
    for row in result.trials:
        flags = parse_flagfile(tmp_path / "search" / "s" / "runs" / row["trial"] / "flags.cfg")
        assert flags["init_from"] == row["init_from"]
    assert parse_flagfile(result.best_flagfile)["init_from"] == result.trials[0]["init_from"]


def test_a_trial_orphaned_by_a_kill_between_two_state_files_is_retried_not_drawn_again(
        tmp_path):
    """Keras Tuner writes a new trial's trial.json before the oracle.json that lists it: a
    search killed in between reloaded the trial as RUNNING forever and drew its values again
    as a new trial (issue 29: a RUNNING row and two rows of the same values). Here the kill is
    made exact: oracle.json is put back as it was before the trial began."""
    import shutil

    import keras_tuner as kt

    from ktransfer.tuning import retry_orphaned_trials

    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")

    def build(hp):
        model = keras.Sequential([keras.Input((4,)),
                                  keras.layers.Dense(hp.Choice("units", [2, 4, 8, 16]),
                                                     activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
        return model

    def tuner():
        return kt.RandomSearch(build, objective="val_accuracy", max_trials=2, seed=0,
                               directory=str(tmp_path), project_name="p", overwrite=False)

    first = tuner()
    oracle_file = tmp_path / "p" / "oracle.json"
    first.save()  # its state as a search that ran saves it
    shutil.copy(oracle_file, tmp_path / "before.json")
    orphan = first.oracle.create_trial("tuner0")  # trial.json, then oracle.json
    shutil.copy(tmp_path / "before.json", oracle_file)  # killed between the two writes
    resumed = tuner()
    assert retry_orphaned_trials(resumed.oracle) == [orphan.trial_id]
    resumed.search(x, y, epochs=1, validation_split=0.25, verbose=0)
    trials = resumed.oracle.trials.values()
    assert sorted(t.status for t in trials) == ["COMPLETED", "COMPLETED"]
    assert len({t.hyperparameters.values["units"] for t in trials}) == 2


@pytest.mark.slow  # three training runs: make test-slow (the registration itself is checked by
# tests/test_registry.py in make test)
def test_a_new_search_space_is_one_registration(tmp_path):
    """tests/plugins/lr_grid.py, registered alone, is run by `search` as the shipped spaces
    are: three trials, best first on its validation score, and a best.cfg that retrains the
    winner's rate."""
    from plugins import installed

    with installed("lr_grid"):
        result = search(build_search(**tiny_values(tmp_path, epochs=2), space="lr_grid",
                                     hp_lr=(1e-4, 1e-2), directory=str(tmp_path / "tuning")))
    scores = [row["val_accuracy"] for row in result.trials]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert sorted(row["lr"] for row in result.trials) == pytest.approx([1e-4, 1e-3, 1e-2])
    best = parse_flagfile(result.best_flagfile)
    assert float(best["lr"]) == pytest.approx(result.trials[0]["lr"])
    with open(tmp_path / "tuning" / "head" / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
