"""Texts to predict (ktransfer/text/prediction.py): --text, files, folders and standard
input."""

from __future__ import annotations

import io

import pytest

from ktransfer.errors import DataError
from ktransfer.text.prediction import read_texts


@pytest.mark.parametrize("args, text", [([], "-"), (["-"], "")])
def test_a_dash_reads_standard_input_as_the_help_says(monkeypatch, args, text):
    """On ce06f12 `--text=-` classified the character "-" (only the argument - read stdin)."""
    monkeypatch.setattr("sys.stdin", io.StringIO("a fine film\n\nawful\n"))
    texts = read_texts(args, text=text)
    assert [str(t) for t in texts.texts] == ["a fine film", "awful"]
    assert list(texts.ids) == ["stdin:1", "stdin:3"]


def test_text_files_and_the_flag_keep_their_order(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    texts = read_texts([str(tmp_path / "a.txt")], text="first")
    assert [str(t) for t in texts.texts] == ["first", "one", "two"]
    with pytest.raises(DataError, match="no such file or folder"):
        read_texts([str(tmp_path / "missing.txt")])
