"""Every Keras class ktransfer registers for saving and loading (`ktransfer>NAME`), imported
together: the layers a saved model may hold (HubBackbone, FirstToken, the `Preprocess` of
earlier versions, MMDLoss) and the schedules and optimizers of compiled models. `import
ktransfer` imports this module as soon as Keras is imported, so that
`keras.saving.load_model` reads every file ktransfer writes."""

from ktransfer.domain import mmd  # noqa: F401
from ktransfer.image import preprocess  # noqa: F401
from ktransfer.network import heads, hub  # noqa: F401
from ktransfer.optim import optimizers, schedules  # noqa: F401
