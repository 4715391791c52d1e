"""`Augmentation`: the image modality's training-time augmentation flags (part of its config
group, `ImageOptions`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ktransfer.config.fields import option, require


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation; every transform is off at 0 / none."""

    aug_crop: float = option(0.0, "Random resized crop: smallest kept area fraction (e.g. 0.5); "
                            "0 turns it off.")
    aug_flip: str = option("none", "Random flips.", ("none", "horizontal", "vertical", "both"))
    aug_rotation: float = option(0.0, "Random rotation, as a fraction of a full turn (0.05 = "
                                "+-18 degrees).")
    aug_zoom: float = option(0.0, "Random zoom, as a fraction of the size (0.1 = +-10%).")
    aug_translate: float = option(0.0, "Random translation, as a fraction of the size.")
    aug_contrast: float = option(0.0, "Random contrast factor (0.2 = +-20%).")
    aug_noise: float = option(0.0, "Gaussian pixel noise, standard deviation in 0-255 units.")
    aug_shear: float = option(0.0, "Random shear along x and y, as a fraction (0.2 = up to "
                             "+-0.2).")
    aug_color_jitter: float = option(0.0, "Colour jitter strength S: brightness +-S/2 of the "
                                    "pixel range, contrast +-S, saturation 0.5+-S/2 (Keras's "
                                    "scale, 0.5 = unchanged).")
    aug_randaugment: str = option("", "RandAugment as N,M: N random operations per image at "
                                 "magnitude M of 10 (e.g. 2,9); empty turns it off.")
    aug_erasing: float = option(0.0, "Random erasing: probability of blanking a random patch "
                               "of each image with noise.")
    aug_mixup: float = option(0.0, "MixUp: alpha of the Beta(alpha, alpha) mixing weight "
                             "(0.2 is usual); labels are mixed too.")
    aug_cutmix: float = option(0.0, "CutMix: alpha of the Beta(alpha, alpha) pasted area "
                              "(1.0 is usual); with --aug_mixup, each batch gets one of the two.")

    def __post_init__(self) -> None:
        require(0.0 <= self.aug_crop < 1.0, "aug_crop", "must be in [0, 1)")
        for name in ("aug_rotation", "aug_zoom", "aug_translate", "aug_contrast", "aug_shear",
                     "aug_color_jitter", "aug_erasing"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, f"must be in [0, 1], got {value}")
        for name in ("aug_noise", "aug_mixup", "aug_cutmix"):
            require(getattr(self, name) >= 0.0, name, "must be >= 0")
        if self.aug_randaugment:
            self.randaugment()

    def randaugment(self) -> tuple[int, float]:
        """(N operations, magnitude M in 0..10) of --aug_randaugment."""
        parts = self.aug_randaugment.split(",")
        try:
            n, m = int(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            n, m = -1, -1.0
        require(len(parts) == 2 and 1 <= n <= 10 and 0 <= m <= 10, "aug_randaugment",
                f"give N,M with N operations in 1..10 and magnitude M in 0..10 (e.g. 2,9), got "
                f"{self.aug_randaugment!r}")
        return n, m

    @property
    def mixes_labels(self) -> bool:
        """MixUp or CutMix: training labels become soft (mixed one-hot vectors)."""
        return bool(self.aug_mixup or self.aug_cutmix)

    def first_enabled(self) -> str | None:
        """The name of the first transform that is on; None when all are off."""
        return next((f.name for f in dataclasses.fields(self) if f.name.startswith("aug_")
                     and getattr(self, f.name) not in (0, 0.0, "none", "")), None)

    @property
    def enabled(self) -> bool:
        return self.first_enabled() is not None
