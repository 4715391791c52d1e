"""Names from the data in files people open: MODEL_CARD.md renders them as text (checked with
a CommonMark renderer, markdown-it-py), and spreadsheets see no formula in predict's and the
probe's tables."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from markdown_it import MarkdownIt

from ktransfer.deploy.prediction import Prediction, format_predictions
from ktransfer.reporting.model_card import card_data, markdown
from ktransfer.runs.escape import cell, md_code, md_fence, md_text

EVIL = ["a`<img src=x onerror=alert(1)>`", "``<b>bold</b>", "[link](http://x.test)",
        "<script>alert(1)</script>", "*em* _u_ # h"]


def _html(text: str) -> str:
    return MarkdownIt("commonmark").render(text)


@pytest.mark.parametrize("name", EVIL)
def test_a_code_span_holds_any_name_whole(name):
    rendered = _html(md_code(name))
    assert "<img" not in rendered and "<b>" not in rendered and "<script" not in rendered
    assert rendered.count("<code>") == 1
    inner = rendered.split("<code>")[1].split("</code>")[0]
    assert inner.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"') == name


@pytest.mark.parametrize("name", EVIL)
def test_plain_text_has_no_markup(name):
    rendered = _html(md_text(name))
    for tag in ("<img", "<b>", "<script", "<a ", "<em>", "<h1", "<code>"):
        assert tag not in rendered
    assert rendered.startswith("<p>")


def test_a_fence_no_line_can_close():
    rendered = _html("\n".join(md_fence(["--data=x", "```", "<b>x</b>"])))
    assert rendered.count("<pre>") == 1 and "<b>" not in rendered


def test_the_model_card_shows_class_names_as_text():
    """On ce06f12 a class name with a backtick closed its code span and raw HTML rendered."""
    metrics = {"task": "single_label", "modality": "image", "class_names": EVIL,
               "network": {"backbone": "small_cnn"}, "num_examples": {"train": 3},
               "warnings": ["val accuracy no better than always <b>x</b>"],
               "test": {"accuracy": 0.5}, "ktransfer": {}}
    flags = ["--data=`<img src=x>`", "--classes=```"]
    rendered = _html(markdown(card_data(metrics, flags, {}, ["class `x`: recall 0.5"])))
    assert "<img" not in rendered and "<b>" not in rendered and "<script" not in rendered
    assert "<a " not in rendered and "<em>em</em>" not in rendered
    assert rendered.count("<pre>") == 1


@pytest.mark.parametrize("value, shown", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1+2", "'+1+2"),
    ("-cmd", "'-cmd"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("-1.5", "-1.5"), ("+3e-4", "+3e-4"), ("cat", "cat"), ("a=b", "a=b"), ("", "")])
def test_a_cell_a_spreadsheet_would_compute_starts_with_a_quote(value, shown):
    assert cell(value) == shown


def test_predict_tables_hold_no_formula():
    """On ce06f12 predict's TSV and CSV wrote `=...` cells unchanged."""
    one = [Prediction("=cmd|' /C calc'!A0", [("+evil", 0.75), ("-0.5", 0.25)],
                      np.array([0.75, 0.25]))]
    rows = list(csv.reader(io.StringIO(format_predictions(one, "csv"))))
    assert rows[1] == ["'=cmd|' /C calc'!A0", "'+evil", "0.750000", "-0.5", "0.250000"]
    fields = format_predictions(one, "text").rstrip("\n").split("\t")
    assert fields[:2] == ["'=cmd|' /C calc'!A0", "'+evil"] and fields[3] == "-0.5"


def test_the_label_audit_table_holds_no_formula():
    from ktransfer.probing.report import _csv

    rows = list(csv.reader(io.StringIO(_csv([{"index": 3, "example": "@SUM(1)",
                                              "given": "=1+1", "suggested": "cat",
                                              "score": 0.25}]))))
    assert rows[1] == ["3", "'@SUM(1)", "'=1+1", "cat", "0.25"]
