"""Real-pixel detection scenes from photographs that ship with scikit-image and scikit-learn,
for benchmarks that cannot download a detection data set.

Objects are fixed crops of two photographs (`OBJECTS`: the cat of skimage's `chelsea`, the cup
and saucer of its `coffee`), pasted whole (a rectangle, hard edges), mirrored at random and
scaled so that their longer side is 24-64 px, 0-3 per image (every tenth image has none: a
negative), each overlapping the others by at most 0.3 IoU, onto a random square crop of a
background photograph (`BACKGROUNDS`: scikit-learn's `china` and `flower`, skimage's `grass`,
`gravel`, `brick`, `rocket`, `camera`, `astronaut`) resized to 128 x 128. Each box is exactly
its pasted rectangle. `write_scenes` writes the images and a COCO JSON file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 128  # px, the scenes' side
OBJECTS = {"cat": ("chelsea", (20, 30, 300, 380)),  # name -> (photo, (top, left, bottom, right))
           "cup": ("coffee", (40, 60, 390, 540))}
BACKGROUNDS = ("china", "flower", "grass", "gravel", "brick", "rocket", "camera", "astronaut")


def photo(name: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a bundled photograph."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[("china", "flower").index(name)]
    from skimage import data

    found = getattr(data, name)()
    return np.stack([found] * 3, axis=-1) if found.ndim == 2 else found[..., :3]


def _background(rng: np.random.Generator, photos: dict[str, np.ndarray]) -> Image.Image:
    found = photos[BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]]
    side = int(rng.integers(SIZE, min(found.shape[:2]) + 1))
    top = int(rng.integers(0, found.shape[0] - side + 1))
    left = int(rng.integers(0, found.shape[1] - side + 1))
    crop = Image.fromarray(found[top:top + side, left:left + side])
    return crop.resize((SIZE, SIZE), Image.BILINEAR)


def _iou(a: list[int], b: list[int]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def scene(i: int, rng: np.random.Generator, photos: dict[str, np.ndarray]
          ) -> tuple[Image.Image, list[tuple[str, list[int]]]]:
    """One scene and its boxes (class, [x1, y1, x2, y2] pixels)."""
    canvas, boxes = _background(rng, photos), []
    for _ in range(int(rng.integers(0 if i % 10 == 0 else 1, 4))):
        name = list(OBJECTS)[int(rng.integers(len(OBJECTS)))]
        source, (top, left, bottom, right) = OBJECTS[name]
        cut = Image.fromarray(photos[source][top:bottom, left:right])
        scale = float(rng.uniform(24, 64)) / max(cut.size)
        cut = cut.resize((max(8, round(cut.width * scale)), max(8, round(cut.height * scale))),
                         Image.BILINEAR)
        if rng.random() < 0.5:
            cut = cut.transpose(Image.FLIP_LEFT_RIGHT)
        x = int(rng.integers(0, SIZE - cut.width + 1))
        y = int(rng.integers(0, SIZE - cut.height + 1))
        box = [x, y, x + cut.width, y + cut.height]
        if all(_iou(box, other) <= 0.3 for _, other in boxes):
            canvas.paste(cut, (x, y))
            boxes.append((name, box))
    return canvas, boxes


def write_scenes(root: Path, n: int, seed: int) -> Path:
    """ROOT/images/NNNN.png and ROOT/instances.json (COCO) of `n` scenes drawn with `seed`."""
    rng = np.random.default_rng(seed)
    photos = {name: photo(name) for name in {*BACKGROUNDS, *(p for p, _ in OBJECTS.values())}}
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        canvas, boxes = scene(i, rng, photos)
        canvas.save(root / "images" / f"{i:04d}.png")
        images.append({"id": i + 1, "file_name": f"{i:04d}.png", "width": SIZE, "height": SIZE})
        for name, (x1, y1, x2, y2) in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": list(OBJECTS).index(name) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": 0})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(OBJECTS)]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return path
