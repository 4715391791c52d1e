"""Is tf.data the bottleneck? Training throughput from an on-disk folder of JPEGs against the
same images already decoded in memory.

    python benchmarks/input_pipeline.py [--images=1200] [--image_size=96]

The folder holds real photo crops (scikit-image's sample photos) as 200x200 JPEGs; the model is
MobileNetV3Small (random weights), frozen, at --image_size. Rows: the folder with the decoded
images cached in memory after the first epoch (ktransfer's default, --cache=memory), the folder
decoded every epoch (--cache=none), and the in-memory array. Images/second over epochs 2-3; one
run on the machine named in the output.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.image.backbones import build_backbone, get_spec  # noqa: E402
from ktransfer.image.classifier import build_classifier  # noqa: E402
from ktransfer.image.imageset import ImageSet
from ktransfer.image.pipeline import make_dataset  # noqa: E402
from ktransfer.image.sources import read_class_folders  # noqa: E402
from ktransfer.network.freezing import freeze  # noqa: E402


def photo_crops(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random 200x200 crops of scikit-image's sample photos, 4 classes (the photo index)."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        label = i % len(photos)
        photo = photos[label]
        y = int(rng.integers(0, photo.shape[0] - 200))
        x = int(rng.integers(0, photo.shape[1] - 200))
        images.append(photo[y:y + 200, x:x + 200])
        labels.append(label)
    return np.stack(images), np.array(labels, np.int32)


def images_per_second(images: ImageSet, cache: str, size: int, batch: int) -> float:
    keras.utils.set_random_seed(0)
    spec = get_spec("MobileNetV3Small")
    backbone = build_backbone(spec, "none", size)
    model = build_classifier(spec, backbone, len(images.class_names), size,
                             config.ModelConfig(backbone="MobileNetV3Small", weights="none"))
    freeze(backbone)
    model.compile("adam", "categorical_crossentropy")
    ds = make_dataset(images, image_size=size, batch_size=batch, training=True, cache=cache)
    model.fit(ds, epochs=1, verbose=0)  # trace; fills the cache
    started = time.perf_counter()
    model.fit(ds, epochs=2, verbose=0)
    return 2 * len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    pixels, labels = photo_crops(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (image, label) in enumerate(zip(pixels, labels, strict=True)):
            folder = Path(tmp) / f"class{label}"
            folder.mkdir(exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.jpg", quality=90)
        on_disk = read_class_folders(tmp)
        in_memory = ImageSet(class_names=on_disk.class_names, labels=labels, images=pixels)
        rows = [("folder, --cache=memory", images_per_second(on_disk, "memory",
                                                             args.image_size, args.batch_size)),
                ("folder, --cache=none", images_per_second(on_disk, "none", args.image_size,
                                                           args.batch_size)),
                ("in-memory array", images_per_second(in_memory, "none", args.image_size,
                                                      args.batch_size))]
    print(f"input_pipeline: {args.images} JPEGs 200x200 -> {args.image_size} px, batch "
          f"{args.batch_size}, MobileNetV3Small frozen; machine: {platform.node()} "
          f"({platform.machine()}, {os.cpu_count()} CPUs); one run")
    reference = rows[-1][1]
    print(f"{'source':<24} {'images/s':>9} {'vs memory':>10}")
    for name, speed in rows:
        print(f"{name:<24} {speed:>9.1f} {speed / reference:>9.2f}x")


if __name__ == "__main__":
    main()
