"""Box annotations that come as folders: Pascal VOC XML and YOLO txt.

- **Pascal VOC**: a folder with `Annotations/*.xml` (one per image: `filename`, `size`
  width / height, `object`s with `name` and `bndbox` xmin, ymin, xmax, ymax in pixels) and the
  images in `JPEGImages/` (or beside the XML files, or in the folder itself). The class names
  are every object name found, sorted.
- **YOLO**: a folder with `images/` and `labels/` (a `NAME.txt` per image `NAME.*`: one line
  `class x_centre y_centre width height` per box, fractions of the image; an image without a
  label file, or with an empty one, is a negative) and the class names in `data.yaml` (`names:`
  a list, or a map from id to name) or `classes.txt` (one per line).

Both give the same form as the other readers (`readers.padded`), with one-line errors naming
the file and the line (the object's index in an XML file).
"""

from __future__ import annotations

import math
from pathlib import Path
from xml.etree import ElementTree

from PIL import Image

from ktransfer.errors import DataError
from ktransfer.tasks.annotations import Annotated
from ktransfer.tasks.detection.boxes import Box, fractions, padded

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
YOLO_SLACK = 0.002  # of the image a YOLO box may reach past it (rounding); clipped


def is_voc(folder: Path) -> bool:
    return (folder / "Annotations").is_dir()


def is_yolo(folder: Path) -> bool:
    return ((folder / "images").is_dir() and (folder / "labels").is_dir()
            and ((folder / "data.yaml").is_file() or (folder / "classes.txt").is_file()))


def read_voc(folder: Path, flag: str) -> Annotated:
    """A Pascal VOC folder (see the module docstring)."""
    parsed = [_voc_file(path, flag) for path in sorted((folder / "Annotations").glob("*.xml"))]
    if not parsed:
        raise DataError(f"--{flag}: {folder / 'Annotations'} holds no .xml file")
    names = tuple(sorted({name for _, _, objects in parsed for name, _, _ in objects}))
    index = {name: i for i, name in enumerate(names)}
    files, boxes = [], []
    for (image, size), objects in ((_voc_image(folder, p, name, flag), o)
                                   for p, name, o in parsed):
        files.append(str(image))
        boxes.append([(index[name], *fractions(box, *size, where))
                      for name, box, where in objects])
    return Annotated(tuple(files), names, padded(boxes))


def _voc_file(path: Path, flag: str) -> tuple[Path, str, list[tuple[str, tuple, str]]]:
    """(the XML file, its image's file name, its objects: name, box in pixels, where)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise DataError(f"--{flag}: {path}: not readable XML ({exc})") from None
    objects = []
    for n, item in enumerate(root.iter("object")):
        where = f"--{flag}: {path}: object {n}"
        name = (item.findtext("name") or "").strip()
        if not name:
            raise DataError(f"{where}: no name")
        box = item.find("bndbox")
        try:
            values = tuple(float(box.findtext(k) or "nan") for k in  # type: ignore[union-attr]
                           ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, ValueError):
            values = (math.nan,) * 4
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{where}: bndbox needs numbers xmin, ymin, xmax, ymax")
        objects.append((name, values, where))
    return path, (root.findtext("filename") or "").strip(), objects


def _voc_image(folder: Path, xml: Path, name: str, flag: str
               ) -> tuple[Path, tuple[float, float]]:
    candidates = [p / name for p in (folder / "JPEGImages", xml.parent, folder)] if name else []
    image = next((p for p in candidates if p.is_file()), None)
    if image is None:
        raise DataError(f"--{flag}: {xml}: image file {name!r} not found in "
                        f"{folder / 'JPEGImages'}, beside the XML or in {folder}")
    with Image.open(image) as opened:
        width, height = opened.size
    return image, (float(width), float(height))


def yolo_names(folder: Path, flag: str) -> tuple[str, ...]:
    """The class names of a YOLO folder: data.yaml's `names`, else classes.txt."""
    if (folder / "data.yaml").is_file():
        import yaml

        try:
            found = yaml.safe_load((folder / "data.yaml").read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            raise DataError(f"--{flag}: {folder / 'data.yaml'}: not readable YAML "
                            f"({str(exc).splitlines()[0]})") from None
        names = found.get("names") if isinstance(found, dict) else None
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names)]
        if not isinstance(names, list) or not names:
            raise DataError(f"--{flag}: {folder / 'data.yaml'}: give the classes as names: "
                            "[a, b, ...]")
        return tuple(str(n) for n in names)
    lines = (folder / "classes.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


def read_yolo(folder: Path, flag: str) -> Annotated:
    """A YOLO folder (see the module docstring)."""
    names = yolo_names(folder, flag)
    images = sorted(p for p in (folder / "images").rglob("*")
                    if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"--{flag}: {folder / 'images'} holds no image")
    boxes = [_yolo_boxes(folder, image, len(names), flag) for image in images]
    return Annotated(tuple(str(p) for p in images), names, padded(boxes))


def _yolo_boxes(folder: Path, image: Path, classes: int, flag: str) -> list[Box]:
    label = folder / "labels" / image.relative_to(folder / "images").with_suffix(".txt")
    if not label.is_file():
        return []
    out: list[Box] = []
    for number, line in enumerate(label.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"--{flag}: {label}:{number}"
        parts = line.split()
        try:
            cls, cx, cy, w, h = int(parts[0]), *(float(p) for p in parts[1:5])
        except (ValueError, IndexError):
            raise DataError(f"{where}: not 'class x_centre y_centre width height' "
                            f"({line.strip()!r})") from None
        if len(parts) != 5 or not 0 <= cls < classes:
            raise DataError(f"{where}: class {parts[0]} is not one of the {classes} names, or "
                            "the line has more than five fields")
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        out.append((cls, *fractions(box, 1.0, 1.0, where, slack=YOLO_SLACK)))
    return out
