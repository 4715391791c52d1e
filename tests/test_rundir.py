"""The run directory: --overwrite deletes only what is provably a run, one process per run,
and a run killed at any point (even after training) is finished by the same command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ktransfer.errors import ConfigError
from ktransfer.runs import rundir
from ktransfer.training import finishing, train

from conftest import REPO, error_line, run_cli


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path, tiny_config):
    """The data-loss bug: a folder that merely holds a file named flags.cfg was deleted."""
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "flags.cfg").write_text("--data=mine\n")
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="^--run_dir: .* not a ktransfer run directory"):
        train(tiny_config(run_dir=str(precious), overwrite=True))
    assert (precious / "chapter1.tex").read_text() == "years of work"


@pytest.mark.slow  # two runs: make test-slow
def test_overwrite_replaces_a_run_but_never_follows_links_out_of_it(tmp_path, tiny_config):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    first = train(tiny_config())
    marker = json.loads((first.run_dir / rundir.MARKER).read_text())
    (first.run_dir / "link_to_outside").symlink_to(outside, target_is_directory=True)
    again = train(tiny_config(overwrite=True))
    assert json.loads((again.run_dir / rundir.MARKER).read_text())["id"] != marker["id"]
    assert not (again.run_dir / "link_to_outside").exists()
    assert (outside / "keep.txt").read_text() == "keep"
    link = tmp_path / "run_link"
    link.symlink_to(again.run_dir, target_is_directory=True)
    with pytest.raises(ConfigError, match="^--run_dir: .* is a symbolic link"):
        train(tiny_config(run_dir=str(link), overwrite=True))
    assert (again.run_dir / "model.keras").is_file()


def test_a_second_run_on_the_same_run_dir_stops_at_once(tmp_path, tiny_config):
    cfg = tiny_config()
    with rundir.open_run(cfg):
        started = time.time()
        with pytest.raises(ConfigError, match=rf"in use by another ktransfer run \(process "
                                              rf"{os.getpid()}\)"):
            train(tiny_config(overwrite=True))
        assert time.time() - started < 5
    train(cfg)  # free again once released


def test_a_killed_process_leaves_no_stale_lock(tmp_path, tiny_config):
    cfg = tiny_config()
    code = ("import time, sys; from ktransfer import config; from ktransfer.runs import rundir; "
            f"run = rundir.open_run(config.build(**{_values(cfg)!r})); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert rundir.lock_holder(rundir.run_path(cfg)) == holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert rundir.lock_holder(rundir.run_path(cfg)) is None


def _values(cfg) -> dict:
    return {"data": cfg.data.data, "backbone": cfg.model.backbone, "weights": cfg.model.weights,
            "image_size": cfg.group("image").image_size, "run_dir": cfg.train.run_dir}


@pytest.mark.slow
def test_two_real_processes_on_one_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--data=builtin:digits", "--backbone=small_cnn", "--weights=none", "--image_size=16",
            "--epochs=200", "--verbose=0", "--notensorboard", f"--run_dir={run_dir}"]
    first = subprocess.Popen([sys.executable, "-m", "ktransfer.train", *args], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while rundir.lock_holder(run_dir) is None:
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.1)
        second = run_cli("train", *args)
        assert second.returncode == 2
        assert f"in use by another ktransfer run (process {first.pid})" in error_line(second)
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow  # kill and resume
def test_a_run_killed_while_writing_its_report_is_finished_by_the_same_command(
        tiny_config, monkeypatch):
    cfg = tiny_config(epochs=2, report=True)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process died here

    monkeypatch.setattr(finishing, "write_report", killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    run_dir = rundir.run_path(cfg)
    assert (run_dir / "metrics.json").is_file() and (run_dir / "resume").is_dir()
    monkeypatch.undo()
    result = train(cfg)  # the same command: no retraining, the missing steps done
    assert (run_dir / "report.html").is_file() and not (run_dir / "resume").exists()
    assert result.metrics["epochs"] == {"head": 2, "fine_tune": 0}
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


@pytest.mark.slow  # a run, a kill and an export: make test-slow
def test_a_run_killed_during_its_export_exports_once(tiny_config, tmp_path, monkeypatch):
    export_dir = tmp_path / "exports" / "digits"
    cfg = tiny_config(epochs=1, export_dir=str(export_dir))
    real = finishing.export

    def export_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt  # killed after the version folder appeared

    monkeypatch.setattr(finishing, "export", export_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.undo()
    result = train(cfg)
    assert sorted(p.name for p in export_dir.iterdir()) == ["1"]
    assert result.metrics["export"] == str(export_dir.resolve() / "1")


def test_a_run_killed_in_its_first_epoch_starts_again_with_the_same_command(tiny_config):
    cfg = tiny_config(epochs=1)
    with rundir.open_run(cfg) as run:  # what a run killed before any epoch ended leaves
        rundir.write_flagfile(run.path, cfg)
    assert train(cfg).metrics["epochs"]["head"] == 1
    with rundir.open_run(tiny_config(epochs=1, overwrite=True)) as run:
        rundir.write_flagfile(run.path, tiny_config(epochs=1, overwrite=True))
    with pytest.raises(ConfigError, match="unfinished run with other flags"):
        train(tiny_config(epochs=2))


@pytest.mark.slow  # a run and two exports: make test-slow
def test_a_version_taken_meanwhile_by_another_export_is_not_reported_as_this_runs(
        tiny_config, tmp_path, monkeypatch):
    """Killed during its export (version 1 claimed), while another run exports to the same
    folder and takes version 1: the same command exports its own model as version 2 (before,
    it reported the other run's version 1 as its own and never exported)."""
    export_dir = tmp_path / "exports" / "digits"
    cfg = tiny_config(epochs=1, export_dir=str(export_dir))

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # killed as the export began, its version already claimed

    monkeypatch.setattr(finishing, "export", die)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.undo()
    other = train(tiny_config(epochs=1, export_dir=str(export_dir),
                              run_dir=str(tmp_path / "other")))
    assert other.metrics["export"] == str(export_dir.resolve() / "1")
    result = train(cfg)
    assert result.metrics["export"] == str(export_dir.resolve() / "2")
    origin = json.loads((export_dir / "2" / "origin.json").read_text())
    assert origin["run_dir"] == str(result.run_dir.resolve())


@pytest.mark.parametrize("damage", ["", '{"epoch": 1, "pha'])
def test_a_damaged_resume_state_is_refused_and_deletes_nothing(tiny_config, monkeypatch,
                                                               damage):
    from conftest import train_killed_after

    cfg = tiny_config(epochs=3)
    train_killed_after(2, cfg, monkeypatch)
    run_dir = rundir.run_path(cfg)
    (run_dir / "resume" / "state.json").write_text(damage)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    with pytest.raises(ConfigError, match=r"^--run_dir: .*state.json' is unreadable .*nothing "
                                          r"was deleted"):
        train(cfg)
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3  # two epochs kept


def test_missing_or_truncated_epoch_weights_are_one_line_and_delete_nothing(tiny_config,
                                                                             monkeypatch):
    from ktransfer.errors import TrainingError

    from conftest import train_killed_after

    cfg = tiny_config(epochs=3)
    train_killed_after(2, cfg, monkeypatch)
    resume = rundir.run_path(cfg) / "resume"
    weights = resume / json.loads((resume / "state.json").read_text())["weights"]
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(TrainingError, match=r"^cannot read .*weights.h5 .*nothing was deleted"):
        train(cfg)
    weights.unlink()
    with pytest.raises(TrainingError, match=r"^cannot read .*weights.h5"):
        train(cfg)
    assert (resume / "state.json").is_file()


def test_a_run_folder_that_cannot_be_written_is_one_line(tiny_config, monkeypatch):
    """Resuming in a read-only folder: the lock file cannot be opened for writing (root
    ignores permission bits, so the refusal of the file system is simulated)."""
    import builtins

    from conftest import train_killed_after

    cfg = tiny_config(epochs=3)
    train_killed_after(2, cfg, monkeypatch)
    real_open = builtins.open

    def read_only(file, mode="r", *args, **kwargs):
        if str(file).endswith(rundir.LOCK) and mode != "r":
            raise OSError(30, "Read-only file system")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    monkeypatch.setattr(rundir, "check", lambda cfg: None)  # its write probe would see it too
    with pytest.raises(ConfigError, match="^--run_dir: cannot write to .*Read-only file system"):
        rundir.open_run(cfg)


@pytest.mark.parametrize("values, prefix", [
    (dict(data="builtin:digits"), "digits-small_cnn-"),
    (dict(data="/home/me/photos/", backbone="EfficientNetB0"), "photos-efficientnetb0-"),
    (dict(modality="text", data="reviews.csv", task="multi_label", backbone="minilm"),
     "reviews-multi_label-minilm-"),
    (dict(data="tfds:cifar10", backbone="kerashub:resnet_18_imagenet"),
     "cifar10-resnet_18_imagenet-")])
def test_a_default_run_name_says_what_ran(values, prefix):
    """On ce06f12 two text runs started 3 s apart were runs/minilm-20261207-061312 and
    -061315: nothing said which data or task."""
    from ktransfer import config

    cfg = config.build(**{"backbone": "small_cnn", **values})
    name = rundir.run_path(cfg).name
    assert rundir.run_path(cfg).parent.name == "runs" and name.startswith(prefix), name
    assert re.fullmatch(r"[A-Za-z0-9_.-]+-\d{8}-\d{6}", name)
