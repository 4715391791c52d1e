"""`ImageOptions`: the image modality's config group (a table's file column, the bad-image
policy and the training-time augmentation), declared by its registration
(`ktransfer.modality`) and read as `cfg.group("image")`."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import option, require
from ktransfer.image.augmentation import Augmentation


@dataclass(frozen=True)
class ImageOptions(Augmentation):
    """Image inputs (--modality=image): file column, bad files, size, pixels, augmentation."""

    file_column: str = option("file", "CSV / TSV / JSON-lines data: the column (key) holding "
                              "each image's path (relative to the table's folder, or "
                              "absolute); --label_column holds its label.", reading=True)

    on_bad_image: str = option("fail", "An image file that cannot be decoded (corrupt, "
                               "truncated, empty, not an image): stop with an error naming it, "
                               "or skip it with one warning line.", ("fail", "skip"),
                               reading=True)

    image_size: int = option(0, "Square input size in pixels; 0 uses the backbone's default.")
    preprocess: str = option("auto", "Pixel preprocessing before the backbone; auto: the "
                             "registry's for keras.applications, scale01 ([0,1]) for hub:, the "
                             "saved model's own (or none) for file:.", ("auto",),
                             registry="ktransfer.image.catalog:PREPROCESSING")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.file_column), "file_column", "give a column name")
        require(self.image_size == 0 or 8 <= self.image_size <= 4096, "image_size",
                f"must be 0 (backbone default) or in [8, 4096], got {self.image_size}")
