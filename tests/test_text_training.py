"""Text end to end on a tiny BERT in Hugging Face format: train (cached frozen phase, then
fine-tuning), report, evaluate, predict, export with raw strings in, tune."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config, preflight
from ktransfer.config import EvaluateConfig, SearchConfig, TuneConfig
from ktransfer.deploy.prediction import predict_run, predict_saved
from ktransfer.deploy.saving import open_classifier
from ktransfer.deploy.serving import export
from ktransfer.errors import ConfigError, DataError
from ktransfer.reporting.evaluation import evaluate_saved
from ktransfer.training import train
from ktransfer.tuning import search

from conftest import (
    POSITIVE,
    REPO,
    error_line,
    run_cli,
    sentiment_sentences,
    serve_texts,
    stored_values,
    text_values,
    variable_values,
    write_task_table,
    write_text_folder,
)


def test_fine_tuned_tiny_bert_learns_the_reviews(text_run):
    m = text_run.metrics
    assert m["modality"] == "text" and m["epochs"] == {"head": 3, "fine_tune": 4}
    assert m["num_examples"] == {"train": 144, "val": 48, "test": 48}
    assert m["test"]["accuracy"] > 0.5 + 0.25  # 2 classes: chance is 0.5
    assert m["data"]["truncated"] == {"train": 0, "val": 0, "test": 0}
    run = text_run.run_dir
    assert (run / "preprocessor" / "preprocessor.json").is_file()
    rows = (run / "history.csv").read_text().splitlines()
    assert len(rows) == 1 + 7


def test_report_shows_the_wrong_sentences_as_text(text_run):
    page = (text_run.run_dir / "report.html").read_text()
    assert "Confusion matrix" in page and "Per class" in page
    summary = json.loads((text_run.run_dir / "report" / "evaluation.json").read_text())
    if summary["mistakes"]:  # highlighted by integrated gradients
        assert "<td class='text'><span title=" in page


@pytest.mark.slow  # attributions of a text model: make test-slow
def test_predict_explain_points_at_the_polar_words(text_run, tmp_path):
    """Integrated gradients of the top class: where it is `positive`, the word piece with the
    largest attribution is one of the positive words in nearly every sentence. (`negative` is
    what the model says of the all-zero embedding baseline, so its attributions are small and
    diffuse: integrated gradients measure the change from the baseline.)"""
    texts, _ = sentiment_sentences(20, seed=11)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    out = predict_saved(config.PredictConfig(model=str(text_run.run_dir),
                                             explain=str(tmp_path / "why")),
                        [str(tmp_path / "in.txt")])
    assert len(out.splitlines()) == 20
    rows = [json.loads(line) for line in (tmp_path / "why" / "attributions.jsonl").open()]
    assert len(rows) == 20 and "<span" in (tmp_path / "why" / "attributions.html").read_text()
    positive = [r for r in rows if r["class"] == "positive"]
    hits = sum(r["tokens"][int(np.argmax(r["scores"]))] in POSITIVE for r in positive)
    # The positive words are 2-3 of 5-13 words: a random pick would hit about a quarter.
    assert len(positive) >= 5 and hits >= 0.8 * len(positive), positive[:3]
    with pytest.raises(ConfigError, match="^--explain_layer: is for image models"):
        predict_saved(config.PredictConfig(model=str(text_run.run_dir), explain=str(tmp_path),
                                           explain_layer="x"), [str(tmp_path / "in.txt")])


def test_evaluate_reproduces_the_runs_test_accuracy(text_run, tmp_path):
    summary, _ = evaluate_saved(EvaluateConfig(model=str(text_run.run_dir),
                                               output_dir=str(tmp_path)))
    assert summary["num_examples"] == 48
    assert summary["accuracy"] == pytest.approx(text_run.metrics["test"]["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_predict_reads_flags_files_and_stdin_and_escapes_tabs(text_run, tmp_path):
    lines = tmp_path / "reviews.txt"
    lines.write_text("great superb film\nawful boring plot\n")
    result = run_cli("predict", f"--model={text_run.run_dir}", "--text=a\tbest film",
                     str(lines), "-", "--format=text")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0].startswith("a\\tbest film\t") and len(out) == 3  # the text itself; no stdin
    assert out[1].split("\t")[:2] == ["great superb film", "positive"]
    assert out[2].split("\t")[:2] == ["awful boring plot", "negative"]
    # Standard input: blank lines are skipped (before: the whole batch stopped); each row
    # carries the text and where it came from.
    piped = subprocess.run([sys.executable, "-m", "ktransfer.predict",
                            f"--model={text_run.run_dir}", "--format=json", "-"],
                           input="the worst\tfilm\n\n  \ngreat fun\n", capture_output=True,
                           text=True, cwd=REPO)
    rows = json.loads(piped.stdout)
    assert [(r["text"], r["source"]) for r in rows] == [("the worst\tfilm", "stdin:1"),
                                                       ("great fun", "stdin:4")]
    empty = run_cli("predict", f"--model={text_run.run_dir}", "--text=   ")
    assert empty.returncode == 2 and "--text: empty text" in error_line(empty)


def test_predict_run_answers_python_strings_in_one_line(text_run):
    """A notebook's way: texts in, answers out, the same as the command gives."""
    found = predict_run(text_run.run_dir, ["great superb film", "awful boring plot"], top_k=1)
    assert [(p.name, p.top_k[0][0]) for p in found] == [("great superb film", "positive"),
                                                        ("awful boring plot", "negative")]
    with pytest.raises(DataError, match="non-empty strings"):
        predict_run(text_run.run_dir, ["  "])


