"""ktransfer: transfer learning for Keras 3 on TensorFlow.

Commands: `python -m ktransfer.train --flagfile=configs/NAME.cfg`. From Python:
`ktransfer.config.from_flagfile(...)` or `ktransfer.config.build(...)`, then
`ktransfer.training.train(cfg)`.
"""

__version__ = "0.1.0"
