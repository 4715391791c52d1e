"""--track=mlflow against a real local MLflow store, read back with MLflow's client: the
flags, every epoch of both phases on one step axis, the final metrics and the run's files;
a killed run continues the same MLflow run."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from ktransfer import config, preflight
from ktransfer.errors import ConfigError
from ktransfer.training import train
from ktransfer.training.tracking import TRACKING_FILE

from conftest import tiny_values, train_killed_after


@pytest.mark.slow  # kill and resume
def test_a_tracked_run_killed_and_resumed_is_one_mlflow_run(tmp_path, monkeypatch):
    store = (tmp_path / "mlruns").as_uri()
    cfg = config.build(**tiny_values(tmp_path, epochs=2, fine_tune_epochs=2, track="mlflow",
                                     tracking_uri=store, experiment="digits", report=True))
    train_killed_after(3, cfg, monkeypatch)
    first = json.loads((tmp_path / "run" / TRACKING_FILE).read_text())["run_id"]
    result = train(cfg)
    assert json.loads((result.run_dir / TRACKING_FILE).read_text())["run_id"] == first
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("digits")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [first]  # one run, continued
    run = runs[0]
    assert run.data.params["epochs"] == "2" and run.data.params["backbone"] == "small_cnn"
    steps = sorted(m.step for m in client.get_metric_history(first, "val_loss"))
    assert sorted(set(steps)) == [1, 2, 3, 4]  # both phases on one axis, none lost to the kill
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(
        result.metrics["test"]["accuracy"])
    files = {a.path for a in client.list_artifacts(first)}
    assert {"flags.cfg", "metrics.json", "report.html", "MODEL_CARD.md"} <= files


def test_tracking_without_mlflow_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"^--track: mlflow is not installed"):
        preflight.check_train(config.build(**tiny_values(tmp_path, track="mlflow")))


def test_a_corrupt_store_is_refused_before_the_run_folder_exists(tmp_path, monkeypatch):
    """On ce06f12 MLflow's yaml ReaderError came as a traceback after the run folder was
    made."""
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("digits")
    for meta in (tmp_path / "mlruns").glob("*/meta.yaml"):
        meta.write_bytes(b"\x00\x01: [garbage")
    cfg = config.build(**tiny_values(tmp_path, track="mlflow", tracking_uri=store,
                                     experiment="digits"))
    with pytest.raises(ConfigError, match=r"^--tracking_uri: file://.*: MLflow cannot read "
                       r"this store \(ReaderError: .*\); repair or move it"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_read_only_store_is_refused_before_the_run_folder_exists(tmp_path):
    from conftest import tmpfs

    with tmpfs(tmp_path / "ro", "ro,size=64k") as store:
        cfg = config.build(**tiny_values(tmp_path, track="mlflow", tracking_uri=str(store)))
        with pytest.raises(ConfigError, match=r"^--tracking_uri: cannot write to .*ro"):
            train(cfg)
        assert not (tmp_path / "run").exists()
