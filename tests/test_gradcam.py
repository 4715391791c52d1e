"""Grad-CAM: where the heat goes, which layer is weighed, and what has no map."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from ktransfer import config
from ktransfer.errors import ConfigError
from ktransfer.image.gradcam import (
    SHOWN_SIDE,
    GradCAM,
    overlay,
    shown_size,
    spatial_layer,
    write_overlays,
)
from ktransfer.image.modality import IMAGE
from ktransfer.network.classifier import get_backbone


def corner_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[n, 32, 32, 3] noise in [0, 255]; class 1 has a bright 8x8 square in the top-left
    corner, class 0 has none: only that corner decides the class."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 120, size=(n, 32, 32, 3)).astype("float32")
    y = np.arange(n) % 2
    x[y == 1, 2:10, 2:10, :] = 255.0
    return x, y


@pytest.fixture(scope="module")
def corner_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    cfg = config.build(data="builtin:digits", backbone="small_cnn", weights="none",
                       image_size=32)
    model = IMAGE.build(cfg, 2).model
    x, y = corner_images(256)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, np.eye(2)[y], batch_size=32, epochs=6, verbose=0)
    test_x, test_y = corner_images(64, seed=1)
    assert model.evaluate(test_x, np.eye(2)[test_y], verbose=0)[1] > 0.95
    return model


@pytest.mark.slow  # a run on corner images: make test-slow
def test_the_heat_of_the_corner_class_peaks_in_that_corner(corner_model):
    x, y = corner_images(16, seed=2)
    cam = GradCAM(corner_model)
    assert cam.layer == "block3_relu1"  # the last spatial map of small_cnn
    maps = cam.heatmaps(x[y == 1], [1] * int((y == 1).sum()))
    assert maps.shape == (8, 32, 32) and maps.min() >= 0.0 and maps.max() <= 1.0
    for heat in maps:
        peak = np.unravel_index(np.argmax(heat), heat.shape)
        assert peak[0] < 16 and peak[1] < 16, peak  # the top-left quadrant
        assert heat[:16, :16].mean() > 2 * heat[16:, 16:].mean()


@pytest.mark.parametrize("layer", ["", "block2_conv1"])
def test_recording_from_the_map_on_gives_the_maps_of_the_whole_backbone(corner_model, layer):
    x, y = corner_images(6, seed=3)
    cam = GradCAM(corner_model, layer)
    assert cam._cut is not None
    cut = cam.heatmaps(x, list(y))
    whole = GradCAM(corner_model, layer)
    whole._cut = None  # the tape over the whole backbone, as for a skip connection across it
    backbone = get_backbone(corner_model)
    whole._maps = keras.Model(backbone.input, [backbone.get_layer(cam.layer).output,
                                               backbone.output])
    np.testing.assert_allclose(cut, whole.heatmaps(x, list(y)), atol=1e-5)


def test_a_map_with_a_skip_connection_across_it_is_weighed_through_the_whole_backbone():
    inputs = keras.Input((16, 16, 3))
    first = keras.layers.Conv2D(4, 3, padding="same", name="first")(inputs)
    second = keras.layers.Conv2D(4, 3, padding="same", name="second")(first)
    across = keras.layers.Add()([first, keras.layers.Conv2D(4, 1, name="third")(second)])
    backbone = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(across),
                           name="backbone")
    model = keras.Sequential([keras.Input((16, 16, 3)), backbone,
                              keras.layers.Dense(2, activation="softmax")])
    cam = GradCAM(model, "second")
    assert cam._cut is None
    maps = cam.heatmaps(np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)), [0, 1])
    assert maps.shape == (2, 16, 16) and np.isfinite(maps).all()


def test_a_named_layer_is_used_and_a_wrong_one_is_named(corner_model):
    assert GradCAM(corner_model, "block2_conv1").layer == "block2_conv1"
    with pytest.raises(ConfigError, match="^--explain_layer: 'block9' is not a layer"):
        GradCAM(corner_model, "block9")
    vectors = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)], name="hub_like")
    with pytest.raises(ConfigError, match="no layer with a spatial feature map"):
        spatial_layer(vectors)
    assert get_backbone(corner_model).name == "backbone"


def test_overlays_are_written_one_per_image(corner_model, tmp_path):
    x, _ = corner_images(3, seed=3)
    paths = write_overlays(GradCAM(corner_model), x, [1, 1, 0],
                           ["a/img.png", "b/img.png", "c.jpg"], tmp_path)
    assert [p.name for p in paths] == ["0000-img.png", "0001-img.png", "0002-c.png"]
    assert shown_size(8, 16) == (112, 224) and shown_size(600, 400) == (600, 400)
    blended = overlay(x[0], np.ones((32, 32)))
    assert blended.dtype == np.uint8 and blended.shape == (32, 32, 3)
    assert blended[..., 0].mean() > x[0][..., 0].mean()  # heat 1 is red in the jet map


def test_predict_explain_writes_a_heat_map_per_image_of_its_top_class(tmp_path):
    from PIL import Image

    from ktransfer.deploy.prediction import predict_saved
    from ktransfer.training import train

    from conftest import tiny_values, write_images

    run = train(config.build(**tiny_values(tmp_path, data=str(write_images(
        tmp_path / "data", per_class=6)), image_size=32, epochs=1))).run_dir
    images = write_images(tmp_path / "new", per_class=2)
    out = predict_saved(config.PredictConfig(model=str(run), explain=str(tmp_path / "why")),
                        [str(images)])
    written = sorted((tmp_path / "why").iterdir())
    assert len(written) == len(out.splitlines()) == 6  # 3 classes x 2
    assert written[0].name.startswith("0000-") and written[-1].name.startswith("0005-")
    # drawn on the image as read, scaled up to be seen (the model's input is 32 px)
    assert all(max(Image.open(w).size) == SHOWN_SIDE for w in written)
    with pytest.raises(ConfigError, match="^--explain_layer: 'nope' is not a layer"):
        predict_saved(config.PredictConfig(model=str(run), explain=str(tmp_path / "x"),
                                           explain_layer="nope"), [str(images)])
    assert not (tmp_path / "x").exists()  # refused before any prediction


def test_backbones_without_a_spatial_map_are_refused(hub_module):
    cfg = config.build(data="builtin:digits", backbone=f"hub:{hub_module}", image_size=32)
    model = IMAGE.build(cfg, 3).model
    with pytest.raises(ConfigError, match="no layer with a spatial feature map"):
        IMAGE.presentation.explainer(model, None, "")


def test_the_gallery_reads_the_images_at_the_positions_it_shows(tmp_path):
    from ktransfer.image.gallery import _tiles
    from ktransfer.image.imageset import ImageSet

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (9, 8, 8, 3), dtype=np.uint8)
    files = []
    for i, image in enumerate(pixels):  # files: only the shown ones are decoded
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(files[-1])
    for images in (ImageSet(("a", "b"), np.arange(9) % 2, images=pixels),
                   ImageSet(("a", "b"), np.arange(9) % 2, files=np.array(files))):
        tiles = _tiles(images, [(7, 1, "seven"), (2, 0, "two"), (5, 1, "five")], None)
        assert [t[0][1] for t in tiles] == ["seven", "two", "five"]
        for (tile, _), i in zip((t[0] for t in tiles), (7, 2, 5), strict=True):
            np.testing.assert_array_equal(tile, pixels[i])
