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

for _modules in KERAS_CLASSES.values():
    for _module in _modules:
        importlib.import_module(_module)

