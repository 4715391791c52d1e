"""Shared plotting helpers: matplotlib without a display, figures written atomically, and PNGs
embedded in self-contained HTML."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

from ktransfer import atomic


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | os.PathLike) -> None:
    """Writes `fig` as PNG atomically and closes it."""
    atomic.save_with(path, lambda p: fig.savefig(p, format="png"))
    pyplot().close(fig)


def img_tag(path: str | os.PathLike, alt: str) -> str:
    """An <img> with the PNG at `path` embedded (empty when there is no such file)."""
    path = Path(path)
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
