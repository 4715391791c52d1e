"""The task seam: every registered task meets the `Task` contract (reading, splitting, the
output layer, loss and metrics, scores, evaluation, answers, serving), and multi-label and
regression runs train, resume, evaluate, predict, export and tune end to end on text and image
tables."""

from __future__ import annotations

import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.metrics import f1_score

from ktransfer import config, preflight
from ktransfer.config import ModelConfig, SearchConfig, TuneConfig
from ktransfer.deploy.prediction import predict_saved
from ktransfer.deploy.saving import open_classifier
from ktransfer.deploy.serving import export, export_saved
from ktransfer.deploy.warmup import read_warmup
from ktransfer.errors import ConfigError, DataError
from ktransfer.reporting.evaluation import describe, evaluate_saved
from ktransfer.tasks import TASKS
from ktransfer.tasks.losses import AsymmetricLoss
from ktransfer.tasks.multi_label import MULTI_LABEL
from ktransfer.tasks.multi_label.core import best_thresholds, iterative_split
from ktransfer.tasks.single_label import SINGLE_LABEL
from ktransfer.tasks.task import read_state
from ktransfer.training import train
from ktransfer.tuning import search

from conftest import (
    error_line,
    run_cli,
    serve_texts,
    tagged_sentences,
    text_values,
    tiny_values,
    train_killed_after,
    write_digit_table,
    write_task_table,
)

ASSET_WEIGHTS = "ktransfer/assets/digits04_small_cnn.weights.h5"  # small_cnn trained on 0-4
MISTAKE_KEYS = {"index", "file", "true", "predicted", "how", "output", "confidence"}