@pytest.mark.slow  # a text export: make test-slow
def test_export_takes_raw_strings_and_matches_the_keras_model(text_run, tmp_path):
    clf = open_classifier(text_run.run_dir)
    version = export(clf.model, clf.modality, clf.feed, clf.class_names, tmp_path / "reviews")
    texts = ["a great and lovely film", "the plot was dull, the worst", "it is a film"]
    read = clf.modality.presentation.read_inputs
    expected = clf.model.predict(clf.feed.inputs(
        read([], config.PredictConfig(model="x", text=texts[0])), 8), verbose=0)
    served = serve_texts(version, texts)
    np.testing.assert_allclose(np.array(served["probabilities"])[:1], expected, atol=1e-5)
    assert np.array(served["probabilities"]).shape == (3, 2)
    assert stored_values(version) == variable_values(clf.model)  # each weight once


@pytest.mark.slow  # three exports of a text model: make test-slow
def test_onnx_and_tflite_copies_of_a_text_model_match_the_saved_model(text_run, tmp_path):
    """The token-ids signature converted: each copy, fed the tokenizer shipped beside it,
    gives the SavedModel's probabilities on raw strings."""
    import onnxruntime

    from ktransfer.config import ExportConfig
    from ktransfer.deploy.serving import export_saved
    from ktransfer.text.encoders import load_preprocessor

    texts = ["a great and lovely film", "the plot was dull, the worst", "it is a film"]
    version = export_saved(ExportConfig(run_dir=str(text_run.run_dir), onnx=True,
                                        tflite="float32", export_dir=str(tmp_path / "m")))
    import tensorflow_text  # noqa: F401 (the tokenizer's ops, for the SavedModel)

    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        text=tf.constant(texts))["probabilities"].numpy()
    tokens = {k: np.asarray(v) for k, v in load_preprocessor(version)(texts).items()}
    session = onnxruntime.InferenceSession(str(version / "model.onnx"))
    feeds = {i.name: tokens[i.name].astype("int32") for i in session.get_inputs()}
    np.testing.assert_allclose(session.run(["probabilities"], feeds)[0], served, atol=1e-5)
    runner = tf.lite.Interpreter(model_path=str(version / "model.tflite")
                                 ).get_signature_runner("predict_tokens")
    lite = runner(**{k: v.astype("int32") for k, v in tokens.items()})["probabilities"]
    np.testing.assert_allclose(lite, served, atol=1e-5)
    report = json.loads((version / "conversions.json").read_text())
    assert report["onnx"]["within_limit"] and report["tflite"]["within_limit"]
    assert report["test_examples"] > 0


