"""Box annotations as labelling tools export them, read into one form (`Annotated`: image
files and padded targets [N, M, 5], class id then ymin, xmin, ymax, xmax as fractions). The
files here; Pascal VOC and YOLO folders in `folders`.

- COCO JSON (`instances_*.json`, Roboflow's `_annotations.coco.json`): `images` (file_name,
  width, height), `annotations` (image_id, category_id, bbox [x, y, width, height] in pixels),
  `categories` (id, name). Image files are looked for beside the JSON file, in `images/`
  beside it, and in `images/` one folder up.
- A table of boxes (CSV / TSV / JSON lines), one row per box: columns file, label, xmin,
  ymin, xmax, ymax (pixels of the image as stored); a row with an empty label and no box
  keeps an image as a negative.

Every bad annotation is a one-line DataError naming the file and the line (the object's
index in a COCO file): a box outside its image (by more than one pixel), with no area, an
unknown category, a missing image, a malformed file. Images with no box are kept as
negatives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ktransfer.data import tables
from ktransfer.errors import DataError
from ktransfer.tasks.annotations import Annotated, Annotations
from ktransfer.tasks.detection import folders
from ktransfer.tasks.detection.boxes import Box, fractions, padded

BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")


def find_image(name: str, base: Path, where: str) -> Path:
    """The image file `name` of an annotation file in `base` (see the module docstring)."""
    for folder in (base, base / "images", base.parent / "images"):
        path = folder / name
        if path.is_file():
            return path
    raise DataError(f"{where}: image file {name!r} not found beside the annotations, in "
                    f"{base / 'images'} or {base.parent / 'images'}")


def read_coco(path: Path, flag: str) -> Annotated:
    """A COCO detection JSON file (see the module docstring)."""
    try:
        found = json.loads(tables.decode(path.read_bytes()))
    except ValueError as exc:
        line = getattr(exc, "lineno", "?")
        raise DataError(f"--{flag}: {path}:{line}: not JSON ({exc})") from None
    if not isinstance(found, dict) or not isinstance(found.get("images"), list):
        raise DataError(f"--{flag}: {path}: not a COCO file (an object with images, "
                        "annotations and categories)")
    categories = _categories(found.get("categories"), path, flag)
    names = tuple(categories.values())
    ids = {cat: i for i, cat in enumerate(categories)}
    images = _coco_images(found["images"], path, flag)
    boxes: dict[Any, list[Box]] = {key: [] for key in images}
    for n, item in enumerate(found.get("annotations") or []):
        where = f"--{flag}: {path}: annotations[{n}]"
        if not isinstance(item, dict) or item.get("image_id") not in images:
            raise DataError(f"{where}: image_id {_get(item, 'image_id')!r} is not an image of "
                            "the file")
        if item.get("category_id") not in ids:
            raise DataError(f"{where}: category_id {item.get('category_id')!r} is not a "
                            f"category of the file ({', '.join(map(str, ids))})")
        _, width, height = images[item["image_id"]]
        x, y, w, h = _numbers(item.get("bbox"), where)
        boxes[item["image_id"]].append(
            (ids[item["category_id"]], *fractions((x, y, x + w, y + h), width, height, where)))
    files = tuple(str(images[key][0]) for key in images)
    return Annotated(files, names, padded([boxes[key] for key in images]))


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else item


def _categories(given: Any, path: Path, flag: str) -> dict[Any, str]:
    if not isinstance(given, list) or not given:
        raise DataError(f"--{flag}: {path}: no categories; a COCO file lists its classes as "
                        'categories: [{"id": 1, "name": "cat"}, ...]')
    out: dict[Any, str] = {}
    for n, cat in enumerate(given):
        if not isinstance(cat, dict) or "id" not in cat or not str(cat.get("name", "")):
            raise DataError(f"--{flag}: {path}: categories[{n}] needs an id and a name")
        out[cat["id"]] = str(cat["name"])
    if len(set(out.values())) != len(out):
        raise DataError(f"--{flag}: {path}: two categories share a name")
    return out


def _coco_images(given: list[Any], path: Path, flag: str) -> dict[Any, tuple[Path, float,
                                                                              float]]:
    out = {}
    for n, item in enumerate(given):
        where = f"--{flag}: {path}: images[{n}]"
        if not isinstance(item, dict) or "id" not in item or "file_name" not in item:
            raise DataError(f"{where}: needs an id and a file_name")
        file = find_image(str(item["file_name"]), path.parent, where)
        width, height = item.get("width"), item.get("height")
        if not isinstance(width, int | float) or not isinstance(height, int | float):
            with Image.open(file) as image:
                width, height = image.size
        out[item["id"]] = (file, float(width), float(height))
    return out


def _numbers(value: Any, where: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: bbox {value!r} is not [x, y, width, height]") from None
    return x, y, w, h


def read_box_table(path: Path, flag: str) -> Annotated:
    """A table of boxes, one row per box (see the module docstring)."""
    rows = tables.table_rows(path, flag)
    order: dict[str, list[tuple[str, tuple[float, ...], str]]] = {}
    for line, row in rows:
        where = f"--{flag}: {path}:{line}"
        file = str(row.get("file") or "").strip()
        if not file:
            raise DataError(f"{where}: no file; every row names its image")
        label = str(row.get("label") or "").strip()
        values = [row.get(c) for c in BOX_COLUMNS]
        if not label and all(v in (None, "") for v in values):
            order.setdefault(file, [])
            continue
        if not label:
            raise DataError(f"{where}: a box with no label")
        try:
            box = tuple(float(str(v)) for v in values)
        except ValueError:
            raise DataError(f"{where}: {', '.join(BOX_COLUMNS)} must be numbers (pixels), got "
                            f"{values}") from None
        order.setdefault(file, []).append((label, box, where))
    names = tuple(sorted({label for boxes in order.values() for label, _, _ in boxes}))
    index = {name: i for i, name in enumerate(names)}
    files, boxes = [], []
    for file, given in order.items():
        image = find_image(file, path.parent, f"--{flag}: {path}")
        with Image.open(image) as opened:
            width, height = opened.size
        files.append(str(image))
        boxes.append([(index[label], *fractions(box, width, height, where))
                      for label, box, where in given])
    return Annotated(tuple(files), names, padded(boxes))


class BoxReaders(Annotations):
    """COCO JSON files, tables of boxes, Pascal VOC and YOLO folders (see the module
    docstrings)."""

    formats = ("a COCO JSON file, a table of boxes (file, label, xmin, ymin, xmax, ymax), a "
               "Pascal VOC folder (Annotations/) or a YOLO folder (images/, labels/, data.yaml)")

    def claims(self, path: str) -> bool:
        file = Path(path)
        if file.is_dir():
            return folders.is_voc(file) or folders.is_yolo(file)
        if file.suffix.lower() == ".json":
            return True
        if not tables.is_table(path) or not file.is_file():
            return False
        with file.open("rb") as f:
            first = tables.decode(f.readline()).lower()
        return all(column in first for column in BOX_COLUMNS)

    def read(self, path: str, flag: str) -> dict[str, Annotated]:
        file = Path(path)
        read: Callable[[Path, str], Annotated]
        if file.is_dir():
            read = folders.read_voc if folders.is_voc(file) else folders.read_yolo
        elif file.is_file():
            read = read_coco if file.suffix.lower() == ".json" else read_box_table
        else:
            raise DataError(f"--{flag}: {path} does not exist; give {self.formats}")
        return {"all": read(file, flag)}


READERS = BoxReaders()
