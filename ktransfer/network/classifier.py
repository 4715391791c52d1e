"""What every classifier shares, whatever its inputs: an optional `preprocess` layer, the
`backbone` sub-model and the head; and the one place a classifier is compiled (training and
tuning both call `compile_classifier`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ktransfer.config import RunConfig
from ktransfer.optim.optimizers import make_optimizer
from ktransfer.tasks import task_of

BACKBONE_NAME = "backbone"
PREPROCESS_NAME = "preprocess"


def get_backbone(model: keras.Model) -> keras.Model:
    """The backbone sub-model of a classifier (the layer named "backbone")."""
    return model.get_layer(BACKBONE_NAME)


def backbone_input(model: keras.Model) -> keras.Model | None:
    """A model from the classifier's inputs to what its backbone receives (the `preprocess`
    layer's output), or None when the backbone takes the inputs as they are."""
    names = [layer.name for layer in model.layers]
    if PREPROCESS_NAME not in names:
        return None
    return keras.Model(model.inputs, model.get_layer(PREPROCESS_NAME).output)


def inference_model(model: keras.Model) -> keras.Model:
    """The same network (same layers and weights, nothing copied) as an uncompiled model, so
    that saving it writes no optimizer state or training configuration: a model file a third
    of the size, which loads without ktransfer's schedules and optimizers."""
    return keras.Model(model.input, model.output, name=model.name)


def compile_classifier(model: keras.Model, cfg: RunConfig, learning_rate: Any,
                       lr_multipliers: dict[str, float] | None = None,
                       anchors: dict[str, np.ndarray] | None = None) -> None:
    """Compiles with the run's task's loss and metrics (single-label: cross-entropy with
    label smoothing, accuracy and, with more than 5 classes, top-5 accuracy).

    Args:
        model: outputs [B, C] as the task makes them.
        cfg: the run (optimizer, label smoothing, XLA).
        learning_rate: a float or a schedule.
        lr_multipliers: {variable path: factor}, for layer-wise learning rates.
        anchors: {variable path: pretrained value}, for --l2sp.
    """
    task = task_of(cfg)
    model.compile(
        jit_compile={"on": True, "off": False}.get(cfg.distribute.jit_compile, "auto"),
        optimizer=make_optimizer(cfg.train, learning_rate, lr_multipliers, anchors),
        loss=task.loss(cfg), metrics=task.metrics(model.output_shape[-1]),
    )
