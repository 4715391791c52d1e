"""Writes efficientnet_lite_reference.npz: ImageNet logits of fixed inputs through the PyTorch
reference (efficientnet-lite-pytorch's model code on the same packaged weights), for
tests/test_efficientnet_lite.py to check the Keras conversion against in `make test`,
without PyTorch.

Run from the repository root with the reference extra installed (`make test-assets` installs
it): python tests/data/make_lite_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

from ktransfer.image import efficientnet_lite as lite

sys.path.insert(0, str(Path(__file__).parents[1]))
from conftest import lite_reference_inputs  # noqa: E402

OUT = Path(__file__).with_name("efficientnet_lite_reference.npz")


def main() -> None:
    found = {}
    for key, variant in lite.VARIANTS.items():
        model = EfficientNet.from_pretrained(key.replace("_", "-"),
                                             weights_path=str(lite.weights_file(variant)))
        x = torch.from_numpy((lite_reference_inputs(key) - 127.0) / 128.0).permute(0, 3, 1, 2)
        with torch.no_grad():
            found[key] = model.eval()(x).numpy()
    np.savez_compressed(OUT, **found)
    print(f"written: {OUT}")


if __name__ == "__main__":
    main()
