"""`ImageOptions`: the image modality's config group (the bad-image policy), declared by its
registration (`ktransfer.modality`) and read as `cfg.group("image")`."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import option


@dataclass(frozen=True)
class ImageOptions:
    """Image inputs (--modality=image): what to do with a file that cannot be decoded."""

    on_bad_image: str = option("fail", "An image file that cannot be decoded (corrupt, "
                               "truncated, empty, not an image): stop with an error naming it, "
                               "or skip it with one warning line.", ("fail", "skip"),
                               reading=True)
