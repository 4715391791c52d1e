"""ktransfer: transfer learning for Keras 3 on TensorFlow, for images and text.

Commands: `python -m ktransfer.train --flagfile=configs/NAME.cfg`. From Python:
`ktransfer.config.from_flagfile(...)` or `ktransfer.config.build(...)`, then
`ktransfer.training.train(cfg)`.

`import ktransfer` is enough for `keras.saving.load_model` to read a `.keras` file ktransfer
wrote (most need no ktransfer at all): its Keras classes are registered as soon as Keras is
imported, while importing ktransfer itself (or `ktransfer.config`) imports neither Keras nor
TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

__version__ = "0.1.0"
_SERIALIZABLES = "ktransfer.serializables"


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Imports ktransfer.serializables right after the `keras` module has been executed (a
    mere look-up of keras, as TensorFlow does at import, leaves the hook in place)."""

    looking = False

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "keras" or self.looking:
            return None
        self.looking = True  # let the other finders find the real keras
        try:
            spec = importlib.util.find_spec("keras")
        finally:
            self.looking = False
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            importlib.import_module(_SERIALIZABLES)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "keras" in sys.modules:
    importlib.import_module(_SERIALIZABLES)
elif not any(isinstance(f, _RegisterAfterKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())
