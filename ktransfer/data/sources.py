"""Labelled image sources: a folder of class sub-folders, a TFDS dataset, or a built-in set.

Every source becomes `ImageSet`s (one per split) with known integer labels, so that splitting,
class subsets, few-label sampling and class weights work the same way for all of them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from ktransfer.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}


@dataclass(frozen=True)
class ImageSet:
    """The labelled images of one split.

    Exactly one of `files` (paths of encoded images), `images` (uint8 array [N, H, W, 3]) or
    `tfds_split` (a TFDS split whose records are selected by `tfds_index`) holds the pixels.
    `labels` are int32 indices into `class_names`, one per image.
    """

    class_names: tuple[str, ...]
    labels: np.ndarray
    files: np.ndarray | None = None
    images: np.ndarray | None = None
    tfds_split: tuple[str, str, str] | None = None  # (name, split, data_dir)
    tfds_index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at `indices` (positions in this set)."""
        indices = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            labels=self.labels[indices],
            files=None if self.files is None else self.files[indices],
            images=None if self.images is None else self.images[indices],
            tfds_index=None if self.tfds_index is None else self.tfds_index[indices],
        )

    def relabel(self, class_names: tuple[str, ...]) -> ImageSet:
        """Keeps only images of `class_names` and renumbers labels in that order."""
        missing = [c for c in class_names if c not in self.class_names]
        if missing:
            raise DataError(f"class {missing[0]!r} is not in the data; it has: "
                            f"{', '.join(self.class_names)}")
        new_index = {name: i for i, name in enumerate(class_names)}
        mapping = np.array([new_index.get(c, -1) for c in self.class_names], dtype=np.int32)
        mapped = mapping[self.labels]
        keep = np.flatnonzero(mapped >= 0)
        out = self.subset(keep)
        return dataclasses.replace(out, class_names=tuple(class_names), labels=mapped[keep])

    def dataset(self) -> tf.data.Dataset:
        """(image uint8 [H, W, 3], label int32) pairs, in order; images not yet resized."""
        labels = tf.data.Dataset.from_tensor_slices(self.labels.astype(np.int32))
        if self.images is not None:
            return tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(self.images), labels)
        if self.files is not None:
            files = tf.data.Dataset.from_tensor_slices(self.files.astype(str))
            return tf.data.Dataset.zip(files.map(_decode_file, num_parallel_calls=tf.data.AUTOTUNE,
                                                 deterministic=True), labels)
        return _tfds_images(self)


def _decode_file(path: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


@dataclass(frozen=True)
class Splits:
    """Train, validation and test sets sharing one list of class names."""

    train: ImageSet
    val: ImageSet
    test: ImageSet | None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names


# ---------------------------------------------------------------------------------- built-in


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
    for i, grey in enumerate(base.images[..., 0]):
        digit = np.asarray(Image.fromarray(grey).resize((32, 32), Image.BILINEAR), np.int16)
        photo = photos[int(rng.integers(len(photos)))]
        y = int(rng.integers(0, photo.shape[0] - 32))
        x = int(rng.integers(0, photo.shape[1] - 32))
        patch = photo[y:y + 32, x:x + 32, :3].astype(np.int16)
        out[i] = np.abs(patch - digit[..., None]).astype(np.uint8)
    images = ImageSet(class_names=base.class_names, labels=base.labels, images=out)
    train, test = stratified_split(images.labels, 0.5, seed=0)
    return {"train": images.subset(train), "test": images.subset(test)}


BUILTIN: dict[str, Callable[[], dict[str, ImageSet]]] = {
    "digits": _digits, "digits_rotations": _digits_rotations, "digits_m": _digits_m}


# ---------------------------------------------------------------------------------- folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_problem(path: str) -> str | None:
    """Why `path` is not an image TensorFlow can decode (as the pipeline will), or None."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except (tf.errors.OpError, OSError) as exc:
        text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", str(exc), flags=re.S)
        message = text.strip().splitlines()
        return (message[0] if message else type(exc).__name__)[:120]
    return None


def drop_bad_images(images: ImageSet, on_bad_image: str, flag: str = "data") -> ImageSet:
    """Decodes every file once; a bad one stops with an error naming it (`fail`) or is left
    out with one warning line naming the files and their count (`skip`)."""
    if images.files is None:
        return images
    problems = [(i, f, image_problem(f)) for i, f in enumerate(images.files.tolist())]
    bad = [(i, f, why) for i, f, why in problems if why]
    if not bad:
        return images
    if on_bad_image == "fail":
        _, f, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"--{flag}: {f} is not a readable image ({why}){more}; fix or remove it, "
                        "or pass --on_bad_image=skip")
    names = ", ".join(f for _, f, _ in bad[:10]) + (" ..." if len(bad) > 10 else "")
    log.warning("--%s: skipped %d unreadable image file(s): %s", flag, len(bad), names)
    bad_ids = {i for i, _, _ in bad}
    return images.subset(np.array([i for i in range(len(images)) if i not in bad_ids]))


def read_class_folders(root: str | os.PathLike, flag: str = "data",
                       on_bad_image: str = "fail") -> ImageSet:
    """Reads ROOT/<class>/**/<image> into an ImageSet; class names are the sorted folder names.

    Every file is decoded once up front, so a corrupt file is found here, not mid-training."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--{flag}: folder {str(root)!r} does not exist")
    classes = _class_folders(root)
    if not classes:
        raise DataError(f"--{flag}: {str(root)!r} has no class sub-folders; expected "
                        f"{root}/<class name>/<image files>")
    files: list[str] = []
    labels: list[int] = []
    names: list[str] = []
    empty: list[str] = []
    for folder in classes:
        found = _image_files(folder)
        if not found:
            empty.append(folder.name)
            continue
        files.extend(str(p) for p in found)
        labels.extend([len(names)] * len(found))
        names.append(folder.name)
    if empty:
        log.warning("--%s: skipped %d class folder(s) with no images (%s): %s", flag, len(empty),
                    "/".join(IMAGE_EXTENSIONS), ", ".join(empty))
    if not files:
        raise DataError(f"--{flag}: no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}")
    images = drop_bad_images(ImageSet(class_names=tuple(names), labels=np.array(labels, np.int32),
                                      files=np.array(files)), on_bad_image, flag)
    if len(images) == 0:
        raise DataError(f"--{flag}: none of the image files under {str(root)!r} is readable")
    return images


