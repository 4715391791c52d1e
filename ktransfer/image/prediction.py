"""Images to predict: files and folders from the command line, checked before any work.

Unreadable files (corrupt, truncated, empty, not an image) are named, never a traceback:
`on_bad_image="fail"` stops at the first one, "skip" leaves them out with one warning line.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ktransfer.errors import DataError
from ktransfer.image.imageset import ImageSet, decode_file
from ktransfer.image.pipeline import resize
from ktransfer.image.sources import IMAGE_EXTENSIONS, image_problem
from ktransfer.runs import atomic

log = logging.getLogger(__name__)


def collect_files(paths: list[str]) -> list[str]:
    """Image files from files and folders (searched recursively), sorted within each folder."""
    if not paths:
        raise DataError("no images given: pass image files or folders after the flags")
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(str(p) for p in Path(path).rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"{path}: the folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return files


def load_pixels(path: str, size: int) -> np.ndarray:
    """float32 [size, size, 3] in [0, 255]; DataError naming the file if it is not an image."""
    problem = image_problem(path)
    if problem:
        raise DataError(f"{path}: not a readable image ({problem})")
    return resize(decode_file(path), size).numpy()


def read_images(paths: list[str], on_bad_image: str = "fail") -> ImageSet:
    """The readable images among `paths` (files and folders) as an unlabelled ImageSet, in
    order; an unreadable one stops with its name (`fail`) or is left out with a warning."""
    good: list[str] = []
    bad: list[str] = []
    for path in collect_files(paths):
        problem = image_problem(path)
        if problem and on_bad_image == "fail":
            raise DataError(f"{path}: not a readable image ({problem}) (--on_bad_image=skip "
                            "leaves such files out)")
        (bad if problem else good).append(path)
    if bad:
        log.warning("skipped %d unreadable file(s): %s", len(bad), ", ".join(bad[:10]) +
                    (" ..." if len(bad) > 10 else ""))
    if not good:
        raise DataError("none of the given files is a readable image")
    return ImageSet(class_names=("",), labels=np.zeros(len(good), np.int32),
                    files=np.array(good))


def image_sizes(files: list[str]) -> list[tuple[int, int]]:
    """(width, height) in pixels of each file, read from its header (the first frame)."""
    sizes = []
    for path in files:
        with Image.open(path) as image:
            sizes.append(image.size)
    return sizes


def draw_images(files: list[str], answers: list[dict[str, Any]],
                draw: Callable[[Image.Image, dict[str, Any]], Image.Image],
                out_dir: str | os.PathLike) -> list[Path]:
    """OUT_DIR/STEM.png per file: the image (its first frame) with its answers drawn by
    `draw`; a stem met before gets its place in the list as a prefix (3_photo.png)."""
    written, seen = [], set()
    for i, (path, answer) in enumerate(zip(files, answers, strict=True)):
        stem = Path(path).stem
        name = f"{stem}.png" if stem not in seen else f"{i}_{stem}.png"
        seen.add(stem)
        with Image.open(path) as image:
            drawn = draw(image.convert("RGB"), answer)
        buffer = io.BytesIO()
        drawn.save(buffer, format="PNG")
        atomic.write_bytes(Path(out_dir) / name, buffer.getvalue())
        written.append(Path(out_dir) / name)
    return written
