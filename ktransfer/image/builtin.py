"""Built-in image sets, made offline from data that ships with scikit-learn and scikit-image:
`builtin:digits`, `builtin:digits_rotations` (a richer source task), `builtin:digits_m` (a
domain-shifted copy for adaptation) and `builtin:faces` (real photo patches)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ktransfer.data.splits import stratified_split
from ktransfer.image.imageset import ImageSet
from ktransfer.registry import Registry

BUILTIN: Registry[Callable[[], dict[str, ImageSet]]] = Registry("built-in image dataset", "data")


def _digits() -> dict[str, ImageSet]:
    """scikit-learn's 1,797 8x8 handwritten digits (0-16 grey levels) as uint8 RGB."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    names = tuple(str(c) for c in bunch.target_names)
    return {"all": ImageSet(class_names=names, labels=bunch.target.astype(np.int32), images=rgb)}


def _digits_rotations() -> dict[str, ImageSet]:
    """The digits in 4 orientations, one class per (digit, rotation): '3_rot90' is a 3 turned a
    quarter anticlockwise. 40 classes, 7,188 images: a richer source task than the digits alone."""
    base = _digits()["all"]
    assert base.images is not None
    images = np.concatenate([np.rot90(base.images, k, axes=(1, 2)) for k in range(4)])
    labels = np.concatenate([base.labels * 4 + k for k in range(4)]).astype(np.int32)
    names = tuple(f"{d}_rot{90 * k}" for d in base.class_names for k in range(4))
    return {"all": ImageSet(class_names=names, labels=labels, images=images)}


def _digits_m() -> dict[str, ImageSet]:
    """Digits-M, a domain-shifted copy of the digits made the MNIST-M way (Ganin et al. 2016):
    each digit, upscaled to 32x32, blended with a random 32x32 patch of a colour photo
    (scikit-image's bundled astronaut, coffee, chelsea, rocket, hubble and retina images) as
    |patch - digit|. Split 50/50, stratified, into 'train' (use it unlabelled as --target_data)
    and 'test' (labelled, for --target_eval_data). Seeded: the same images every time."""
    from PIL import Image
    from skimage import data as photos_module

    base = _digits()["all"]
    photos = [getattr(photos_module, name)() for name in
              ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")]
    rng = np.random.default_rng(1234)
    out = np.empty((len(base), 32, 32, 3), np.uint8)
    assert base.images is not None
    for i, grey in enumerate(base.images[..., 0]):
        digit = np.asarray(Image.fromarray(grey).resize((32, 32), Image.Resampling.BILINEAR),
                           np.int16)
        photo = photos[int(rng.integers(len(photos)))]
        y = int(rng.integers(0, photo.shape[0] - 32))
        x = int(rng.integers(0, photo.shape[1] - 32))
        patch = photo[y:y + 32, x:x + 32, :3].astype(np.int16)
        out[i] = np.abs(patch - digit[..., None]).astype(np.uint8)
    images = ImageSet(class_names=base.class_names, labels=base.labels, images=out)
    train, test = stratified_split(images.labels, 0.5, seed=0)
    return {"train": images.subset(train), "test": images.subset(test)}


def _faces() -> dict[str, ImageSet]:
    """scikit-image's `lfw_subset`: 200 real 25x25 grey photo patches, 100 faces (from Labeled
    Faces in the Wild) and 100 non-faces (background patches of the same photos), as uint8 RGB."""
    from skimage import data as photos_module

    patches = photos_module.lfw_subset()
    grey = np.round(np.clip(patches, 0.0, 1.0) * 255.0).astype(np.uint8)
    labels = np.repeat(np.array([0, 1], np.int32), [100, 100])
    return {"all": ImageSet(class_names=("face", "not_face"), labels=labels,
                            images=np.repeat(grey[..., None], 3, axis=-1))}


BUILTIN.register("digits", _digits)
BUILTIN.register("digits_rotations", _digits_rotations)
BUILTIN.register("digits_m", _digits_m)
BUILTIN.register("faces", _faces)