def _folder(root: Path, flag: str, on_bad_image: str = "fail") -> dict[str, ImageSet]:
    """A folder of classes, or of train/val/test folders of classes."""
    if not root.is_dir():
        raise DataError(f"--{flag}: folder {str(root)!r} does not exist")
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            if (root / name).is_dir() and _class_folders(root / name):
                found[split] = root / name
                break
    if "train" in found:
        return {split: read_class_folders(path, flag, on_bad_image)
                for split, path in found.items()}
    return {"all": read_class_folders(root, flag, on_bad_image)}


# ---------------------------------------------------------------------------------- TFDS


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _tfds_builder(name: str, data_dir: str, flag: str):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as exc:  # DatasetNotFoundError and friends
        raise DataError(f"--{flag}=tfds:{name}: unknown TFDS dataset ({exc.__class__.__name__})"
                        ) from None
    if not builder.is_prepared():
        where = data_dir or "~/tensorflow_datasets"
        if not _online():
            raise DataError(
                f"--{flag}=tfds:{name}: not found in {where} and there is no network. On a "
                f"machine with internet run: python -c \"import tensorflow_datasets as tfds; "
                f"tfds.builder('{name}', data_dir='DIR').download_and_prepare()\", copy DIR "
                f"here and pass --data_dir=DIR")
        log.info("downloading and preparing TFDS %s into %s", name, where)
        builder.download_and_prepare()
    return builder


def _tfds(name: str, data_dir: str, flag: str) -> dict[str, ImageSet]:
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir, flag)
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2:
        raise DataError(f"--{flag}=tfds:{name}: has no (image, label) supervised keys")
    image_key, label_key = keys
    label_feature = builder.info.features[label_key]
    class_names = tuple(getattr(label_feature, "names", None)
                        or [str(i) for i in range(label_feature.num_classes)])
    out = {}
    for split, names in SPLIT_FOLDERS.items():
        tfds_name = next((n for n in names if n in builder.info.splits), None)
        if tfds_name is None:
            continue
        # One pass over the records without decoding images, to know every label.
        records = builder.as_dataset(split=tfds_name, shuffle_files=False,
                                     decoders={image_key: tfds.decode.SkipDecoding()})
        labels = np.fromiter((int(r[label_key]) for r in records.as_numpy_iterator()), np.int32)
        out[split] = ImageSet(class_names=class_names, labels=labels,
                              tfds_split=(name, tfds_name, data_dir),
                              tfds_index=np.arange(len(labels), dtype=np.int64))
    if "train" not in out:
        raise DataError(f"--{flag}=tfds:{name}: has no train split "
                        f"(splits: {', '.join(builder.info.splits)})")
    return out


