"""Every Keras class ktransfer registers for saving and loading (`ktransfer>NAME`), imported
together: the shared layers a saved model may hold (HubBackbone, FirstToken, MMDLoss, ...), the
schedules and optimizers of compiled models, and each modality's own classes as its
registration names them (`modality.KERAS_CLASSES`: the image `Preprocess`, ...). `import
ktransfer` imports this module as soon as Keras is imported, so that `keras.saving.load_model`
reads every file ktransfer writes."""

import importlib

from ktransfer.domain import mmd  # noqa: F401
from ktransfer.modality import KERAS_CLASSES
from ktransfer.network import heads, hub  # noqa: F401
from ktransfer.optim import optimizers, schedules  # noqa: F401
from ktransfer.tasks import losses  # noqa: F401
from ktransfer.tasks.detection import anchors as detection_anchors  # noqa: F401
from ktransfer.tasks.detection import losses as detection_losses  # noqa: F401

for _modules in KERAS_CLASSES.values():
    for _module in _modules:
        importlib.import_module(_module)

# Classes whose modules are slow to import (keras-hub's), imported only when a model file names
# them: registered name (or its "package>" prefix) -> module.
ON_DEMAND = {"ktransfer>RetinaPredictionHead": "ktransfer.tasks.detection.network",
             "keras_hub>": "keras_hub"}


def import_named(config: object) -> None:
    """Imports the modules of the ON_DEMAND classes a model's config names (before Keras reads
    the file, so that it finds them registered)."""
    text = str(config)
    for name, module in ON_DEMAND.items():
        if f"'{name}" in text:
            importlib.import_module(module)
