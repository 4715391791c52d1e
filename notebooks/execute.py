"""Runs the notebooks top to bottom and saves them with their outputs (`make notebooks`), so
that a reader sees what each cell prints. Stream outputs lose TensorFlow's native log lines
(the CUDA probing and oneDNN notices of a CPU machine), as the commands' own output does, and
the paths of the machine that ran them (the checkout becomes `.`, the Python environment
`<python>`): a committed output holds no absolute path.

    python notebooks/execute.py [quickstart.ipynb sentiment.ipynb]
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ktransfer.cli import NATIVE_LINE  # what the commands hide, hidden here too

HERE = Path(__file__).resolve().parent
# Absolute paths of this machine, longest first, and what a saved output shows instead.
LOCAL_PATHS = sorted({(str(HERE.parent), "."), (sys.prefix, "<python>"),
                      (sys.base_prefix, "<python>")}, key=lambda p: -len(p[0]))


def without_local_paths(text: str) -> str:
    for path, shown in LOCAL_PATHS:
        text = text.replace(path, shown)
    return text


def without_native_lines(nb: nbformat.NotebookNode) -> None:
    """Drops native log lines from every stream output (and outputs left empty), and this
    machine's paths from what is left."""
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = without_local_paths("".join(
                    line for line in out["text"].splitlines(keepends=True)
                    if not NATIVE_LINE.match(line.encode())))
                if not out["text"]:
                    continue
            kept.append(out)
        if cell.cell_type == "code":
            cell["outputs"] = kept


def execute(name: str) -> None:
    path = HERE / name
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    without_native_lines(nb)
    nbformat.write(nb, path)
    print(f"{name}: executed and saved with its outputs")


def strip(name: str) -> None:
    """Drops native lines from a notebook's saved outputs, without running it again."""
    path = HERE / name
    nb = nbformat.read(path, as_version=4)
    without_native_lines(nb)
    nbformat.write(nb, path)


if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if a != "--strip"] or ["quickstart.ipynb",
                                                           "sentiment.ipynb"]
    for notebook in names:
        strip(notebook) if "--strip" in sys.argv else execute(notebook)