def _values(task: str, n: int, rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """(label values as a table holds them, features [n, 8] that predict them)."""
    x = rng.normal(size=(n, 8)).astype(np.float32)
    if task == "single_label":
        return [("low", "mid", "high")[int(v)] for v in np.digitize(x[:, 0], [-0.4, 0.4])], x
    if task == "multi_label":
        return ["|".join([n for n, on in (("a", x[i, 0] > 0), ("b", x[i, 1] > 0.3),
                                           ("c", x[i, 2] > -0.3)) if on] or ["none"])
                for i in range(n)], x
    if task == "regression":
        return [f"{3.0 * x[i, 0] - 2.0 * x[i, 1] + 50.0:.4f}" for i in range(n)], x
    raise AssertionError(f"task {task!r}: add label values for it to tests/test_tasks.py")


def test_every_task_is_what_the_data_layer_asks_of_a_task():
    """The data layer declares what it needs of a task (`data.targets.Targets`) instead of
    importing the tasks above it; every registered task provides it."""
    from ktransfer.data.targets import Targets

    assert all(isinstance(TASKS.get(name), Targets) for name in TASKS.names())


@pytest.mark.parametrize("name", TASKS.names())
def test_every_tasks_declared_names_agree(name):
    """What a task declares is consistent: its per-epoch metrics are monitors, and the
    objective a tuner scores trials by is one (val_OBJECTIVE is in every epoch's logs)."""
    task = TASKS.get(name)
    assert set(task.epoch_metrics) <= set(task.monitors)
    assert not task.objective or task.objective in (*task.monitors, "loss")


@pytest.mark.parametrize("name,loss", [  # a task's other losses: make test-slow
    pytest.param(name, loss, marks=[pytest.mark.slow] if loss != "auto" else [])
    for name in TASKS.names() for loss in TASKS.get(name).losses
    if TASKS.get(name).geometry is None])
def test_every_task_meets_the_contract(name, loss, tmp_path):
    """With every loss it takes, a task of whole examples reads, splits, trains a tiny model
    past its trivial predictor, scores, summarises, answers and serves. (Tasks with targets in
    the image plane train on images: tests/test_geometry.py, tests/test_detection.py.)"""
    task, rng = TASKS.get(name), np.random.default_rng(0)
    values, x = _values(name, 240, rng)
    where = [f"t.csv:{i + 2}" for i in range(len(values))]
    cfg = config.build(data="t.csv", task=name, loss=loss)
    names, targets = task.parse(values, where, cfg.group("task"), "data", "label")
    assert len(targets) == 240 and all(isinstance(task.target_text(t, names), str)
                                       for t in targets[:5])
    kept, held = task.split(targets, 0.25, seed=0)
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == 240
    assert 0.15 < len(held) / 240 < 0.35
    task.check_splits(targets[kept], targets[held], names)
    outputs = task.outputs(names)
    model = _tiny_model(task, outputs)
    task.prepare(model, targets[kept])
    model.compile(optimizer=keras.optimizers.Adam(0.03), loss=task.loss(cfg),
                  metrics=task.metrics(outputs))
    data = tf.data.Dataset.from_tensor_slices((x[kept], targets[kept])).map(
        lambda a, y: (a, task.encode(y, outputs))).batch(16)
    model.fit(data, epochs=30, verbose=0)
    logged = model.evaluate(data, return_dict=True, verbose=0)
    assert {"loss", task.monitors[0]} <= set(logged)
    out = model.predict(x[held], verbose=0)
    assert out.shape == (len(held), outputs)
    state = task.fit(out, targets[held], cfg.group("task"))
    scores = task.scores(out, targets[held], model, cfg, state)
    assert {"loss", task.headline, task.objective} <= set(scores)
    quality, what = task.baseline(targets[kept], targets[held])
    assert task.quality(out, targets[held], state) > quality + 0.3, what  # it learned
    shown = task.presentation
    summary = shown.summarize(out, targets[held], names, None, 3, state)
    json.dumps([state, summary])  # what task.json and evaluation.json hold
    assert summary["num_examples"] == len(held) and summary[task.headline] == pytest.approx(
        scores[task.headline])
    assert all(MISTAKE_KEYS <= set(m) for m in summary["mistakes"])
    assert all(isinstance(line, str) for line in shown.lines(summary, 3))
    assert "<img" in shown.sections(summary, tmp_path)
    rows = task.answers(out, list(names), 2, state)
    assert len(rows) == len(held) and all(isinstance(n, str) for r in rows for n, _ in r)
    json.dumps(task.extras(out, list(names), state))  # predict's JSON holds them
    assert len(task.extras(out, list(names), state)) == len(held)
    served = task.serving(tf.constant(out), list(names), 2, state)
    assert all(v.shape[0] == len(held) for v in served.values())
    np.testing.assert_allclose(np.reshape(served[task.output_key], out.shape), out)
    assert task.higher_is_better(task.headline) == (task.headline not in task.minimize)


def _tiny_model(task, outputs: int) -> keras.Model:
    inputs = keras.Input((8,))
    features = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, task.output(features, outputs, ModelConfig(dropout=0.0)))


def test_every_task_is_refused_where_it_makes_no_sense(tmp_path):
    """One line naming the flag, before any work."""
    table = str(write_task_table(tmp_path / "t.csv", 40))
    for task, flags, flag in (("regression", {"class_weights": "balanced"}, "class_weights"),
                              ("regression", {"label_smoothing": 0.1}, "label_smoothing"),
                              ("regression", {"monitor": "val_accuracy"}, "monitor"),
                              ("multi_label", {"loss": "huber"}, "loss"),
                              ("multi_label", {"target_data": table}, "target_data"),
                              ("multi_label", {"coverage": 0.9}, "coverage"),
                              ("single_label", {"loss": "asymmetric"}, "loss"),
                              ("multi_label", {"loss": "asymmetric", "label_smoothing": 0.1},
                               "label_smoothing"),
                              ("regression", {"abstain_rate": 0.05}, "abstain_rate"),
                              ("single_label", {"monitor": "val_mae"}, "monitor")):
        with pytest.raises(ConfigError, match=f"--{flag}"):
            preflight.check_train(config.build(modality="text", data=table, task=task,
                                               **flags))


