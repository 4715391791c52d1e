"""network.features: the feature cache is a cache: an unreadable file is computed again."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ktransfer.network import features


@pytest.fixture
def computed(monkeypatch):
    calls = []

    def compute(extractor, feed, examples, batch_size=64):
        calls.append(len(examples))
        return np.arange(len(examples) * 4, dtype=np.float32).reshape(-1, 4)

    monkeypatch.setattr(features, "compute", compute)
    return calls


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_an_unreadable_cache_file_is_computed_again(tmp_path, computed, caplog, damage):
    """On ce06f12 a truncated RUN/cache/*.npy failed every resume with numpy's ValueError."""
    examples = list(range(50))
    first = features.cached(None, None, examples, tmp_path, ["k"])
    assert computed == [50]
    (path,) = tmp_path.glob("features-*.npy")
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[:len(raw) // 2], "garbage": b"\x93NUMPY garbage",
                      "empty": b""}[damage])
    with caplog.at_level(logging.WARNING):
        again = features.cached(None, None, examples, tmp_path, ["k"])
    assert computed == [50, 50] and "is unreadable" in caplog.text
    np.testing.assert_array_equal(again, first)
    assert features.cached(None, None, examples, tmp_path, ["k"]).shape == (50, 4)
    assert computed == [50, 50]  # rewritten whole: reused from now on


def test_a_cache_file_holding_a_pickled_object_runs_nothing(tmp_path, computed):
    """RUN/cache/*.npy is read without pickle: a crafted file is computed again, and the
    object in it never runs."""
    class Marker:
        def __reduce__(self):
            return open, (str(tmp_path / "marker"), "w")

    features.cached(None, None, list(range(5)), tmp_path, ["k"])
    (path,) = tmp_path.glob("features-*.npy")
    np.save(path, np.array([Marker()] * 5, dtype=object), allow_pickle=True)
    (tmp_path / "marker").unlink(missing_ok=True)
    assert features.cached(None, None, list(range(5)), tmp_path, ["k"]).shape == (5, 4)
    assert not (tmp_path / "marker").exists() and computed == [5, 5]
