"""Reads PyTorch weight files (`torch.save` of a state dict) into NumPy arrays, without PyTorch.

Both formats `torch.save` has written are read: the legacy one (PyTorch < 1.6: a magic number,
a pickle of the state dict whose tensors point at storages by key, then each storage's raw bytes
after an 8-byte element count) and the zip one (PyTorch >= 1.6: `archive/data.pkl` and one file
per storage under `archive/data/`). Only plain tensors are rebuilt; any other object the pickle
names is refused, so a weights file cannot run code.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


@dataclass
class _Storage:
    dtype: Any
    data: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        """The tensor's values, copied; a view that would reach outside its storage (a crafted
        or truncated file) is refused rather than read from memory it does not own."""
        if any(n < 0 for n in self.shape) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise ValueError("a tensor with a negative size, stride or offset")
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))
        if 0 not in self.shape and last >= self.storage.data.size:
            raise ValueError("a tensor reaches past the end of its storage (truncated file?)")
        item = self.storage.data.itemsize
        flat = self.storage.data[self.offset:]
        view = np.lib.stride_tricks.as_strided(flat, self.shape, [s * item for s in self.stride])
        return np.array(view)


def _rebuild(storage: _Storage, offset: int, shape: tuple, stride: tuple, *_: Any) -> _Tensor:
    return _Tensor(storage, offset, tuple(shape), tuple(stride))


class _Plain(pickle.Unpickler):
    """Reads a pickle of plain values (numbers, strings, lists, dicts) and nothing else: any
    class, function or persistent object it names is refused before it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"not a PyTorch weights file: it names {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("not a PyTorch weights file: a persistent id in a header")


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        raise pickle.UnpicklingError(f"not a plain state dict: it names {module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, dtype, key = pid[0], pid[1], str(pid[2])
        if kind != "storage":
            raise pickle.UnpicklingError(f"not a plain state dict: persistent id {kind!r}")
        return self.storages.setdefault(key, _Storage(dtype))


def _legacy(file: BinaryIO) -> dict[str, _Tensor]:
    """Every pickle in the file goes through a restricted unpickler: the magic number, protocol
    version, system info and storage keys through `_Plain`, the state dict through `_Unpickler`."""
    if _Plain(file).load() != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch weights file (wrong magic number)")
    _Plain(file).load(), _Plain(file).load()  # protocol version, system info
    storages: dict[str, _Storage] = {}
    state = _Unpickler(file, storages).load()
    keys = _Plain(file).load()
    if not isinstance(keys, list) or any(str(key) not in storages for key in keys):
        raise pickle.UnpicklingError("its storage keys do not match the state dict")
    for key in keys:
        key = str(key)
        count = int(np.frombuffer(file.read(8), "<i8")[0])
        dtype = np.dtype(storages[key].dtype).newbyteorder("<")
        storages[key].data = np.frombuffer(file.read(count * dtype.itemsize), dtype)
    return state


def _zipped(path: str | os.PathLike) -> dict[str, _Tensor]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        root = names[0].split("/")[0]
        storages: dict[str, _Storage] = {}
        state = _Unpickler(io.BytesIO(archive.read(f"{root}/data.pkl")), storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{root}/data/{key}")
            storage.data = np.frombuffer(raw, np.dtype(storage.dtype).newbyteorder("<"))
    return state


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{parameter name: array} of a file written by `torch.save(model.state_dict(), path)`.

    Raises ValueError when the file is not a PyTorch state dict.
    """
    try:
        if zipfile.is_zipfile(path):
            state = _zipped(path)
        else:
            with open(path, "rb") as file:
                state = _legacy(file)
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("it holds no state dict")
        return {name: tensor.array() for name, tensor in state.items()
                if isinstance(tensor, _Tensor)}
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, IndexError,
            zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a PyTorch state dict ({exc})") from None
