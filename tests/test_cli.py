"""The real `python -m ktransfer.train` in a subprocess: runs, flag errors, data sources."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import error_line, run_cli


@pytest.mark.parametrize("args, expected", [
    (["--data=builtin:digits", "--epochs=-1"], "--epochs: must be >= 0, got -1"),
    (["--data=builtin:digits", "--backbone=ResNet9000"], "--backbone: unknown backbone"),
    (["--data=/no/such/dir"], "--data: folder '/no/such/dir' does not exist"),
    (["--data=builtin:digits", "--lr_schedule=wavy"], "--lr_schedule"),
    (["--data=builtin:digits", "--no_such_flag=1"], "no_such_flag"),
    (["--data=builtin:digits", "--classes=1,x", "--backbone=small_cnn", "--weights=none"],
     "--classes: class 'x' is not in the data"),
    (["--data=builtin:digits", "--backbone=hub:https://127.0.0.1:9/module/5"],
     "--backbone=hub:https://127.0.0.1:9/module/5: cannot download the module"),
    (["--data=builtin:digits", "--backbone=small_cnn", "--weights=none", "--unfreeze=block7",
      "--fine_tune_epochs=1"], "--unfreeze: 'block7' matches no layer"),
])
def test_bad_flags_fail_with_one_line_naming_the_flag(args, expected, tmp_path):
    result = run_cli("train", *args, f"--run_dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert expected in error_line(result), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing was written


def test_list_backbones():
    result = run_cli("train", "--list_backbones")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert {"VGG16", "ResNet50", "EfficientNetB0", "ConvNeXtTiny", "small_cnn"} <= set(names)


def test_train_on_an_image_folder_prints_accuracies(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", f"--data={image_folder}", "--backbone=small_cnn",
                     "--weights=none", "--image_size=16", "--batch_size=4", "--epochs=0",
                     "--fine_tune_epochs=6", "--fine_tune_lr=0.01", "--bn_trainable",
                     "--val_split=0.25",
                     "--test_split=0.25", "--aug_flip=horizontal", "--verbose=0",
                     f"--run_dir={run_dir}", f"--export_dir={tmp_path / 'exports' / 'colours'}")
    assert result.returncode == 0, result.stderr
    assert "validation accuracy:" in result.stdout and "test accuracy:" in result.stdout
    assert (tmp_path / "exports" / "colours" / "1" / "saved_model.pb").is_file()
    assert (run_dir / "report.html").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["class_names"] == ["bird", "cat", "dog"]
    assert metrics["num_examples"] == {"train": 18, "val": 9, "test": 9}
    # Colour classes are easy: well above 1/3 chance after 6 short epochs from scratch.
    assert metrics["val"]["accuracy"] >= 0.6
    # The resolved flagfile re-runs the same job as is.
    again = run_cli("train", f"--flagfile={run_dir / 'flags.cfg'}", "--overwrite")
    assert again.returncode == 0, again.stderr


def test_train_on_a_tfds_dataset(tfds_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "--data=tfds:tiny_shapes", f"--data_dir={tfds_dir}",
                     "--backbone=small_cnn", "--weights=none", "--image_size=16",
                     "--epochs=2", "--verbose=0", f"--run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["class_names"] == ["red", "green", "blue"]
    assert metrics["num_examples"]["test"] == 12


def test_offline_tfds_fails_fast_with_how_to(tmp_path):
    result = run_cli("train", "--data=tfds:cifar10", f"--data_dir={tmp_path}",
                     "--backbone=small_cnn", "--weights=none", f"--run_dir={tmp_path / 'r'}",
                     timeout=60)
    assert result.returncode == 2
    assert "not found in" in error_line(result) and "--data_dir=DIR" in error_line(result)


def _backbone_weights(run_dir) -> dict[str, object]:
    from ktransfer.classifier import get_backbone
    from ktransfer.saving import load_model

    backbone = get_backbone(load_model(run_dir / "model.keras"))
    return {f"{layer.name}/{w.name}": w.numpy() for layer in backbone.layers
            for w in layer.weights}


def _hub_original(hub_module) -> dict[str, object]:
    from ktransfer.image.hub import HubBackbone

    return {f"hub_module/{w.name}": w.numpy() for w in HubBackbone(str(hub_module)).weights}


def _file_original(path) -> dict[str, object]:
    import keras

    model = keras.saving.load_model(path)
    return {f"{layer.name}/{w.name}": w.numpy() for layer in model.layers for w in layer.weights}


@pytest.fixture(scope="module")
def user_model_file(tmp_path_factory):
    from test_backbones import _user_model

    return _user_model(tmp_path_factory.mktemp("user") / "mine.keras")


@pytest.mark.parametrize("kind", ["hub", "file"])
@pytest.mark.parametrize("phase", ["frozen", "fine_tuned"])
def test_hub_module_and_keras_file_train_frozen_and_fine_tuned(kind, phase, hub_module,
                                                               user_model_file, tmp_path):
    run_dir = tmp_path / "run"
    if kind == "hub":
        backbone_args = [f"--backbone=hub:{hub_module}"]
        original = _hub_original(hub_module)
    else:
        backbone_args = [f"--backbone=file:{user_model_file}", "--backbone_layer=features"]
        original = _file_original(user_model_file)
    epochs = ["--epochs=2"] if phase == "frozen" else ["--epochs=0", "--fine_tune_epochs=2",
                                                       "--fine_tune_lr=0.01"]
    result = run_cli("train", "--data=builtin:digits", "--classes=0,1,2,3", *backbone_args,
                     "--image_size=16", "--lr=0.05", *epochs, "--verbose=0", "--print_model",
                     "--notensorboard", f"--run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert "phase 1 trains" in result.stdout  # --print_model's table
    trained = _backbone_weights(run_dir)
    shared = sorted(set(trained) & set(original))
    assert shared, (sorted(trained), sorted(original))
    changed = {name for name in shared if not np.array_equal(trained[name], original[name])}
    if phase == "frozen":
        assert changed == set()
    else:
        assert changed == {name for name in shared if "kernel" in name or "bias" in name}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] > 0.25 + 0.15  # 4 classes: chance is 0.25
