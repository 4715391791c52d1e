"""Shared fixtures: tiny configs, generated image folders, and a runner for the real CLI."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCE_WEIGHTS = REPO / "ktransfer" / "assets" / "digits04_small_cnn.weights.h5"


def pytest_collection_modifyitems(config, items):
    """Long tests (marked slow) first, so that they do not end the run alone; `make test` keeps
    this order across xdist workers with --no-loadscope-reorder."""
    def order(item) -> tuple[bool, bool]:  # the longest file (the transfer demo) leads
        return item.get_closest_marker("slow") is None, "test_transfer.py" not in item.nodeid

    items.sort(key=order)  # stable: otherwise collection order


@pytest.fixture
def repo() -> Path:
    return REPO


def tiny_values(tmp_path: Path, **overrides) -> dict:
    """Keyword values of a fast run: digits, small_cnn at 16 px, one epoch, quiet."""
    values = dict(data="builtin:digits", backbone="small_cnn", weights="none", image_size=16,
                  batch_size=32, epochs=1, fine_tune_epochs=0, verbose=0, tensorboard=False,
                  report=False,
                  run_dir=str(tmp_path / "run"))
    values.update(overrides)
    return values


@pytest.fixture
def tiny_config(tmp_path):
    from ktransfer import config

    def make(**overrides):
        return config.build(**tiny_values(tmp_path, **overrides))

    return make


def write_images(root: Path, per_class: int = 12, size: int = 24, seed: int = 0,
                 classes: tuple[str, ...] = ("cat", "dog", "bird")) -> Path:
    """A folder of learnable classes (each a dominant colour plus noise), in mixed formats and
    sizes: png, jpg, bmp and gif."""
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [200, 200, 40]])
    formats = ["png", "jpg", "bmp", "gif"]
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = size + int(rng.integers(0, 9)), size + int(rng.integers(0, 9))
            pixels = colours[c % len(colours)] + rng.normal(0, 25, (h, w, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            fmt = formats[i % len(formats)]
            image.save(folder / f"img{i:03d}.{fmt}")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_images(tmp_path / "images")


def run_cli(module: str, *args: str, cwd: Path = REPO, timeout: float = 600
            ) -> subprocess.CompletedProcess:
    """Runs `python -m ktransfer.<module> ARGS` in a subprocess, as a user would."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", f"ktransfer.{module}", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one-line error a failed command printed (its last stderr line)."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> Path:
    """A real TFDS dataset, `tiny_shapes` (train 30 / test 12, 3 colour classes), prepared
    offline into a data_dir, as `tfds build` would leave it."""
    import tensorflow_datasets as tfds

    class TinyShapes(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["red", "green", "blue"])}),
                supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(30, 0),
                    "test": self._generate_examples(12, 1)}

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                image = rng.integers(0, 60, (20, 20, 3)).astype(np.uint8)
                image[..., i % 3] += 180
                yield i, {"image": image, "label": i % 3}

    data_dir = tmp_path_factory.mktemp("tfds")
    TinyShapes(data_dir=str(data_dir)).download_and_prepare()
    return data_dir


def save_hub_module(path: Path, seed: int = 0) -> Path:
    """Exports a TF2 SavedModel shaped like a TF Hub image feature-vector module: `__call__`
    (images [B, H, W, 3] in [0, 1], training) -> features [B, 128], plus `variables`,
    `trainable_variables` and `regularization_losses`. With training=True it updates a
    BatchNorm-style moving mean (a non-trainable variable), as real modules do."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    module = tf.train.Checkpoint()
    module.kernel = tf.Variable(rng.normal(0, 0.5, (3, 3, 3, 8)).astype("float32"),
                                name="conv/kernel")
    module.bias = tf.Variable(np.zeros(8, "float32"), name="conv/bias")
    module.moving_mean = tf.Variable(np.zeros(8, "float32"), trainable=False,
                                     name="bn/moving_mean")

    @tf.function
    def call(images, training=False):
        x = tf.nn.conv2d(images, module.kernel, 2, "SAME") + module.bias
        if training:
            mean = tf.reduce_mean(x, axis=[0, 1, 2])
            module.moving_mean.assign(0.9 * module.moving_mean + 0.1 * mean)
        else:
            mean = module.moving_mean
        x = tf.image.resize(tf.nn.relu(x - mean), [4, 4], method="bilinear")
        return tf.reshape(x, [-1, 4 * 4 * 8])

    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    module.__call__ = call
    module.variables = [module.kernel, module.bias, module.moving_mean]
    module.trainable_variables = [module.kernel, module.bias]
    module.regularization_losses = []
    tf.saved_model.save(module, str(path))
    return path


@pytest.fixture(scope="session")
def hub_module(tmp_path_factory) -> Path:
    """A local TF Hub-style module folder (see `save_hub_module`)."""
    return save_hub_module(tmp_path_factory.mktemp("hub") / "feature_vector")


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> Path:
    """A run of configs/quickstart.cfg, its head phase only (20 epochs), with its report."""
    from ktransfer import config
    from ktransfer.training import train

    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    cfg = config.from_flagfile(REPO / "configs" / "quickstart.cfg", fine_tune_epochs=0,
                               verbose=0, tensorboard=False, report=True, run_dir=str(run_dir),
                               weights=str(SOURCE_WEIGHTS))
    train(cfg)
    return run_dir


def digit_jpeg(path: Path, index: int = 0, size: int = 40) -> Path:
    """A real JPEG of a scikit-learn digit (class str(target)), upscaled to `size` px."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images[index] * 16, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).convert("RGB").resize((size, size)).save(path, quality=90)
    return path
