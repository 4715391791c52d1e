"""Real photographs that ship with scikit-image and scikit-learn, for checking an ImageNet
network offline: each photo with the ImageNet classes it should get, chosen before any network
saw it (`PHOTOS`), and a top-5 check (`top5_hits`).

The astronaut portrait is kept although ImageNet has no class for a person: it is reported,
never counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Photo:
    """A bundled photo and the ImageNet class ids (0-999) that count as right for it."""

    name: str
    load: Callable[[], np.ndarray]
    expected: tuple[int, ...]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        found = getattr(data, name)()
        return found[0] if name == "stereo_motorcycle" else found
    return load


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]
    return load


PHOTOS = (
    Photo("chelsea (a cat)", _skimage("chelsea"), (281, 282, 283, 284, 285)),  # domestic cats
    Photo("coffee (a cup)", _skimage("coffee"), (504, 967, 968)),  # coffee mug, espresso, cup
    Photo("rocket", _skimage("rocket"), (657, 744, 812)),  # missile, projectile, space shuttle
    Photo("astronaut (a portrait)", _skimage("astronaut"), ()),  # no ImageNet class: reported
    Photo("motorcycle_left", _skimage("stereo_motorcycle"), (665, 670)),  # moped, scooter
    Photo("clock_motion (grey)", _skimage("clock"), (409, 892)),  # analog clock, wall clock
    Photo("camera (grey: a cameraman)", _skimage("camera"), (732, 759, 872)),  # cameras, tripod
    Photo("china (a temple)", _sklearn(0), (442, 497, 663, 698, 832)),  # bell cote .. stupa
    Photo("flower", _sklearn(1), (309, 738, 946, 985, 989)),  # bee, pot, cardoon, daisy, hip
)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """RGB [size, size, 3] float32 in [0, 255]: the shorter side resized to `size` (bicubic),
    then the centre cut out; grey images get three equal channels."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    height, width = image.shape[:2]
    scale = size / min(height, width)
    resized = Image.fromarray(image[..., :3]).resize(
        (max(size, round(width * scale)), max(size, round(height * scale))),
        Image.Resampling.BICUBIC)
    array = np.asarray(resized, np.float32)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return array[top:top + size, left:left + size]


def photos(size: int) -> np.ndarray:
    """Every photo of `PHOTOS`, centre-cropped: [N, size, size, 3] in [0, 255]."""
    return np.stack([center_crop(photo.load(), size) for photo in PHOTOS])


def top5_hits(logits: np.ndarray) -> list[bool | None]:
    """Per photo: whether an expected class is among the 5 highest logits ([N, 1000]); None
    where nothing is expected."""
    found: list[bool | None] = []
    for photo, row in zip(PHOTOS, logits, strict=True):
        top = set(np.argsort(-row)[:5].tolist())
        found.append(bool(top & set(photo.expected)) if photo.expected else None)
    return found
