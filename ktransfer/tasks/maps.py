"""`MapHead`: the part of a task whose head reads the backbone's feature maps at several
strides (a detector's feature pyramid) instead of one pooled vector per example.

The image modality cuts the backbone at the last layer of each stride the part asks for
(`strides`, in input pixels per map cell) and hands it those maps; the part builds everything
after them. A task without this part gets the pooled head (`Task.output`).
"""

from __future__ import annotations

import abc
from typing import Any


class MapHead(abc.ABC):
    """A head on feature maps (see the module docstring)."""

    strides: tuple[int, ...] = (8, 16, 32)

    @abc.abstractmethod
    def build(self, maps: dict[int, Any], image_size: int, outputs: int, options: Any) -> Any:
        """The model's output from `maps` {stride: [B, S / stride, S / stride, D]} of images
        `image_size` (S) pixels wide; `outputs`: `Task.outputs`; `options`: the task group."""
