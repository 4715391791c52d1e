"""Images as a modality: the glue between the image modules and the shared training,
evaluation, export and tuning code (see `ktransfer.modality`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import PredictConfig, RunConfig
from ktransfer.data import tables
from ktransfer.data.examples import Examples
from ktransfer.errors import ConfigError
from ktransfer.image import gallery, serving
from ktransfer.image.backbones import (
    build_backbone,
    check_backbone,
    list_backbones,
    resolve_spec,
)
from ktransfer.image.builtin import BUILTIN
from ktransfer.image.classifier import build_classifier, feature_maps
from ktransfer.image.gradcam import GradCAM, explain_images
from ktransfer.image.imageset import ImageSet
from ktransfer.image.pipeline import ImageFeed
from ktransfer.image.prediction import draw_images, image_sizes, read_images
from ktransfer.image.sources import TableReading, drop_bad_images, open_source
from ktransfer.modality import (
    Answer,
    Drawer,
    Explainer,
    Feed,
    Modality,
    Network,
    Presentation,
)
from ktransfer.network.catalog import POOLINGS
from ktransfer.tasks import default_task, task_of
from ktransfer.tasks.annotations import Annotated
from ktransfer.tasks.geometry import UNMOVED


class ImagePresentation(Presentation):
    """Images in the report (a gallery of mistakes with Grad-CAM), `predict` on image files and
    folders, `predict --explain` as Grad-CAM heat maps."""

    noun = "image"
    input_key = "file"

    def list_backbones(self) -> str:
        return list_backbones()

    def network_words(self, info: dict[str, Any]) -> str:
        return ", ".join(f"{v} px" if k == "image_size" else f"{k.replace('_', ' ')} {v}"
                         for k, v in info.items())

    def gallery(self, model: keras.Model, feed: Feed, examples: Examples,
                mistakes: list[dict[str, Any]], out_dir: str | os.PathLike) -> str:
        assert isinstance(examples, ImageSet)
        task = feed.task or default_task()
        exemplars = task.presentation.exemplars(examples.labels)
        return gallery.gallery(examples, mistakes, out_dir, model, exemplars, task.geometry)

    def explainer(self, model: keras.Model, feed: Feed, layer: str
                  ) -> Explainer:
        cam = GradCAM(model, layer)  # refuses a backbone without a spatial map, up front

        def explain(examples: Examples, class_ids: list[int], class_names: list[str],
                    out_dir: str | os.PathLike) -> list[Path]:
            assert isinstance(examples, ImageSet)
            return explain_images(cam, examples, class_ids, out_dir)

        return explain

    def from_values(self, values: list[str]) -> Examples:
        return read_images([str(v) for v in values])

    def sizes(self, examples: Examples) -> list[tuple[int, int]] | None:
        assert isinstance(examples, ImageSet) and examples.files is not None
        return image_sizes([str(f) for f in examples.files])

    def draw(self, examples: Examples, answers: list[dict[str, Any]], draw: Drawer,
             out_dir: str | os.PathLike) -> list[Path]:
        assert isinstance(examples, ImageSet) and examples.files is not None
        return draw_images([str(f) for f in examples.files], answers, draw, out_dir)

    def read_inputs(self, args: list[str], cfg: PredictConfig) -> Examples:
        if cfg.text:
            raise ConfigError("text", "is for text models; give image files or folders")
        return read_images(args, cfg.group("image").on_bad_image)


def annotated(splits: dict[str, Annotated], cfg: RunConfig, flag: str) -> dict[str, Examples]:
    """The image sets of a task's annotation files (their images checked as
    --on_bad_image says)."""
    out: dict[str, Examples] = {}
    for name, part in splits.items():
        images = ImageSet(part.class_names, part.targets, task=cfg.data.task,
                          files=np.array(part.files, dtype=object))
        out[name] = drop_bad_images(images, cfg.group("image").on_bad_image, flag)
    return out


def check_geometry(cfg: RunConfig) -> None:
    """Refuses the image flags that would move pixels without a task's targets (boxes, masks):
    the crop, RandAugment, MixUp and CutMix."""
    image = cfg.group("image")
    for flag in UNMOVED:
        if getattr(image, flag) not in (0, 0.0, "", "none"):
            raise ConfigError(flag, f"moves or mixes pixels without the targets of "
                              f"--task={cfg.data.task}; leave it out (--aug_flip, "
                              "--aug_rotation, --aug_zoom, --aug_translate and --aug_shear move "
                              "them with the pixels)")


class ImageModality(Modality):
    """Class-folder images, TFDS image sets and the built-in digits; keras.applications,
    small_cnn, TF Hub and .keras backbones; bytes and pixels signatures."""

    name = "image"
    presentation = ImagePresentation()
    builtin = BUILTIN
    tflite_signature = serving.PIXELS_SIGNATURE

    def check(self, cfg: RunConfig) -> None:
        check_backbone(cfg.model)
        weights = cfg.model.weights
        if weights not in ("imagenet", "none") and not os.path.isfile(weights):
            raise ConfigError("weights", f"file {weights!r} does not exist; use imagenet, none "
                              "or a path")
        if POOLINGS.get(cfg.model.pooling).spatial is None:
            raise ConfigError("pooling", f"{cfg.model.pooling} is for text; images use avg, "
                              "max or flatten")
        if task_of(cfg).geometry is not None:
            check_geometry(cfg)

    def check_features(self, cfg: RunConfig) -> None:
        if task_of(cfg).map_head is not None:
            raise ConfigError("task", f"tune, probe and domain adaptation need one feature "
                              f"vector per image; --task={cfg.data.task} reads feature maps "
                              "(train it with ktransfer.train)")

    def check_path(self, path: str, flag: str) -> None:
        if os.path.isfile(path) and not tables.is_table(path):
            raise ConfigError(flag, f"{path!r} is a file; give a folder of class sub-folders "
                              f"of images or a table ({'/'.join(tables.TABLE_EXTENSIONS)}) of "
                              "image files and labels")
        if os.path.isfile(path):
            return
        if not os.path.isdir(path):
            raise ConfigError(flag, f"folder {path!r} does not exist; give a folder of class "
                              "sub-folders, builtin:digits or tfds:NAME")

    def open_source(self, spec: str, cfg: RunConfig, flag: str) -> dict[str, Examples]:
        annotations = task_of(cfg).annotations
        if annotations is not None and annotations.claims(spec):
            return annotated(annotations.read(spec, flag), cfg, flag)
        image, task = cfg.group("image"), cfg.group("task")
        reading = TableReading(image.file_column, task.label_column, task_of(cfg), task)
        return dict(open_source(spec, cfg.data.data_dir, flag, image.on_bad_image, reading))

    def build(self, cfg: RunConfig, num_classes: int) -> Network:
        image = cfg.group("image")
        spec = resolve_spec(cfg.model, image.preprocess)
        image_size = image.image_size or spec.default_size
        backbone = build_backbone(spec, cfg.model.weights, image_size, cfg.model.backbone_layer)
        task = task_of(cfg)
        if task.map_head is not None:
            backbone = feature_maps(backbone, task.map_head.strides, image_size)
        model = build_classifier(spec, backbone, num_classes, image_size, cfg.model, task,
                                 cfg.group("task"))
        return Network(model, backbone, {"backbone": spec.name, "image_size": image_size})

    def feed(self, cfg: RunConfig, network: Network) -> Feed:
        return ImageFeed(int(network.model.input_shape[1]), cfg.group("image"), cfg.data.cache,
                         cfg.data.shuffle_buffer, task=task_of(cfg))

    def feed_for(self, model: keras.Model, location: str | None) -> Feed:
        return ImageFeed(int(model.input_shape[1]))

    def accepts(self, model: keras.Model) -> bool:
        shape = model.input_shape
        return (isinstance(shape, tuple) and len(shape) == 4 and shape[3] == 3
                and shape[1] is not None and shape[1] == shape[2])

    def endpoints(self, model: keras.Model, feed: Feed, answer: Answer) -> dict[str, Any]:
        return serving.endpoints(model, answer)

    def serving_inputs(self, examples: Examples, n: int) -> dict[str, np.ndarray]:
        """`image_bytes`: the files' own bytes, or PNG-encoded pixels of arrays and TFDS."""
        assert isinstance(examples, ImageSet)
        if examples.files is not None:
            data = [Path(str(f)).read_bytes() for f in examples.files[:n]]
        else:
            first = examples.subset(np.arange(min(n, len(examples))))
            data = [tf.io.encode_png(image).numpy() for image, _ in first.dataset()]
        return {"image_bytes": np.array(data, dtype=object)}



IMAGE = ImageModality()
