"""Image backbones: every keras.applications family and ktransfer's own `small_cnn` (the
`BACKBONES` registry), TF Hub modules (`hub:HANDLE`) and your own `.keras` models (`file:PATH`).

Each entry knows how to build the headless network, which preprocessing its weights expect and
its default input size. Preprocessing runs inside the model (`image.preprocess`), so
a trained or exported model takes raw RGB pixels in [0, 255].
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import keras

from ktransfer.config import ModelConfig
from ktransfer.deploy.saving import load_model
from ktransfer.errors import ConfigError, WeightsError, first_line
from ktransfer.image.catalog import APPLICATIONS, BACKBONES, SOURCES, check_backbone_name
from ktransfer.network.hub import HubBackbone


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone. `build(input_shape, weights)` returns a headless Model whose
    output is a feature map [B, h, w, C] (or a vector [B, C])."""

    name: str
    family: str
    preprocess: str
    default_size: int
    min_size: int
    build: Callable[[tuple[int, int, int], str | None], keras.Model]
    has_imagenet: bool = True
    own_weights: bool = False  # hub:, file:, kerashub: backbones: weights come with them
    # The backbone's own preprocessing layer (keras-hub's image converter), instead of a mode.
    make_preprocess: Callable[[], keras.layers.Layer] | None = None
    # Pre-flight of `--weights` (e.g. that ImageNet weights are installed); raises a KtransferError.
    check: Callable[[str], None] | None = None


def _app_builder(fn_name: str) -> Callable[[tuple[int, int, int], str | None], keras.Model]:
    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        fn = getattr(keras.applications, fn_name)
        return fn(include_top=False, weights=weights, input_shape=input_shape)

    return build


def small_cnn(input_shape: tuple[int, int, int] = (32, 32, 3)) -> keras.Model:
    """A 5-conv BatchNorm CNN (~0.1M weights) for small images, demos and fast tests.

    Output: feature map [B, S/4, S/4, 128]. Layers are named blockN_* so blocks can be unfrozen.
    """
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for block, (filters, convs) in enumerate(((32, 2), (64, 2), (128, 1)), start=1):
        for i in range(1, convs + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                    name=f"block{block}_conv{i}")(x)
            # momentum 0.9: short runs on small data (a few hundred steps) must still end
            # with moving statistics that match the data, not the initial variance of 1.
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{i}")(x)
            x = keras.layers.Activation("relu", name=f"block{block}_relu{i}")(x)
        if block < 3:
            x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="small_cnn")