def test_bad_label_values_name_the_file_and_line(tmp_path, tiny_bert):
    table = tmp_path / "t.csv"
    table.write_text("text,tags,score\ngood film,praise,3\nbad film,complaint|,oops\n")
    for task, column, wanted in (("regression", "score", "t.csv:3: score 'oops' is not a "
                                  "finite number"),
                                 ("multi_label", "tags", "t.csv:3: empty label")):
        cfg = config.build(**text_values(tmp_path, tiny_bert, data=str(table), task=task,
                                         label_column=column))
        with pytest.raises(DataError, match=wanted):
            train(cfg)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "good", "label": ["a", "b"]}\n')
    with pytest.raises(DataError, match="t.jsonl:1: label holds a list .*--task=multi_label"):
        train(config.build(**text_values(tmp_path, tiny_bert, data=str(jsonl))))


def test_a_numeric_column_read_as_classes_says_how_to_regress(caplog):
    """A score column under the default task is many classes named by numbers: warned."""
    values = [f"{v:.1f}" for v in np.random.default_rng(0).normal(50, 10, 200)]
    with caplog.at_level("WARNING"):
        SINGLE_LABEL.parse(values, [f"t.csv:{i}" for i in range(200)], None, "data", "score")
    assert "--task=regression" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # class ids that are numbers are fine
        SINGLE_LABEL.parse([str(i % 10) for i in range(200)], ["t.csv"] * 200, None, "data")
    assert "--task=regression" not in caplog.text


def test_iterative_split_puts_every_label_on_both_sides():
    rng = np.random.default_rng(1)
    targets = (rng.random((200, 12)) < np.linspace(0.02, 0.5, 12)).astype(np.float32)
    kept, held = iterative_split(targets, 0.2, seed=0)
    for label in np.flatnonzero(targets.sum(axis=0) >= 2):
        assert targets[kept, label].any() and targets[held, label].any()
    assert abs(len(held) - 40) <= 8
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(200))


def test_thresholds_are_chosen_for_the_best_f1():
    outputs = np.array([[0.9], [0.8], [0.35], [0.3], [0.1]])
    targets = np.array([[1], [1], [1], [0], [0]], np.float32)
    (threshold,) = best_thresholds(outputs, targets)
    assert 0.3 < threshold < 0.35  # all three positives, no negative
    assert MULTI_LABEL.quality(outputs, targets, {"thresholds": [threshold]}) == 1.0
    assert MULTI_LABEL.quality(outputs, targets, {}) < 1.0  # at 0.5 one is missed


