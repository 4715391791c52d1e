"""`ImageOptions`: the image modality's config group (the bad-image policy), declared by its
registration (`ktransfer.modality`) and read as `cfg.group("image")`."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import option, require


@dataclass(frozen=True)
class ImageOptions:
    """Image inputs (--modality=image): a table's file column, what to do with a file that
    cannot be decoded."""

    file_column: str = option("file", "CSV / TSV / JSON-lines data: the column (key) holding "
                              "each image's path (relative to the table's folder, or "
                              "absolute); --label_column holds its label.", reading=True)

    on_bad_image: str = option("fail", "An image file that cannot be decoded (corrupt, "
                               "truncated, empty, not an image): stop with an error naming it, "
                               "or skip it with one warning line.", ("fail", "skip"),
                               reading=True)

    def __post_init__(self) -> None:
        require(bool(self.file_column), "file_column", "give a column name")
