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
                    reason="run `make text-assets` for the built-in sentiment sets")
def test_the_built_in_movie_snippets_are_balanced_and_split_the_same_way_every_time():
    first = TEXT.load_splits(_cfg("builtin:sentiment_movies", val_split=0.1))
    again = TEXT.load_splits(_cfg("builtin:sentiment_movies", val_split=0.1))
    assert len(first.test) == 2008 and len(first.train) + len(first.val) == 8035
    assert first.test.names() == again.test.names()
    assert abs(np.mean(first.train.labels) - 0.5) < 0.02


@pytest.mark.skipif(not (builtin.data_folder() / builtin.SDIST).is_file(),
                    reason="run `make text-assets` for the built-in sentiment sets")
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


def _tags(path, **values):
    return open_source(str(path), _cfg(str(path), task="multi_label", **values))["all"]


@pytest.mark.parametrize("label, why", [
    ('{"pos": 1}', r'the label is a JSON object \{"pos": 1\}; give a string'),
    ('[1, null, 2.5]', r"label 1 in \[1, None, 2.5\] is not a string"),
    ('["fine", null]', r"label None in \['fine', None\] is not a string"),
    ('["line\\nbreak"]', r"label 'line\\nbreak' holds a line break"),
])
def test_multi_label_json_labels_that_are_not_strings_name_their_line(tmp_path, label, why):
    """On ce06f12 these trained as classes named "{'pos': 1}", "1", "None", "2.5", exit 0; a
    label with a line break failed later without a file or line."""
    path = tmp_path / "t.jsonl"
    path.write_text(f'{{"text": "a film", "label": ["good"]}}\n'
                    f'{{"text": "another", "label": {label}}}\n')
    with pytest.raises(DataError, match=rf"^--data: .*t.jsonl:2: {why}"):
        _tags(path)


def test_labels_written_with_another_separator_name_the_flag_to_pass(tmp_path):
    """A table written with ';' trained under the default '|' as classes such as
    "neg;plot;acting" on ce06f12."""
    path = tmp_path / "t.csv"
    rows = ["neg;plot;acting", "pos;music", "neg;plot", "pos", "neg;acting;music"] * 4
    path.write_text("text,label\n" + "".join(f"film {i},{r}\n" for i, r in enumerate(rows)))
    with pytest.raises(DataError, match=r"t.csv:2: 16 of 20 labels hold ';' and none '\|' "
                       r"\(e.g. 'neg;plot;acting'\): pass --label_separator=';'"):
        _tags(path)
    texts = _tags(path, label_separator=";")
    assert texts.class_names == ("acting", "music", "neg", "plot", "pos")
    assert len(_tags(path, label_separator="/").class_names) == 5  # ';' in names, as told


def test_a_table_where_every_row_has_every_label_is_refused(tmp_path):
    from ktransfer.text.modality import TEXT

    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f"film {i},a|b\n" for i in range(30)))
    with pytest.raises(DataError, match="every training example carries every label"):
        TEXT.load_splits(_cfg(str(path), task="multi_label"))


def test_a_tsv_text_starting_with_a_quote_is_text(tmp_path):
    """A quote that does not close swallowed the 40 rows after it on ce06f12 (under skip: 41
    dropped, "skipped 1 bad row"); now those lines are read again without quoting."""
    path = tmp_path / "t.tsv"
    rows = [f"film {i}\t{'pos' if i % 2 else 'neg'}" for i in range(41)]
    rows[0] = '"Wow, what a film\tpos'
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    texts = open_source(str(path), _cfg(str(path), on_bad_text="skip"))["all"]
    assert len(texts) == 41 and texts.skipped == 0
    assert str(texts.texts[0]) == '"Wow, what a film'


def test_a_csv_quote_that_never_closes_is_named_at_its_own_line(tmp_path):
    """On ce06f12 the error named the last line of the file, and skip dropped all 41 rows."""
    path = tmp_path / "t.csv"
    path.write_text("text,label\nnice,pos\n\"Wow, what,neg\n" +
                    "".join(f"film {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40)))
    with pytest.raises(DataError, match=r"t.csv:3: 3 fields where the header has 2 .*; its "
                       r"quote does not close \(it would take the next 40 line\(s\) with it\)"):
        open_source(str(path), _cfg(str(path)))
    texts = open_source(str(path), _cfg(str(path), on_bad_text="skip"))["all"]
    assert len(texts) == 41 and texts.skipped == 1


def test_quoted_fields_over_several_lines_are_still_one_text(tmp_path):
    import csv

    for suffix, delimiter in ((".csv", ","), (".tsv", "\t")):
        path = tmp_path / f"t{suffix}"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerows([("text", "label"), ('Two lines,\n"quoted" and all', "pos"),
                              ("plain", "neg")])
        texts = open_source(str(path), _cfg(str(path)))["all"]
        assert [str(t) for t in texts.texts] == ['Two lines,\n"quoted" and all', "plain"]


def test_a_json_line_nested_too_deep_is_one_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataError, match=r"t.jsonl:2: JSON nested too deep"):
        open_source(str(path), _cfg(str(path)))


def test_a_regression_target_too_large_for_float32_names_its_row(tmp_path):
    """1e308 trained for minutes on ce06f12, then stopped with "loss became NaN"."""
    path = tmp_path / "t.csv"
    path.write_text("text,score\na,1.5\nb,1e308\nc,2\n")
    with pytest.raises(DataError, match=r"t.csv:3: score '1e308' is too large to train on"):
        open_source(str(path), _cfg(str(path), task="regression", label_column="score"))