def test_macro_f1_averages_the_present_labels_f1_as_sklearn_computes_each():
    """Each present label's F1 (sklearn's, per label) averaged; one present label is that
    label's F1 (sklearn's macro over a single column averaged in the negatives' F1 too)."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        n, k = int(rng.integers(2, 40)), int(rng.integers(1, 5))
        targets = (rng.random((n, k)) < rng.random(k)).astype("float32")
        outputs = rng.random((n, k))
        state = {"thresholds": list(rng.random(k))} if trial % 2 else {}
        truth = targets > 0.5
        decided = outputs >= np.array(state.get("thresholds") or [0.5] * k)
        per_label = [f1_score(truth[:, j], decided[:, j], zero_division=0)
                     for j in range(k) if truth[:, j].any()]
        expected = float(np.mean(per_label)) if per_label else 0.0
        assert MULTI_LABEL.quality(outputs, targets, state) == pytest.approx(expected), trial


def test_single_label_class_weights_balanced():
    labels = np.array([0] * 30 + [1] * 10 + [2] * 20)
    weights = SINGLE_LABEL.class_weights(labels, ("a", "b", "c", "d"), "balanced")
    assert weights[0] == pytest.approx(60 / (3 * 30))
    assert weights[1] == pytest.approx(60 / (3 * 10))
    assert weights[3] == 0.0
    total = sum(weights[c] * n for c, n in enumerate(np.bincount(labels, minlength=4)))
    assert total == pytest.approx(len(labels))


def test_explicit_class_weights_by_name_from_the_flag_or_a_file(tmp_path):
    labels, names = np.array([0, 1, 2]), ("cat", "dog", "eel")
    assert SINGLE_LABEL.class_weights(labels, names, "dog=4.5, eel=0") == \
        {0: 1.0, 1: 4.5, 2: 0.0}
    listed = tmp_path / "weights.txt"
    listed.write_text("# rare classes count more\ndog=3\neel = 2\n")
    assert SINGLE_LABEL.class_weights(labels, names, str(listed)) == {0: 1.0, 1: 3.0, 2: 2.0}
    as_json = tmp_path / "weights.json"
    as_json.write_text('{"cat": 0.5}')
    assert SINGLE_LABEL.class_weights(labels, names, str(as_json))[0] == 0.5
    with pytest.raises(ConfigError, match="--class_weights: 'cow' is not a class of the data"):
        SINGLE_LABEL.class_weights(labels, names, "cow=2")
    listed.write_text("dog=3\neel=many\n")
    with pytest.raises(ConfigError, match=r"weights.txt:2: 'eel=many': give name=weight"):
        preflight.check_train(config.build(data="builtin:digits", class_weights=str(listed)))
    with pytest.raises(ConfigError, match="--class_weights: 'dog=-1'"):
        config.build(data="builtin:digits", class_weights="cat=1,dog=-1")
    with pytest.raises(ConfigError, match="--class_weights: cannot read 'nowhere.txt'"):
        preflight.check_train(config.build(data="builtin:digits", class_weights="nowhere.txt"))


@pytest.mark.slow  # two runs: make test-slow
def test_explicit_class_weights_steer_what_a_run_learns(tmp_path):
    """Digits 0-4 with the weights of 0 and 1 at zero: the model learns never to say them,
    and the others well."""
    cfg = config.build(**tiny_values(tmp_path, weights=ASSET_WEIGHTS, image_size=32,
                                     classes=("0", "1", "2", "3", "4"), epochs=10, lr=0.01,
                                     class_weights="0=0,1=0", report=True))
    train(cfg)
    rows = json.loads((tmp_path / "run" / "report" / "evaluation.json").read_text())
    recall = {r["class"]: r["recall"] for r in rows["per_class"]}
    assert recall["0"] + recall["1"] < 0.4 and min(recall["2"], recall["3"], recall["4"]) > 0.7


# End to end on a text table ---------------------------------------------------------------

def _task_run(tmp_path_factory, tiny_bert, task: str, column: str, **extra):
    tmp = tmp_path_factory.mktemp(task)
    table = write_task_table(tmp / "reviews.csv", 400)
    cfg = config.build(**text_values(tmp, tiny_bert, data=str(table), task=task,
                                     label_column=column, epochs=3, lr=0.05,
                                     cache_features=True, fine_tune_epochs=8,
                                     fine_tune_lr=3e-3, dropout=0.0, report=True, **extra))
    return train(cfg)


@pytest.fixture(scope="module")
def tags_run(tmp_path_factory, tiny_bert):
    """A multi-label run on 400 reviews tagged praise / complaint and music."""
    return _task_run(tmp_path_factory, tiny_bert, "multi_label", "tags")


@pytest.fixture(scope="module")
def score_run(tmp_path_factory, tiny_bert):
    """A regression run on the same reviews' scores (-3..3), with 80% conformal intervals."""
    return _task_run(tmp_path_factory, tiny_bert, "regression", "score", coverage=0.8)


