"""The docs: the flag reference is what the commands' --help prints, the README stays short
and its links lead somewhere, and the site's navigation names pages that exist."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import nbformat
import pytest

from conftest import REPO


def _generator():
    spec = importlib.util.spec_from_file_location("generate", REPO / "docs" / "reference" /
                                                  "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_flag_reference_is_what_help_prints():
    generate = _generator()
    assert generate.PAGE.read_text() == generate.page(), \
        "docs/reference/flags.md is stale: run python docs/reference/generate.py"


def test_the_readme_is_short_and_its_links_lead_to_files():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    assert targets and [t for t in targets if not (REPO / t).exists()] == []


def test_every_page_in_the_navigation_exists_and_every_page_is_in_it():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M)
    pages = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert set(nav) == pages


@pytest.mark.slow
def test_the_readme_python_example_runs_as_shown(tmp_path):
    """The README's "From Python" block, run as a user would from a checkout (here a folder
    linking to this one's configs and package, so its runs/ land in tmp_path)."""
    block = re.search(r"## From Python\n\n```python\n(.*?)```", (REPO / "README.md").read_text(),
                      re.S)
    assert block, "README.md lost its From Python example"
    for name in ("configs", "ktransfer"):
        (tmp_path / name).symlink_to(REPO / name)
    done = subprocess.run([sys.executable, "-c", block.group(1)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    accuracy, answers = done.stdout.strip().splitlines()[-2:]
    assert float(accuracy) > 0.6 and answers.startswith("[('")


def test_the_notebooks_are_committed_with_their_outputs_and_no_native_log_lines():
    """A reader of the notebooks sees what each cell printed (make notebooks re-runs them),
    without TensorFlow's native log lines."""
    native = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+\.(?:cc|h):\d+\] ", re.M)
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        printed = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
        assert all(c.get("execution_count") for c in code), f"{path.name}: run make notebooks"
        assert "test accuracy:" in printed and not native.search(printed), path.name
