"""The offline transfer demo: the shipped source backbone is reproducible and really transfers.

Seeds are fixed in the flagfiles. Figures over several seeds are in docs/results/index.md.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from ktransfer import config
from ktransfer.training import train

from conftest import REPO, SOURCE_WEIGHTS

pytestmark = pytest.mark.slow  # scheduled first (see conftest.py)


def _run(run_dir, flagfile: str, **overrides) -> float:
    """Test accuracy of a run of `flagfile` (in this process: what is tested is the training,
    not the command line)."""
    with contextlib.chdir(REPO):  # the flagfiles name files relative to the repository
        cfg = config.from_flagfile(flagfile, run_dir=str(run_dir), verbose=0,
                                   tensorboard=False, report=False, **overrides)
        return train(cfg).metrics["test"]["accuracy"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> dict[str, float]:
    """Test accuracy of the same network from random weights on the same 10 labelled images:
    the usual recipe (BatchNorm trains) and one with BatchNorm frozen, which can do better on
    tiny batches. The transferred model must beat the better of the two."""
    tmp = tmp_path_factory.mktemp("scratch")
    return {"bn_trains": _run(tmp / "bn", "configs/quickstart_scratch.cfg"),
            "bn_frozen": _run(tmp / "nobn", "configs/quickstart_scratch.cfg", bn_trainable=False)}


@pytest.mark.slow
def test_quickstart_transfer_beats_scratch_by_10_points(tmp_path, scratch):
    transferred = _run(tmp_path / "transfer", "configs/quickstart.cfg")
    assert transferred >= max(scratch.values()) + 0.10, (transferred, scratch)


def _pooled_features(weights) -> np.ndarray:
    """small_cnn's global-average-pooled features [1797, 128] of the 1,797 digits at 32 px."""
    import tensorflow as tf

    from ktransfer.image.backbones import small_cnn
    from ktransfer.image.builtin import BUILTIN

    images = BUILTIN.get("digits")()["all"].images
    pixels = tf.image.resize(images.astype("float32"), (32, 32)).numpy() / 255.0  # scale01
    backbone = small_cnn((32, 32, 3))
    backbone.load_weights(weights)
    return backbone.predict(pixels, batch_size=256, verbose=0).mean(axis=(1, 2))


def _linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) of two [N, D] feature sets: 1 when
    they differ by a rotation and scaling, near 0 for unrelated features."""
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    return float(np.linalg.norm(a.T @ b) ** 2
                 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))


# 3 minutes on 2 cores (plus the scratch runs): `make test-assets`, which CI runs after `make test`.
@pytest.mark.assets
def test_source_backbone_is_recreated_by_its_flagfile(tmp_path, scratch):
    accuracy = _run(tmp_path / "source", "configs/digits_source.cfg")
    assert accuracy >= 0.9  # 20 classes: digits 0-4 in 4 orientations
    recreated = tmp_path / "source" / "backbone.weights.h5"
    # Training from the same seeds is not bit-equal across CPUs (float reductions differ), and
    # the weights themselves drift apart within a few epochs, so the check is on what the
    # backbone computes. Measured on this project's VM against the shipped weights: the
    # flagfile 0.984, the flagfile with --seed=1 0.947, trained on the digits without the
    # rotations 0.843, for 2 epochs instead of 15 0.722, random weights 0.09-0.12.
    cka = _linear_cka(_pooled_features(recreated), _pooled_features(SOURCE_WEIGHTS))
    assert cka >= 0.9, cka
    # And it transfers like the shipped one.
    transferred = _run(tmp_path / "target", "configs/quickstart.cfg", weights=str(recreated))
    assert transferred >= max(scratch.values()) + 0.05, (transferred, scratch)