@pytest.mark.slow  # 400 texts, 8 fine-tuning epochs: make test-slow
def test_multi_label_run_beats_giving_every_label(tags_run):
    m = tags_run.metrics
    assert m["task"] == "multi_label" and m["headline"] == "macro_f1"
    assert m["class_names"] == ["complaint", "music", "praise"]
    rates = np.array([0.5, 0.4, 0.5])  # every label given: F1 = 2p / (1 + p)
    assert m["test"]["macro_f1"] > float(np.mean(2 * rates / (1 + rates))) + 0.2
    state = read_state(tags_run.run_dir)
    assert state["task"] == "multi_label" and len(state["thresholds"]) == 3
    page = (tags_run.run_dir / "report.html").read_text()
    assert "Precision-recall curves" in page and "Confusion matrix" not in page


@pytest.mark.slow  # 400 texts, 8 fine-tuning epochs: make test-slow
def test_regression_run_beats_the_training_mean(score_run):
    m = score_run.metrics
    assert m["task"] == "regression" and m["class_names"] == ["score"]
    assert m["test"]["r2"] > 0.5  # the training mean scores about 0
    _, scores = tagged_sentences(400)[1:]
    assert m["test"]["mae"] < 0.75 * np.mean(np.abs(np.array(scores) - np.mean(scores)))
    assert "Predicted against true" in (score_run.run_dir / "report.html").read_text()
    assert m["test"]["coverage_asked"] == 0.8 and m["test"]["interval_coverage"] > 0.6
    assert 0 < m["test"]["interval_width"] < 6  # narrower than the scores' range
    # What the summary says it means (ce06f12 said only "test mae: ..."): R² with its
    # interval and the mean predictor's R² beside it.
    from ktransfer.train import summary

    q = m["quality"]
    assert q["metric"] == "R²" and q["low"] <= q["value"] == m["test"]["r2"] <= q["high"]
    assert q["baseline_is"].startswith("always predicting the training mean")
    assert abs(q["baseline"]) < 0.1
    assert "what it means: test R² " in summary(score_run, report=True)


