"""Strategies and precision on CPU: mirrored over 2 logical CPUs, a real 2-process multi-worker
run on 127.0.0.1, mixed bfloat16; all must train like a single device."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from ktransfer.config import DistributeConfig
from ktransfer.errors import ConfigError
from ktransfer.training import distribute

from conftest import REPO, SOURCE_WEIGHTS, run_cli

# Digits 5-7 on the shipped digits 0-4 backbone: the head learns in 3 epochs.
ARGS = ["--data=builtin:digits", "--classes=5,6,7", "--backbone=small_cnn",
        f"--weights={SOURCE_WEIGHTS}", "--image_size=32", "--epochs=3", "--lr=0.01",
        "--batch_size=32", "--verbose=0", "--notensorboard", "--noreport"]


@pytest.fixture(scope="module")
def single_device(tmp_path_factory) -> float:
    run_dir = tmp_path_factory.mktemp("single") / "run"
    result = run_cli("train", *ARGS, "--strategy=one_device", f"--run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return json.loads((run_dir / "metrics.json").read_text())["val"]["accuracy"]


@pytest.mark.slow
def test_single_device_learns(single_device):
    assert single_device > 1 / 3 + 0.3


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_matches_single_device(single_device, tmp_path):
    result = run_cli("train", *ARGS, "--strategy=mirrored", "--cpu_devices=2",
                     f"--run_dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    assert "strategy mirrored: MirroredStrategy, 2 replica(s)" in result.stderr
    accuracy = json.loads((tmp_path / "run" / "metrics.json").read_text())["val"]["accuracy"]
    assert abs(accuracy - single_device) < 0.05, (accuracy, single_device)


@pytest.mark.slow
def test_mirrored_accumulation_of_half_batches_trains_like_whole_ones(single_device, tmp_path):
    """--accumulate under 2 replicas (Keras' own fails there, keras-team/keras#20582), through
    both phases: batches of 16 accumulated in pairs learn like the single device's 32."""
    result = run_cli("train", *ARGS, "--strategy=mirrored", "--cpu_devices=2",
                     "--batch_size=16", "--accumulate=2", "--fine_tune_epochs=1",
                     "--fine_tune_lr=0.001", f"--run_dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    accuracy = json.loads((tmp_path / "run" / "metrics.json").read_text())["val"]["accuracy"]
    assert abs(accuracy - single_device) < 0.05, (accuracy, single_device)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(tmp_path, run_dir, args) -> list[subprocess.Popen]:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for index in (1, 0):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(tmp_path),
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "ktransfer.train", *args, "--strategy=multi_worker",
             f"--run_dir={run_dir}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    return workers


@pytest.mark.slow
def test_two_process_multi_worker_run_writes_one_set_of_outputs(single_device, tmp_path):
    """Two workers, one set of outputs; their batches of 16 accumulated in pairs (--accumulate
    across workers) learn like the single device's batches of 32."""
    run_dir = tmp_path / "run"
    workers = _start_workers(tmp_path, run_dir,
                             [*ARGS, "--batch_size=16", "--accumulate=2",
                              f"--export_dir={tmp_path / 'exports' / 'digits'}"])
    outputs = [w.communicate(timeout=480) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    assert "strategy multi_worker: CollectiveAllReduceStrategy, 2 replica(s)" in outputs[1][1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert abs(metrics["val"]["accuracy"] - single_device) < 0.05
    assert sorted(p.name for p in (tmp_path / "exports" / "digits").iterdir()) == ["1"]
    # The non-chief worker wrote into a temporary folder and removed it.
    assert not list(tmp_path.glob("ktransfer-worker-*"))
    assert "the chief (worker 0) writes the outputs" in outputs[0][0]


@pytest.mark.slow
def test_a_killed_multi_worker_run_resumes_on_every_worker(tmp_path):
    """Both workers killed after epoch 2; the same two commands continue from epoch 2: the
    non-chief worker reads the chief's resume state (Keras BackupAndRestore semantics)."""
    import time

    run_dir = tmp_path / "run"
    args = [*(a for a in ARGS if not a.startswith("--epochs")), "--epochs=2",
            "--fine_tune_epochs=4", "--fine_tune_lr=0.001"]
    workers = _start_workers(tmp_path, run_dir, args)
    state = run_dir / "resume" / "state.json"
    deadline = time.time() + 300
    while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 3):
        assert time.time() < deadline and all(w.poll() is None for w in workers)
        time.sleep(0.05)
    for w in workers:
        w.kill()
        w.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert 3 <= killed_at < 6
    workers = _start_workers(tmp_path, run_dir, args)
    outputs = [w.communicate(timeout=480) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert f"after epoch {killed_at}" in err
    rows = (run_dir / "history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 7))
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == {
        "head": 2, "fine_tune": 4}


@pytest.mark.slow
def test_a_worker_that_dies_ends_the_chief_in_one_line_and_the_run_resumes(tmp_path):
    """The non-chief worker is killed mid-run: the chief stops with one line saying how to
    resume (it printed TensorFlow's UnavailableError traceback), and the two commands again
    finish the run from its last epoch."""
    import time

    run_dir = tmp_path / "run"
    args = [*(a for a in ARGS if not a.startswith("--epochs")), "--epochs=2",
            "--fine_tune_epochs=4", "--fine_tune_lr=0.001"]
    other, chief = _start_workers(tmp_path, run_dir, args)  # worker 1, then the chief
    state = run_dir / "resume" / "state.json"
    deadline = time.time() + 300
    while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 3):
        assert time.time() < deadline and chief.poll() is None and other.poll() is None
        time.sleep(0.05)
    other.kill()
    other.wait()
    _, err = chief.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert chief.returncode == 2, err[-3000:]
    assert lines[-1].startswith("ktransfer.train: error: another worker of this multi-worker "
                                "run stopped") and "resumes" in lines[-1]
    assert "Traceback" not in err
    workers = _start_workers(tmp_path, run_dir, args)
    for worker in workers:
        assert worker.wait(timeout=480) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == {
        "head": 2, "fine_tune": 4}


def test_a_lost_worker_is_a_training_error_only_under_multi_worker():
    import tensorflow as tf

    from ktransfer.errors import TrainingError

    lost = tf.errors.UnavailableError(None, None, "Socket closed\nmore")
    with pytest.raises(TrainingError, match=r"^another worker .* \(Socket closed\)"):
        with distribute.lost_workers_as_errors("multi_worker"):
            raise lost
    with pytest.raises(tf.errors.UnavailableError):
        with distribute.lost_workers_as_errors("mirrored"):
            raise lost


@pytest.mark.slow  # bfloat16 is slow on CPU: make test-slow
def test_mixed_bfloat16_trains_on_cpu_with_float32_outputs(tiny_config):
    from ktransfer.training import train

    before = keras.mixed_precision.global_policy().name
    result = train(tiny_config(mixed_precision="mixed_bfloat16", epochs=1, fine_tune_epochs=1,
                               bn_trainable=True))
    model = result.model
    assert any(layer.compute_dtype == "bfloat16" for layer in model.layers)
    assert model.get_layer("logits").compute_dtype == "float32"
    assert model.output.dtype == "float32"
    assert np.isfinite(result.metrics["val"]["loss"])
    assert keras.mixed_precision.global_policy().name == before  # restored


def test_policy_chief_and_strategy_errors(monkeypatch):
    assert distribute.precision_policy(DistributeConfig()) == "float32"  # CPU: auto -> float32
    assert distribute.precision_policy(DistributeConfig(mixed_precision="mixed_float16")) == \
        "mixed_float16"
    cluster = {"worker": ["a:1", "b:2"]}
    for task, chief in (({"type": "worker", "index": 0}, True),
                        ({"type": "worker", "index": 1}, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert distribute.is_chief() is chief
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {**cluster, "chief": ["c:3"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert distribute.is_chief() is False
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.is_chief() is True
    with pytest.raises(ConfigError, match="^--strategy: multi_worker needs TF_CONFIG"):
        distribute.make_strategy(DistributeConfig(strategy="multi_worker"))