def _small_cnn_builder(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    model = small_cnn(input_shape)
    if weights:
        model.load_weights(weights)
    return model


# The registry's entries (image.catalog.BACKBONES): one spec per keras.applications network.
for _name, _family, _mode, _size, _min_size in APPLICATIONS:
    globals()[_name] = BackboneSpec(_name, _family, _mode, _size, _min_size, _app_builder(_name))
SMALL_CNN = BackboneSpec("small_cnn", "ktransfer", "scale01", 32, 8, _small_cnn_builder,
                         has_imagenet=False)


@dataclass(frozen=True)
class BackboneSource:
    """Backbones named SOURCE:HANDLE (`--backbone=hub:URL`, `file:PATH.keras`, ...).

    Args:
        spec: (handle, model flags) -> the backbone's spec (how to build it).
        check: pre-flight on (handle, model flags), before any work; raises ConfigError
            naming the flag.
        own_weights: the backbone brings its own weights (--weights=none means nothing).
    """

    spec: Callable[[str, ModelConfig], BackboneSpec]
    check: Callable[[str, ModelConfig], None] = lambda handle, cfg: None
    own_weights: bool = False


def source_of(name: str) -> tuple[str, str] | None:
    """(source, handle) of a SOURCE:HANDLE backbone name; None for a registry name."""
    kind, colon, handle = name.partition(":")
    return (kind, handle) if colon and kind in SOURCES else None


def check_backbone(cfg: ModelConfig) -> None:
    """Pre-flight: `--backbone` is a registered name or a SOURCE:HANDLE its source accepts."""
    check_backbone_name(cfg.backbone)
    named = source_of(cfg.backbone)
    if named is None:
        spec = get_spec(cfg.backbone)
        if spec.check is not None:
            spec.check(cfg.weights)
        return
    kind, handle = named
    source = SOURCES.get(kind)
    if source.own_weights and cfg.weights == "none":
        raise ConfigError("weights", f"{kind}: backbones bring their own weights; leave "
                          "--weights=imagenet (as shipped) or give a weights file")
    source.check(handle, cfg)


def get_spec(name: str) -> BackboneSpec:
    """The registry entry of a keras.applications / ktransfer backbone name."""
    check_backbone_name(name)
    return BACKBONES.get(name.lower())


def resolve_spec(cfg: ModelConfig, preprocess: str = "auto") -> BackboneSpec:
    """The spec of `cfg.backbone`: a registry name, hub:HANDLE or file:PATH.keras, with
    `preprocess` (--preprocess) applied (auto keeps the backbone's own)."""
    named = source_of(cfg.backbone)
    spec = (SOURCES.get(named[0]).spec(named[1], cfg) if named is not None
            else get_spec(cfg.backbone))
    if preprocess != "auto":
        spec = dataclasses.replace(spec, preprocess=preprocess, make_preprocess=None)
    return spec


def _hub_spec(handle: str, cfg: ModelConfig) -> BackboneSpec:
    output_key = cfg.hub_output_key

    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        inputs = keras.Input(input_shape, name="input")
        outputs = HubBackbone(handle, output_key=output_key, name="hub_module")(inputs)
        model = keras.Model(inputs, outputs, name="hub")
        if weights:
            model.load_weights(weights)
        return model

    # TF Hub's image modules take RGB in [0, 1]; most feature vectors were trained at 224 px.
    return BackboneSpec(f"hub:{handle}", "TF Hub", "scale01", 224, 8, build,
                        has_imagenet=False, own_weights=True)


def _file_spec(path: str, cfg: ModelConfig) -> BackboneSpec:
    """A user's .keras model. A ktransfer classifier contributes its backbone sub-model and its
    preprocessing (unless `layer` is outside that sub-model: then the whole model, which takes
    raw pixels, is cut there); any other model is used whole."""
    unsafe, layer = cfg.unsafe_load, cfg.backbone_layer
    loaded = load_model(path, unsafe=unsafe, flag="backbone", compile=False)
    model, preprocess = loaded, None
    names = [layer.name for layer in loaded.layers]
    if "backbone" in names and isinstance(loaded.get_layer("backbone"), keras.Model):
        model = loaded.get_layer("backbone")
        if "preprocess" in names:
            preprocess = loaded.get_layer("preprocess")
    if layer and model is not loaded and layer not in [x.name for x in model.layers]:
        model, preprocess = loaded, None
    size = tuple(model.input_shape[1:3])
    fixed = size[0] if size[0] is not None and size[0] == size[1] else None

    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        if fixed and input_shape[0] != fixed:
            raise ConfigError("image_size", f"file:{path} takes {fixed} px inputs; "
                              f"drop --image_size or set it to {fixed}")
        if weights:
            model.load_weights(weights)
        return model

    def copy_preprocess() -> keras.layers.Layer:  # the classifier's own, any layer type
        return keras.layers.deserialize(keras.layers.serialize(preprocess))

    return BackboneSpec(f"file:{path}", "file", "none", fixed or 224, 8, build,
                        has_imagenet=False, own_weights=True,
                        make_preprocess=copy_preprocess if preprocess is not None else None)


def _check_file(path: str, cfg: ModelConfig) -> None:
    if not path.endswith(".keras"):
        raise ConfigError("backbone", f"file:{path}: give a .keras model file (save it with "
                          "model.save('NAME.keras'))")
    if not os.path.isfile(path):
        raise ConfigError("backbone", f"file {path!r} does not exist")


# The registry's sources (image.catalog.SOURCES).
HUB = BackboneSource(_hub_spec, own_weights=True)
FILE = BackboneSource(_file_spec, _check_file, own_weights=True)


def cut_at(model: keras.Model, layer_name: str) -> keras.Model:
    """`model` up to `layer_name` (its output becomes the backbone's features)."""
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise ConfigError("backbone_layer", f"no layer {layer_name!r} in {model.name}; its last "
                          f"layers are: {', '.join(names[-8:])}")
    return keras.Model(model.inputs, model.get_layer(layer_name).output, name=model.name)


def list_backbones() -> str:
    """A table of every backbone: name, family, preprocessing, default input size."""
    rows = [f"{'name':<20} {'family':<17} {'preprocess':<10} {'input':>5}"]
    for spec in BACKBONES.values():
        rows.append(f"{spec.name:<20} {spec.family:<17} {spec.preprocess:<10} "
                    f"{spec.default_size:>5}")
    return "\n".join(rows)


def keras_cache_dir() -> str:
    """Where Keras keeps downloaded weights: $KERAS_HOME/models, default ~/.keras/models."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "models")


def build_backbone(spec: BackboneSpec, weights: str, image_size: int,
                   layer: str = "") -> keras.Model:
    """Builds `spec` for [image_size, image_size, 3] inputs with `weights` (imagenet|none|PATH),
    cut at `layer` when given.

    Raises WeightsError, naming the file to download and where to put it, when ImageNet weights
    cannot be fetched (offline), and when a weights file does not fit the architecture.
    """
    if image_size < spec.min_size:
        raise ConfigError("image_size", f"{spec.name} needs inputs of at least "
                          f"{spec.min_size} px, got {image_size}")
    model = _build_weights(spec, weights, image_size)
    return cut_at(model, layer) if layer else model


def _build_weights(spec: BackboneSpec, weights: str, image_size: int) -> keras.Model:
    input_shape = (image_size, image_size, 3)
    if spec.own_weights:  # as shipped (imagenet), random (none, where allowed) or a file
        return spec.build(input_shape, None if weights == "imagenet" else weights)
    if weights == "none":
        return spec.build(input_shape, None)
    if weights == "imagenet":
        if not spec.has_imagenet:
            raise ConfigError("weights", f"{spec.name} has no ImageNet weights; use none or the "
                              "path of a weights file")
        try:
            return spec.build(input_shape, "imagenet")
        except Exception as exc:  # keras raises a bare Exception("URL fetch failure on URL ...")
            match = re.search(r"(https?://\S+?)(?:\s|:\s|$)", str(exc))
            if not match:
                raise
            url = match.group(1).rstrip(":")
            fname = url.rsplit("/", 1)[-1]
            raise WeightsError(
                f"--weights=imagenet: cannot download {url} ({type(exc).__name__}; no network?). "
                f"Download that file elsewhere and put it at "
                f"{os.path.join(keras_cache_dir(), fname)}, or pass --weights=/path/to/{fname}"
            ) from None
    try:
        return spec.build(input_shape, weights)
    except (ValueError, OSError, KeyError) as exc:
        first = first_line(exc)
        raise WeightsError(f"--weights={weights}: does not fit backbone {spec.name} at "
                           f"{image_size} px: {first}") from None