@pytest.mark.slow  # the two 400-text runs above: make test-slow
@pytest.mark.parametrize("which", ["tags_run", "score_run"])
def test_task_runs_evaluate_predict_and_export_alike(which, request, tmp_path):
    """evaluate reproduces the run's test metric; predict answers in the task's terms; the
    SavedModel's signature returns what the in-memory model and `predict` say."""
    run = request.getfixturevalue(which)
    clf = open_classifier(run.run_dir)
    summary, _ = evaluate_saved(config.EvaluateConfig(model=str(run.run_dir), split="test"))
    headline = run.metrics["headline"]
    assert summary[headline] == pytest.approx(run.metrics["test"][headline], abs=1e-6)
    assert describe(summary)[0].startswith("examples:")
    texts = ["a great and lovely film with music", "the plot was dull, the worst"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    rows = json.loads(predict_saved(config.PredictConfig(model=str(run.run_dir), format="json"),
                                    [str(tmp_path / "in.txt")]))
    version = export(clf.model, clf.modality, clf.feed, clf.class_names, tmp_path / "m",
                     state=clf.state)
    served = serve_texts(version, texts)
    if which == "score_run":
        assert [r["values"][0]["target"] for r in rows] == ["score", "score"]
        np.testing.assert_allclose(served["value"], [r["values"][0]["value"] for r in rows],
                                   atol=1e-4)
        assert served["value"][0] > 0 > served["value"][1]  # praise scores up, complaints down
        np.testing.assert_allclose(np.stack([served["lower"], served["upper"]], axis=1),
                                   [r["interval"] for r in rows], atol=1e-4)
    else:
        picked = [[clf.class_names[j] for j, on in enumerate(p) if on]
                  for p in served["predicted"]]
        assert picked == [sorted(r["label"] for r in row["labels"]) for row in rows]
        assert "praise" in picked[0] and "complaint" in picked[1]
        thresholds = dict(zip(clf.class_names, clf.state["thresholds"], strict=True))
        for row in rows:  # each answer beside the threshold it passed (not shown on ce06f12)
            assert row["thresholds"] == [round(thresholds[r["label"]], 4) for r in row["labels"]]
            assert all(r["probability"] >= t for r, t in zip(row["labels"], row["thresholds"],
                                                             strict=True))
    assert read_state(version) == read_state(run.run_dir)


@pytest.mark.slow  # a search of several runs: make test-slow
def test_tune_scores_regression_trials_by_their_lowest_error(tiny_bert, tmp_path):
    table = write_task_table(tmp_path / "reviews.csv", 120)
    run = config.build(**text_values(tmp_path, tiny_bert, data=str(table), task="regression",
                                     label_column="score", epochs=3, cache_features=True))
    result = search(SearchConfig(run=run, tune=TuneConfig(
        max_trials=2, directory=str(tmp_path / "tuning"), hp_layers=1, hp_units=(16,))))
    scores = [t["val_mae"] for t in result.trials]
    assert len(scores) == 2 and scores[0] == min(scores)  # val_mae: lower first
    flags = result.best_flagfile.read_text()
    assert "--task=regression" in flags and "--label_smoothing=0.0" in flags
    preflight.check_train(config.from_flagfile(result.best_flagfile))


def test_a_bad_label_is_one_line_from_the_cli(tmp_path, tiny_bert):
    table = tmp_path / "t.csv"
    table.write_text("text,score\ngood film,3\nbad film,n/a\n")
    result = run_cli("train", "--modality=text", f"--data={table}", "--task=regression",
                     "--label_column=score", f"--backbone=kerashub:{tiny_bert}",
                     f"--run_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert error_line(result).endswith(f"--data: {table}:3: score 'n/a' is not a finite "
                                       "number; --task=regression needs a number in every row")
    assert not (tmp_path / "run").exists()


# End to end on an image table ---------------------------------------------------------------



def _image_values(tmp, task: str, column: str, **overrides) -> dict:
    table = overrides.pop("data", None) or write_digit_table(tmp / "digits", 300)
    return tiny_values(tmp, data=str(table), task=task, label_column=column, image_size=32,
                       weights=ASSET_WEIGHTS, epochs=10, lr=0.01, batch_size=16, report=True,
                       **overrides)


@pytest.fixture(scope="module")
def digit_tags_run(tmp_path_factory):
    """A multi-label image run: which of the digits 0-4 an image of one or two shows."""
    tmp = tmp_path_factory.mktemp("digit_tags")
    return train(config.build(**_image_values(tmp, "multi_label", "digits")))


def test_multi_label_images_beat_each_labels_base_rate(digit_tags_run):
    m = digit_tags_run.metrics
    assert m["class_names"] == ["0", "1", "2", "3", "4"]
    # each digit is in about 36% of images: giving every label scores F1 2p / (1 + p) = 0.53
    assert m["test"]["macro_f1"] > 0.53 + 0.2 and m["test"]["map"] > 0.8
    assert "Precision-recall curves" in (digit_tags_run.run_dir / "report.html").read_text()


def test_multi_label_image_export_serves_bytes_with_the_runs_thresholds(digit_tags_run,
                                                                         tmp_path):
    """TF Serving's input (encoded image bytes) gives what the Keras model and `predict`
    give: each digit's probability and the digits above their thresholds."""
    run = digit_tags_run.run_dir
    version = export_saved(config.ExportConfig(run_dir=str(run), export_dir=str(tmp_path / "m"),
                                               formats=("tflite",)))
    files = sorted((run.parent / "digits").glob("*.png"))[:6]
    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        image_bytes=tf.constant([f.read_bytes() for f in files]))
    rows = json.loads(predict_saved(config.PredictConfig(model=str(run), format="json"),
                                    [str(f) for f in files]))
    clf = open_classifier(run)
    names = [[n.decode() for n in row if n] for row in served["predicted_names"].numpy()]
    assert names == [sorted(r["label"] for r in row["labels"]) for row in rows]
    assert json.loads((version / "conversions.json").read_text())["tflite"]["within_limit"]
    assert "label `" in (version / "MODEL_CARD.md").read_text()  # the run's card, copied
    # TF Serving's warm-up: real test images as requests it parses, answered by the signature
    warm = read_warmup(version)
    assert [r.model_spec.signature_name for r in warm] == ["serving_default"] * 2
    sent = tf.make_ndarray(warm[-1].inputs["image_bytes"])
    assert len(sent) == 8 and all(Image.open(io.BytesIO(b)).size for b in sent)
    answered = tf.saved_model.load(str(version)).signatures["serving_default"](
        image_bytes=tf.constant(sent))
    assert answered["probabilities"].shape == (8, 5)
    assert (version.parent.parent / "batching.config").read_text().startswith("max_batch_size")
    assert read_state(version)["thresholds"] == read_state(run)["thresholds"] == \
        clf.state["thresholds"]


