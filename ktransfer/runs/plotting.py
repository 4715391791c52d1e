"""Shared plotting helpers: matplotlib without a display, figures written atomically, and PNGs
embedded in self-contained HTML."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ktransfer.runs import atomic

TILE = 150  # pixels, a contact sheet's picture side
CAPTION = 30  # pixels under each picture for up to two caption lines


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


def contact_sheet(tiles: list[tuple[np.ndarray, str]], path: str | os.PathLike,
                  cols: int = 6) -> None:
    """Writes a PNG grid of (picture uint8 [H, W, 3], caption) tiles, `cols` per row, each
    picture scaled to TILE px with up to two caption lines under it. Drawn with PIL: a grid of
    pictures needs no axes, and matplotlib took ~1 s per sheet."""
    cols = max(1, min(cols, len(tiles)))
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * TILE, rows * (TILE + CAPTION)), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=11)
    for k, (picture, caption) in enumerate(tiles):
        x, y = (k % cols) * TILE, (k // cols) * (TILE + CAPTION)
        tile = Image.fromarray(np.asarray(picture, np.uint8)).resize((TILE - 4, TILE - 4))
        sheet.paste(tile, (x + 2, y + 2))
        for line_no, line in enumerate(caption.splitlines()[:2]):
            draw.text((x + TILE // 2, y + TILE + 1 + 13 * line_no), line, fill="black",
                      font=font, anchor="ma")
    atomic.save_with(path, lambda p: sheet.save(p, format="PNG"))


def img_tag(path: str | os.PathLike, alt: str) -> str:
    """An <img> with the PNG at `path` embedded (empty when there is no such file)."""
    path = Path(path)
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
