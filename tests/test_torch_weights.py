"""network.torch_weights: PyTorch state dicts read without PyTorch, and no file can run code.

Legacy (pre-zip) files are written here without PyTorch: a fake `torch` module in
`sys.modules` lets `pickle` name `torch._utils._rebuild_tensor_v2` and `torch.FloatStorage`
as `torch.save` does. Each crafted file would create a marker file if any of its pickles were
read by a plain `pickle.load`.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ktransfer.network.torch_weights import _LEGACY_MAGIC, load_state_dict


class _Marker:
    """Pickles as `open(path, "w")`: loading it with a plain unpickler creates the file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


class _FakeStorage:
    pass


def _rebuild_tensor_v2(*args):  # pragma: no cover - only its name is pickled
    raise AssertionError


class _TensorRef:
    def __init__(self, key: str, shape: tuple, stride: tuple, offset: int = 0):
        self.key, self.shape, self.stride, self.offset = key, shape, stride, offset

    def __reduce__(self):
        return _rebuild_tensor_v2, (_StorageRef(self.key), self.offset, self.shape,
                                    self.stride, False, collections.OrderedDict())


class _StorageRef:
    def __init__(self, key: str):
        self.key = key


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", _FakeStorage, obj.key, "cpu", 0)
        return None


@pytest.fixture
def fake_torch(monkeypatch):
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    _FakeStorage.__module__, _FakeStorage.__qualname__ = "torch", "FloatStorage"
    torch.FloatStorage = _FakeStorage
    _rebuild_tensor_v2.__module__ = "torch._utils"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)


def _legacy_bytes(tensors: dict[str, np.ndarray], replace: dict[int, object] | None = None,
                  shapes: dict[str, tuple] | None = None) -> bytes:
    """A legacy `torch.save` file of float32 `tensors`; `replace` swaps pickle number i (0:
    magic, 1: protocol, 2: system info, 3: state dict, 4: storage keys) for another object."""
    replace, shapes = replace or {}, shapes or {}
    state = collections.OrderedDict(
        (name, _TensorRef(name, shapes.get(name, value.shape),
                          tuple(int(s) // 4 for s in value.strides)))
        for name, value in tensors.items())
    pickles = [_LEGACY_MAGIC, 1001, {"little_endian": True}, state, list(tensors)]
    out = io.BytesIO()
    for index, obj in enumerate(pickles):
        obj = replace.get(index, obj)
        (_Pickler(out, protocol=2) if index == 3 else pickle.Pickler(out, protocol=2)).dump(obj)
    for value in tensors.values():
        out.write(np.int64(value.size).tobytes())
        out.write(np.ascontiguousarray(value, "<f4").tobytes())
    return out.getvalue()


def test_a_legacy_file_written_as_torch_writes_it_reads_back(fake_torch, tmp_path):
    tensors = {"a": np.arange(6, dtype="float32").reshape(2, 3), "b": np.ones(4, "float32")}
    (tmp_path / "w.pth").write_bytes(_legacy_bytes(tensors))
    read = load_state_dict(tmp_path / "w.pth")
    np.testing.assert_array_equal(read["a"], tensors["a"])
    np.testing.assert_array_equal(read["b"], tensors["b"])


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4])
def test_no_pickle_of_a_legacy_file_can_run_code(fake_torch, tmp_path, index):
    """Each of the five pickles replaced by one that would create a file: refused, and the
    file is never created (on ce06f12 the first, second, third and fifth were plain loads)."""
    marker = tmp_path / "marker"
    tensors = {"a": np.ones(3, "float32")}
    (tmp_path / "w.pth").write_bytes(_legacy_bytes(tensors, replace={index: _Marker(marker)}))
    with pytest.raises(ValueError, match="not a PyTorch"):
        load_state_dict(tmp_path / "w.pth")
    assert not marker.exists()


def test_no_pickle_of_a_zip_file_can_run_code(tmp_path):
    marker = tmp_path / "marker"
    with zipfile.ZipFile(tmp_path / "w.pth", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_Marker(marker), protocol=2))
    with pytest.raises(ValueError, match="not a plain state dict: it names io.open"):
        load_state_dict(tmp_path / "w.pth")
    assert not marker.exists()


def test_a_tensor_that_reaches_past_its_storage_is_refused(fake_torch, tmp_path):
    """A shape larger than the bytes stored would make a strided view read foreign memory."""
    tensors = {"a": np.ones(4, "float32")}
    (tmp_path / "w.pth").write_bytes(_legacy_bytes(tensors, shapes={"a": (1000,)}))
    with pytest.raises(ValueError, match="past the end of its storage"):
        load_state_dict(tmp_path / "w.pth")


@pytest.mark.parametrize("content", [b"", b"\x80\x02K\x01.", b"not a pickle at all"])
def test_other_files_are_one_value_error(tmp_path, content):
    (tmp_path / "w.pth").write_bytes(content)
    with pytest.raises(ValueError, match="not a PyTorch state dict"):
        load_state_dict(tmp_path / "w.pth")
