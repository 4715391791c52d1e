"""Evaluation metrics, the evaluate / predict commands, and the HTML run report."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from ktransfer.errors import DataError
from ktransfer.image.imageset import ImageSet
from ktransfer.tasks.single_label import SINGLE_LABEL
from ktransfer.tasks.single_label.presentation import summarize

from conftest import digit_jpeg, error_line, run_cli


def test_summarize_counts_per_class_metrics_and_confident_mistakes():
    names = ["a", "b", "c"]
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.9, .05, .05], [.2, .7, .1], [.1, .8, .1], [.1, .6, .3], [.3, .3, .4],
                      [.6, .3, .1]])
    s = summarize(probs, labels, names, names=np.array([f"f{i}" for i in range(6)]), top_k=2)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    b = s["per_class"][1]
    assert (b["precision"], b["recall"], b["support"]) == (pytest.approx(2 / 3), 1.0, 2)
    assert s["top2_accuracy"] == pytest.approx(5 / 6)  # f5's true class c is third
    assert [m["file"] for m in s["mistakes"]] == ["f1", "f5"]  # 0.7 then 0.6 confident


def test_align_maps_class_names_and_rejects_unknown_classes():
    images = ImageSet(class_names=("b", "a"), labels=np.array([0, 1, 1], np.int32),
                      images=np.zeros((3, 4, 4, 3), np.uint8))
    assert images.align(["a", "b", "c"], SINGLE_LABEL).labels.tolist() == [1, 0, 0]
    with pytest.raises(DataError, match="^--data: class 'b' is not a class of the model"):
        images.align(["a", "c"], SINGLE_LABEL)


@pytest.mark.slow  # a fresh Python that evaluates: make test-slow
def test_evaluate_cli_reproduces_the_runs_test_accuracy(quickstart_run, tmp_path):
    result = run_cli("evaluate", f"--model={quickstart_run}", f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "evaluation.json").read_text())
    metrics = json.loads((quickstart_run / "metrics.json").read_text())
    assert summary["num_examples"] == metrics["num_examples"]["test"]
    assert summary["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert summary["accuracy"] > 0.2 + 0.3  # 5 classes: well above 20 % chance
    for png in ("confusion.png", "per_class.png", "mistakes.png", "gradcam.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"accuracy: {summary['accuracy']:.4f}" in result.stdout


@pytest.mark.slow
def test_predict_cli_lines_csv_json_and_bad_files(quickstart_run, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for index in (5, 6, 7):  # sklearn digits 5, 6, 7: classes of the quickstart model
        digit_jpeg(folder / f"digit{index}.jpg", index)
    result = run_cli("predict", f"--model={quickstart_run}", "--top_k=2", str(folder))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(str(folder / "digit5.jpg"))
    fields = lines[0].split("\t")
    assert len(fields) == 5 and fields[1] in "56789" and 0 <= float(fields[2]) <= 1
    from ktransfer.deploy.prediction import predict_run

    in_python = predict_run(quickstart_run, [str(folder / "digit5.jpg")], top_k=2)
    assert in_python[0].name == str(folder / "digit5.jpg") and \
        [c for c, _ in in_python[0].top_k] == fields[1::2]
    from ktransfer.deploy.prediction import Prediction, format_predictions
    from ktransfer.image.prediction import collect_files

    one = [Prediction("x.jpg", [("5", 0.75), ("6", 0.25)], np.array([0.75, 0.25]))]
    assert json.loads(format_predictions(one, "json")) == [
        {"file": "x.jpg", "top_k": [{"class": "5", "probability": 0.75},
                                    {"class": "6", "probability": 0.25}]}]
    assert format_predictions(one, "csv").splitlines() == [
        "file,class1,probability1,class2,probability2", "x.jpg,5,0.750000,6,0.250000"]
    (folder / "broken.jpg").write_bytes((folder / "digit7.jpg").read_bytes()[:60])
    failed = run_cli("predict", f"--model={quickstart_run}", str(folder))
    assert failed.returncode == 2 and "broken.jpg: not a readable image" in error_line(failed)
    skipped = run_cli("predict", f"--model={quickstart_run}", "--format=csv",
                      "--on_bad_image=skip", str(folder))
    assert skipped.returncode == 0 and len(skipped.stdout.strip().splitlines()) == 4
    assert "skipped 1 unreadable file(s)" in skipped.stderr
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="the folder has no images"):
        collect_files([str(tmp_path / "empty")])


def test_evaluate_on_a_folder_with_a_corrupt_image_is_a_clear_error(quickstart_run, tmp_path):
    for name, index in (("5", 5), ("6", 6)):
        (tmp_path / "data" / name).mkdir(parents=True)
        digit_jpeg(tmp_path / "data" / name / "a.jpg", index)
    (tmp_path / "data" / "6" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = run_cli("evaluate", f"--model={quickstart_run}", f"--data={tmp_path / 'data'}",
                     "--split=all")
    assert result.returncode == 2
    assert "bad.png is not a readable image" in error_line(result)
    assert "Traceback" not in result.stderr


def test_report_html_renders_with_its_plots_in_headless_chromium(quickstart_run, tmp_path):
    """report.html is self-contained (plots embedded) and renders in a real browser."""
    page = (quickstart_run / "report.html").read_text()
    for section in ("Learning curves", "Confusion matrix", "Per class", "Calibration",
                    "Most confident mistakes", "Data", "Run", "finished",
                    "Where the model looks: Grad-CAM", "Flags", "--backbone=small_cnn"):
        assert section in page
    assert page.count("data:image/png;base64,") == 6  # the reliability diagram the 6th
    changed = page.split("Those that differ from the defaults:</p><pre>")[1].split("</pre>")[0]
    assert "--classes=5,6,7,8,9" in changed and "--modality=image" not in changed
    assert "--train_per_class=2" in changed and "every flag (flags.cfg)" in page
    metrics = json.loads((quickstart_run / "metrics.json").read_text())
    assert metrics["class_counts"]["train"] == {str(c): 2 for c in range(5, 10)}
    card = json.loads((quickstart_run / "model_card.json").read_text())
    quality = card["quality"]
    assert quality["low"] <= metrics["test"]["accuracy"] == quality["value"] <= quality["high"]
    assert 0 < quality["high"] - quality["low"] < 0.2 and quality["examples"] == 359
    weakest = min((r for r in json.loads((quickstart_run / "report" / "evaluation.json")
                                         .read_text())["per_class"]), key=lambda r: r["recall"])
    assert card["limits"][0].startswith(f"class `{weakest['class']}`: recall ")
    text = (quickstart_run / "MODEL_CARD.md").read_text()
    assert "95 % interval" in text and "small_cnn" in text and "Fill in" in text
    assert sum(metrics["class_counts"]["test"].values()) == metrics["num_examples"]["test"]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "install Chromium (Debian: apt-get install chromium; `make test` does)"
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1000,1400",
                    (quickstart_run / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape[:2] == (1400, 1000)
    # Plots put colour on the page: many pixels are neither white-ish nor grey text.
    saturation = image.max(axis=2) - image.min(axis=2)
    assert (saturation > 60).mean() > 0.01


@pytest.mark.slow
def test_model_with_code_is_refused_without_unsafe_load(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs).save(tmp_path / "code.keras")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    refused = run_cli("predict", f"--model={tmp_path / 'code.keras'}", str(image))
    assert refused.returncode == 2
    assert "contains code (a Lambda layer named" in error_line(refused)
    assert "--unsafe_load" in error_line(refused)
    allowed = run_cli("predict", f"--model={tmp_path / 'code.keras'}", "--unsafe_load",
                      str(image))
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith(str(image))


def test_scores_from_probabilities_match_keras_evaluate(tiny_config):
    """metrics.json's test figures come from the one prediction pass the report also uses;
    they equal what model.evaluate reports (L2 terms and label smoothing included)."""
    from ktransfer.deploy.prediction import probabilities
    from ktransfer.image.modality import IMAGE
    from ktransfer.tasks.single_label import SINGLE_LABEL
    from ktransfer.training import train

    cfg = tiny_config(epochs=2, l2=0.01, label_smoothing=0.1, head_hidden=[8])
    result = train(cfg)
    test = IMAGE.load_splits(cfg).test
    feed = IMAGE.feed(cfg, type("Net", (), {"model": result.model})())
    keras_says = result.model.evaluate(feed.dataset(test, batch_size=32), return_dict=True,
                                       verbose=0)
    ours = SINGLE_LABEL.scores(probabilities(result.model, feed, test), test.labels,
                               result.model, cfg, {})
    assert ours == pytest.approx(keras_says, rel=1e-5)
    assert result.metrics["test"] == pytest.approx(keras_says, rel=1e-5)


def test_a_run_trained_with_skip_is_evaluated_and_predicted_as_it_was_trained(
        tiny_config, image_folder, tmp_path):
    """evaluate and predict take the run's reading options (here --on_bad_image=skip) unless
    told otherwise; before, their own default (fail) stopped on the file training skipped."""
    from ktransfer import config
    from ktransfer.deploy.prediction import predict_saved
    from ktransfer.errors import KtransferError
    from ktransfer.reporting.evaluation import evaluate_saved
    from ktransfer.training import train

    (image_folder / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    run = train(tiny_config(data=str(image_folder), on_bad_image="skip", report=True)).run_dir
    skipped = json.loads((run / "metrics.json").read_text())["data"]["skipped"]
    assert len(skipped) == 1 and skipped[0].startswith(str(image_folder / "cat" / "broken.png"))
    assert "broken.png (" in (run / "report.html").read_text()  # named in the data section
    summary, _ = evaluate_saved(config.EvaluateConfig(model=str(run), split="test"))
    assert summary["num_examples"] > 0
    text = predict_saved(config.PredictConfig(model=str(run)), [str(image_folder / "cat")])
    assert len(text.strip().splitlines()) == 12  # the 12 good images, the broken one skipped
    with pytest.raises(KtransferError, match="broken.png"):
        predict_saved(config.build_command(config.PredictConfig, model=str(run),
                                           on_bad_image="fail"),
                      [str(image_folder / "cat")])


def test_the_flags_shown_as_changed_are_those_off_the_modalitys_defaults():
    """A text run's recipe is its default, so only what the user set is listed, with the
    modality itself; an image run lists no --modality."""
    from ktransfer import config
    from ktransfer.reporting.report import changed_flags

    text = config.to_flagfile(config.build(modality="text", data="t.csv", epochs=4))
    assert changed_flags(text) == ["--modality=text", "--data=t.csv", "--epochs=4"]
    image = config.to_flagfile(config.build(data="builtin:digits", epochs=30))
    assert changed_flags(image) == ["--data=builtin:digits", "--epochs=30"]