def _tfds_images(images: ImageSet) -> tf.data.Dataset:
    name, split, data_dir = images.tfds_split
    builder = _tfds_builder(name, data_dir, "data")
    image_key, _ = builder.info.supervised_keys
    records = builder.as_dataset(split=split, shuffle_files=False)
    # Keep the wanted records (by position in the split) with their possibly renumbered labels.
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(images.tfds_index),
                                            tf.constant(images.labels.astype(np.int64))),
        default_value=-1)
    ds = records.enumerate().map(lambda i, r: (r[image_key], tf.cast(table.lookup(i), tf.int32)))
    ds = ds.filter(lambda image, label: label >= 0)
    return ds.map(lambda image, label: (_to_rgb(image), label))


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    """Grey [H, W] / [H, W, 1] or RGBA [H, W, 4] -> RGB [H, W, 3]."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    if image.shape[-1] is None:
        image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]),
                        lambda: image[..., :3])
    else:
        image = tf.tile(image, [1, 1, 3]) if image.shape[-1] == 1 else image[..., :3]
    return tf.ensure_shape(image, [None, None, 3])


# ---------------------------------------------------------------------------------- splitting


def open_source(spec: str, data_dir: str = "", flag: str = "data", on_bad_image: str = "fail"
                ) -> dict[str, ImageSet]:
    """Opens a source string; returns its splits ('all', or some of 'train'/'val'/'test')."""
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTIN:
            raise DataError(f"--{flag}: unknown built-in dataset {name!r}")
        return BUILTIN[name]()
    if spec.startswith("tfds:"):
        return _tfds(spec.split(":", 1)[1], data_dir, flag)
    path = spec.split(":", 1)[1] if spec.startswith("folder:") else spec
    return _folder(Path(path), flag, on_bad_image)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Splits positions into (kept, held_out) with about `fraction` of each class held out.

    Every class with at least 2 images keeps at least one and holds out at least one.
    """
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        else:
            n_held = 0
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def per_class_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Positions of at most `per_class` images of each class, chosen with `seed`."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def load_splits(cfg) -> Splits:
    """Builds the train/validation/test sets a `DataConfig` describes."""
    main = open_source(cfg.data, cfg.data_dir, "data", cfg.on_bad_image)
    train = main.get("train", main.get("all"))
    class_names = tuple(cfg.classes) if cfg.classes else train.class_names
    try:
        train = train.relabel(class_names)
    except DataError as exc:
        raise DataError(f"--classes: {exc}") from None

    def given(flag: str, key: str) -> ImageSet | None:
        spec = getattr(cfg, flag)
        if spec:
            sets = open_source(spec, cfg.data_dir, flag, cfg.on_bad_image)
            chosen = sets.get(key, sets.get("all", sets.get("train")))
        else:
            chosen = main.get(key)
        if chosen is None:
            return None
        try:
            return chosen.relabel(class_names)
        except DataError as exc:
            raise DataError(f"--{flag or 'data'}: {exc}") from None

    test = given("test_data", "test")
    carved = 0.0  # fraction of the data already held out for test
    if test is None and cfg.test_split > 0:
        rest, held = stratified_split(train.labels, cfg.test_split, cfg.split_seed)
        train, test = train.subset(rest), train.subset(held)
        carved = cfg.test_split
    val = given("val_data", "val")
    if val is None:
        # val_split is a fraction of all the data; what is left after the test split is smaller.
        fraction = cfg.val_split / (1.0 - carved)
        rest, held = stratified_split(train.labels, max(fraction, 1e-9), cfg.split_seed + 1)
        train, val = train.subset(rest), train.subset(held)
    if cfg.train_per_class:
        train = train.subset(per_class_sample(train.labels, cfg.train_per_class, cfg.split_seed))
    for name, images in (("training", train), ("validation", val)):
        if len(images) == 0:
            raise DataError(f"--data: the {name} set is empty; add images or change "
                            "--val_split/--test_split")
    if len(class_names) < 2:
        raise DataError(f"--data: found one class only ({class_names[0]!r}); a classifier needs "
                        "at least 2 class folders")
    return Splits(train=train, val=val, test=test if test is not None and len(test) else None)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'balanced' weights n / (k * count_c); classes absent from `labels` get weight 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def pick_split(data: str, data_dir: str, split: str, run_dir: str | None,
               on_bad_image: str = "fail") -> ImageSet:
    """The labelled images `evaluate` scores: `split` of source `data`, or, without `data`, the
    split of the run in `run_dir` as `train` made it (same flags, same seed)."""
    if not data:
        if run_dir is None:
            raise DataError("--data: is required when --model is not a run directory")
        from ktransfer.config import DataConfig, read_run_flags

        cfg = read_run_flags(os.path.join(run_dir, "flags.cfg"), {"data": DataConfig})["data"]
        splits = load_splits(dataclasses.replace(cfg, on_bad_image=on_bad_image))
        chosen = {"train": splits.train, "val": splits.val, "test": splits.test}.get(split)
        if split == "all":
            raise DataError("--split: all needs --data (a run's images are split)")
        if chosen is None:
            raise DataError(f"--split: the run has no {split} split; pass --data")
        return chosen
    sets = open_source(data, data_dir, "data", on_bad_image)
    if split == "all" or split not in sets:
        if "all" in sets:
            return sets["all"]
        if split != "all":
            raise DataError(f"--split: {data} has no {split!r} split; it has "
                            f"{', '.join(sorted(sets))}")
        return _concat(list(sets.values()))
    return sets[split]


def _concat(sets: list[ImageSet]) -> ImageSet:
    if len(sets) == 1:
        return sets[0]
    if all(s.files is not None for s in sets) and len({s.class_names for s in sets}) == 1:
        return dataclasses.replace(sets[0], files=np.concatenate([s.files for s in sets]),
                                   labels=np.concatenate([s.labels for s in sets]))
    raise DataError("--split: all is only supported for folders; pick a split")