@pytest.mark.slow  # a kill and resume: make test-slow
def test_regression_on_images_resumes_after_a_kill_and_beats_the_mean(tmp_path, monkeypatch):
    """The sum of the digits shown, predicted from the image; killed after 4 epochs, the same
    command resumes at epoch 5 and finishes; the export (and its ONNX copy) answers in the
    target's units."""
    cfg = config.build(**_image_values(tmp_path, "regression", "value"))
    train_killed_after(4, cfg, monkeypatch)
    result = train(cfg)
    history = (result.run_dir / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == [str(e) for e in range(1, 11)]
    m = result.metrics
    assert m["test"]["r2"] > 0.3 and m["test"]["pearson"] > 0.6  # the mean: R² about 0
    files = sorted((tmp_path / "digits").glob("*.png"))[:4]
    version = export_saved(config.ExportConfig(run_dir=str(result.run_dir),
                                               export_dir=str(tmp_path / "m"),
                                               formats=("onnx",)))
    onnx = json.loads((version / "conversions.json").read_text())["onnx"]
    assert onnx["within_limit"] and onnx["accuracy"] > 0.3  # the R² of the ONNX copy
    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        image_bytes=tf.constant([f.read_bytes() for f in files]))
    rows = json.loads(predict_saved(config.PredictConfig(model=str(result.run_dir),
                                                         format="json"), [str(f) for f in files]))
    np.testing.assert_allclose(served["value"].numpy(),
                               [r["values"][0]["value"] for r in rows], atol=1e-4)


def test_image_tables_name_a_missing_file_by_its_line(tmp_path):
    table = write_digit_table(tmp_path / "digits", 10)
    (tmp_path / "digits" / "003.png").unlink()
    with pytest.raises(DataError, match=r"digits.csv:5: image file '003.png' not found"):
        train(config.build(**_image_values(tmp_path, "multi_label", "digits", data=str(table))))


def test_asymmetric_loss_discards_easy_negatives_and_reloads():
    """Below the margin an absent label costs nothing; a confident miss of a present label
    costs as cross-entropy does; the loss survives saving a compiled model."""
    loss = AsymmetricLoss(gamma_neg=4.0, clip=0.05)
    y = np.array([[1.0, 0.0, 0.0]])
    easy = float(loss(y, np.array([[0.9, 0.04, 0.01]])))
    assert easy == pytest.approx(-np.log(0.9) / 3, rel=1e-4)  # negatives under the margin: 0
    hard = float(loss(y, np.array([[0.9, 0.9, 0.01]])))
    assert hard > easy + 0.05
    bce = float(keras.losses.BinaryCrossentropy()(y, np.array([[0.9, 0.3, 0.01]])))
    assert float(loss(y, np.array([[0.9, 0.3, 0.01]]))) < bce  # a soft negative is damped
    copy = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(copy, AsymmetricLoss) and copy.get_config() == loss.get_config()


def test_each_task_names_its_targets_in_the_log():
    """A regression run logged "1 classes" on ce06f12."""
    assert SINGLE_LABEL.target_words(("cat", "dog")) == "2 classes"
    assert MULTI_LABEL.target_words(("a", "b", "c")) == "3 labels"
    assert TASKS.get("regression").target_words(("score",)) == "target score"
