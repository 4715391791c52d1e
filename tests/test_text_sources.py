"""Reading texts: class folders of .txt files, CSV / TSV / JSON-lines tables, the bad-text
policy, and the built-in human-rated sentiment sets."""

from __future__ import annotations

import numpy as np
import pytest

from ktransfer import config
from ktransfer.errors import DataError
from ktransfer.text import builtin
from ktransfer.text.modality import TEXT
from ktransfer.text.sources import open_source

from conftest import write_text_folder


def _cfg(data: str, **values):
    return config.build(modality="text", data=data, **values)


def test_a_folder_of_class_folders_is_read_with_sorted_class_names(tmp_path):
    root = write_text_folder(tmp_path / "reviews", n=10)
    texts = open_source(str(root), _cfg(str(root)))["all"]
    assert texts.class_names == ("negative", "positive") and len(texts) == 10
    assert np.bincount(texts.labels).tolist() == [5, 5]
    assert texts.names()[0].endswith("negative/000.txt")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_tables_read_their_columns(tmp_path, suffix):
    rows = [("Great, fun film!", "pos"), ('He said "no"\tthen left', "neg"), ("Fine.", "pos")]
    path = tmp_path / f"reviews{suffix}"
    if suffix == ".jsonl":
        import json

        path.write_text("".join(json.dumps({"review": t, "y": y}) + "\n" for t, y in rows))
    else:
        import csv

        with open(path, "w", newline="") as f:
            writer = csv.writer(f, delimiter="," if suffix == ".csv" else "\t")
            writer.writerow(["y", "review"])
            writer.writerows([(y, t) for t, y in rows])
    texts = open_source(str(path), _cfg(str(path), text_column="review",
                                        label_column="y"))["all"]
    assert [str(t) for t in texts.texts] == [t for t, _ in rows]
    assert texts.class_names == ("neg", "pos") and texts.labels.tolist() == [1, 0, 1]


def test_a_missing_column_names_the_file_and_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("sentence,label\nnice,pos\n")
    with pytest.raises(DataError, match=r"^--data: .*r.csv:1: no 'text' column \(it has "
                                        r"sentence, label\); name yours with --text_column"):
        open_source(str(path), _cfg(str(path)))


@pytest.mark.parametrize("content, why", [(b"   \n", "empty"), (b"caf\xe9 au lait", "UTF-8")])
def test_bad_texts_stop_the_run_or_are_skipped_and_counted(tmp_path, content, why):
    root = write_text_folder(tmp_path / "reviews", n=6)
    (root / "positive" / "bad.txt").write_bytes(content)
    with pytest.raises(DataError, match=f"bad.txt: .*{why}.*--on_bad_text=skip"):
        open_source(str(root), _cfg(str(root)))
    texts = open_source(str(root), _cfg(str(root), on_bad_text="skip"))["all"]
    assert len(texts) == 6 and texts.skipped == 1
    assert len(texts.skipped_names) == 1 and \
        texts.skipped_names[0].startswith(f"{root / 'positive' / 'bad.txt'} (")


def test_neutral_ratings_are_left_out_of_the_binary_sets():
    texts, labels, ids = builtin.parse_ratings(
        "1\t2.3\tLoved it\n2\t-0.2\tMeh\n3\t-1.5\tHated it\n4\t0.5\tOkay\n5\t0.6\tNice", "movies")
    assert texts == ["Loved it", "Hated it", "Nice"] and labels == [1, 0, 1]
    assert ids == ["movies:1", "movies:3", "movies:5"]


def test_missing_sentiment_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KTRANSFER_DATA", str(tmp_path))
    builtin._ratings_archive.cache_clear()
    with pytest.raises(DataError, match="pip download --no-deps --no-binary=:all: "
                                        "vadersentiment==3.3.2"):
        builtin.sentiment("movies")
    builtin._ratings_archive.cache_clear()


@pytest.mark.skipif(not (builtin.data_folder() / builtin.SDIST).is_file(),
                    reason="run `make text-data` for the built-in sentiment sets")
def test_the_built_in_movie_snippets_are_balanced_and_split_the_same_way_every_time():
    first = TEXT.load_splits(_cfg("builtin:sentiment_movies", val_split=0.1))
    again = TEXT.load_splits(_cfg("builtin:sentiment_movies", val_split=0.1))
    assert len(first.test) == 2008 and len(first.train) + len(first.val) == 8035
    assert first.test.names() == again.test.names()
    assert abs(np.mean(first.train.labels) - 0.5) < 0.02


@pytest.mark.skipif(not (builtin.data_folder() / builtin.SDIST).is_file(),
                    reason="run `make text-data` for the built-in sentiment sets")
def test_the_built_in_ratings_are_every_sentence_with_its_mean_rating_for_regression():
    cfg = _cfg("builtin:ratings_tweets", task="regression", val_split=0.1)
    splits = TEXT.load_splits(cfg)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 4200  # none left out
    assert splits.class_names == ("rating",) and splits.test.labels.dtype == np.float32
    assert -4 <= splits.test.labels.min() < -2 and 2 < splits.test.labels.max() <= 4
    assert abs(np.median(splits.train.labels) - np.median(splits.test.labels)) < 0.2
    with pytest.raises(DataError, match="--task=regression"):  # a rating is no class
        TEXT.load_splits(_cfg("builtin:ratings_tweets"))


@pytest.mark.parametrize("row, why", [
    ("a,b,c,d", "4 fields where the header has 2"),  # before: a new class 'b', silently
    ("lonely", "1 field\\(s\\) where the header has 2"),
    ("a fine film,", "empty label"),
])
def test_a_bad_table_row_names_its_line_and_is_skipped_under_skip(tmp_path, row, why):
    path = tmp_path / "r.csv"
    path.write_text(f"text,label\nnice,pos\n{row}\nawful,neg\n")
    with pytest.raises(DataError, match=rf"^--data: .*r.csv:3: {why}.*; .*--on_bad_text=skip"):
        open_source(str(path), _cfg(str(path)))
    texts = open_source(str(path), _cfg(str(path), on_bad_text="skip"))["all"]
    assert texts.class_names == ("neg", "pos") and len(texts) == 2 and texts.skipped == 1


def test_a_text_longer_than_the_csv_modules_limit_is_read(tmp_path):
    path = tmp_path / "long.csv"
    long = "word " * 40_000  # 200,000 characters: the csv module's default limit is 131,072
    path.write_text(f'text,label\n"{long}",pos\nshort,neg\n')
    texts = open_source(str(path), _cfg(str(path)))["all"]
    assert len(str(texts.texts[0])) == len(long.strip())


def test_tfds_label_sets_read_as_multi_label_targets(tfds_tags_dir):
    """A text dataset whose supervised label is a Sequence(ClassLabel) gives each text the
    set of topics it names."""
    cfg = config.build(modality="text", data="tfds:tiny_topic_tags",
                       data_dir=str(tfds_tags_dir), task="multi_label")
    found = open_source(cfg.data.data, cfg)
    train = found["train"]
    assert train.class_names == ("red", "green", "blue") and len(found["test"]) == 16
    assert train.task == "multi_label" and train.labels.shape == (40, 3)
    for text, labels in zip(train.texts, train.labels, strict=True):
        assert [n in text.split() for n in train.class_names] == list(labels > 0.5)