def test_tflite_metadata_for_a_text_model_is_refused_before_any_export(text_run, tmp_path):
    from ktransfer.config import ExportConfig
    from ktransfer.deploy.serving import export_saved
    from ktransfer.errors import KtransferError

    with pytest.raises(KtransferError, match="^--tflite_metadata: describes an image "
                                             "classifier"):
        export_saved(ExportConfig(run_dir=str(text_run.run_dir), tflite="float32",
                                  tflite_metadata=True, export_dir=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()


@pytest.mark.slow  # a search of several runs: make test-slow
def test_tune_searches_the_head_on_cached_embeddings(tiny_bert, tmp_path):
    run = config.build(**text_values(tmp_path, tiny_bert, epochs=3, cache_features=True))
    result = search(SearchConfig(run=run, tune=TuneConfig(
        max_trials=2, directory=str(tmp_path / "tuning"), hp_layers=1, hp_units=(16,))))
    assert result.cached and len(result.trials) == 2
    assert "--modality=text" in result.best_flagfile.read_text()


@pytest.mark.slow
def test_domain_adaptation_runs_on_text(text_run, tmp_path, tiny_bert):
    """MMD adaptation with unlabelled target texts: source and target go through the encoder
    in separate passes (token inputs of their own lengths); target accuracy is reported. With
    L2-SP (sparse embedding gradients included) and the weight average on."""
    target = write_text_folder(tmp_path / "target", 40, seed=7)
    values = text_values(tmp_path, tiny_bert, data=str(write_text_folder(tmp_path / "s", 80)),
                         init_from=str(text_run.run_dir), epochs=0, fine_tune_epochs=1,
                         fine_tune_lr=1e-3, target_data=str(target),
                         target_eval_data=str(target), mmd_alignment="class",
                         mmd_weight=0.3, dropout=0.0, l2sp="0.01", ema=0.5)
    adapted = train(config.build(**values)).metrics["adaptation"]
    assert adapted["num_target_images"] == 40 and adapted["mmd_weight"] == 0.3
    assert 0.0 <= adapted["mmd_after"] and adapted["target_accuracy"] > 0.5 + 0.15


def test_image_augmentation_flags_are_refused_for_text(tiny_bert, tmp_path):
    cfg = config.build(**text_values(tmp_path, tiny_bert, aug_mixup=0.2))
    with pytest.raises(ConfigError, match="^--aug_mixup: is a flag of --modality=image; this "
                                          "run is --modality=text"):
        preflight.check_train(cfg)
    assert not (tmp_path / "run").exists()


TOPICS = {
    "sport": ["the striker scored a late goal", "our team won the match on penalties",
              "the runner broke the record in the final lap", "fans cheered the keeper's save",
              "the coach picked a new captain for the season"],
    "cooking": ["simmer the onions in butter until soft", "bake the bread for forty minutes",
                "season the soup with salt and fresh herbs", "whisk the eggs with sugar",
                "roast the vegetables with garlic and olive oil"],
    "computers": ["the laptop needs more memory to compile",
                  "reboot the server after the update",
                  "the program crashed with a segmentation fault",
                  "install the new graphics driver", "the database query ran slowly on the disk"],
}


def _topic_table(path: Path, per_topic: int = 20) -> Path:
    """A CSV of `per_topic` short texts per topic, as a user's own small data might be."""
    rng = np.random.default_rng(0)
    openers = ["", "today ", "I think ", "apparently ", "yesterday "]
    rows = [(f"{openers[i % 5]}{TOPICS[t][rng.integers(5)]}", t)
            for t in TOPICS for i in range(per_topic)]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


@pytest.mark.assets
def test_the_text_defaults_learn_a_users_small_table(tmp_path):
    """Only --modality=text and --data: the packaged MiniLM and the text recipe learn 60
    texts in 3 topics (chance 33 %) to at least 80 % test accuracy."""
    table = _topic_table(tmp_path / "texts.csv")
    result = train(config.build(modality="text", data=str(table), verbose=0, tensorboard=False,
                                run_dir=str(tmp_path / "run")))
    assert result.metrics["network"]["encoder"] == "minilm"
    assert result.metrics["epochs"]["fine_tune"] > 0
    assert result.metrics["test"]["accuracy"] >= 0.8, result.metrics["test"]


@pytest.mark.assets
def test_multi_label_fine_tuning_of_minilm_runs_past_its_second_epoch(tmp_path):
    """Grappler's AddN rewrite once failed the second fine-tuning epoch of a multi-label
    MiniLM (AlreadyExistsError: .../AddOpsRewrite_add_26/tmp_var); training turns it off."""
    table = write_task_table(tmp_path / "reviews.csv", 300)
    result = train(config.build(modality="text", data=str(table), task="multi_label",
                                label_column="tags", epochs=2, fine_tune_epochs=2,
                                early_stopping=0, verbose=0, tensorboard=False,
                                run_dir=str(tmp_path / "run")))
    assert result.metrics["epochs"] == {"head": 2, "fine_tune": 2}
