"""Atomic writes: the old file or the new one, never half of one."""

from __future__ import annotations

import json

import pytest

from ktransfer.runs import atomic


def test_an_error_inside_the_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    atomic.write_json(path, {"accuracy": 0.5})

    def fail(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write('{"accuracy": 0.9, "trunc')  # half written, then the process "dies"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.save_with(path, fail)
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_temporary_names_keep_the_extensions_and_folders_are_created(tmp_path):
    seen = []
    atomic.save_with(tmp_path / "a" / "b" / "model.weights.h5",
                     lambda tmp: (seen.append(tmp), open(tmp, "w").write("x")))
    assert seen[0].endswith(".weights.h5") and "/a/b/" in seen[0]
    assert (tmp_path / "a" / "b" / "model.weights.h5").read_text() == "x"


def test_a_temporary_folder_is_removed_when_the_save_fails(tmp_path):
    def make_folder(tmp: str) -> None:
        (tmp_path / tmp).mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic.save_with(tmp_path / "saved", make_folder)
    assert list(tmp_path.iterdir()) == []


def test_json_handles_numpy_values(tmp_path):
    import numpy as np

    atomic.write_json(tmp_path / "x.json", {"a": np.float32(0.25), "b": np.arange(3)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 0.25, "b": [0, 1, 2]}


SAVE_ON_A_FULL_DISK = """
import sys, keras
from ktransfer.runs import atomic
from ktransfer.errors import DiskFullError
model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(300)])  # 120 kB of weights
try:
    atomic.save_with(sys.argv[1] + "/model.weights.h5", model.save_weights)
except DiskFullError as exc:
    print("one line:", exc)
"""


def test_a_weights_file_that_fills_the_disk_ends_in_one_line_not_a_crash(small_disk):
    """h5py kept the half-written file open; HDF5 retried closing it at exit and the process
    died of a segmentation fault (exit -11) after the right one-line error (issue 29). On a
    64 kB file system, the save fails with one line, the process exits 0, nothing is left."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SAVE_ON_A_FULL_DISK, str(small_disk)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "one line: the disk holding" in done.stdout
    assert "Exception ignored" not in done.stderr
    assert list(small_disk.iterdir()) == []


def test_a_numpy_array_that_fills_the_disk_is_one_line(small_disk):
    """numpy reports a short write as "N requested and M written", without an errno: it gave
    an OSError traceback while the feature cache was written (ce06f12)."""
    import numpy as np

    from ktransfer.errors import DiskFullError

    with pytest.raises(DiskFullError, match="the disk holding .*features.npy is full"):
        atomic.save_with(small_disk / "features.npy",
                         lambda p: np.save(p, np.ones((64, 1024), np.float32)))
    assert list(small_disk.iterdir()) == []
