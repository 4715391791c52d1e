"""The offline transfer demo: the shipped source backbone is reproducible and really transfers.

Seeds are fixed in the flagfiles. Figures over several seeds are in README.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SOURCE_WEIGHTS, run_cli

pytestmark = pytest.mark.slow  # scheduled first (see conftest.py)


def _run(run_dir, flagfile: str, *extra: str) -> float:
    result = run_cli("train", f"--flagfile={flagfile}", f"--run_dir={run_dir}", "--verbose=0",
                     "--notensorboard", "--noreport", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> dict[str, float]:
    """Test accuracy of the same network from random weights on the same 10 labelled images:
    the usual recipe (BatchNorm trains) and one with BatchNorm frozen, which can do better on
    tiny batches. The transferred model must beat the better of the two."""
    tmp = tmp_path_factory.mktemp("scratch")
    return {"bn_trains": _run(tmp / "bn", "configs/quickstart_scratch.cfg"),
            "bn_frozen": _run(tmp / "nobn", "configs/quickstart_scratch.cfg", "--nobn_trainable")}


def test_quickstart_transfer_beats_scratch_by_10_points(tmp_path, scratch):
    transferred = _run(tmp_path / "transfer", "configs/quickstart.cfg")
    assert transferred >= max(scratch.values()) + 0.10, (transferred, scratch)


# 3 minutes on 2 cores (plus the scratch runs): `make test-assets`, which CI runs after `make test`.
@pytest.mark.assets
def test_source_backbone_is_recreated_by_its_flagfile(tmp_path, scratch):
    from ktransfer.image.backbones import small_cnn

    accuracy = _run(tmp_path / "source", "configs/digits_source.cfg")
    assert accuracy >= 0.9  # 20 classes: digits 0-4 in 4 orientations
    recreated, shipped = small_cnn((32, 32, 3)), small_cnn((32, 32, 3))
    recreated.load_weights(tmp_path / "source" / "backbone.weights.h5")
    shipped.load_weights(SOURCE_WEIGHTS)
    assert [w.shape for w in recreated.weights] == [w.shape for w in shipped.weights]
    # Same flags, same seeds: close to the shipped weights (not bit-equal across CPUs, whose
    # float reductions may differ).
    diffs = [np.abs(a.numpy() - b.numpy()).max() / (np.abs(b.numpy()).max() + 1e-6)
             for a, b in zip(recreated.weights, shipped.weights, strict=True)]
    assert np.median(diffs) < 0.5, diffs
    # And it transfers like the shipped one.
    transferred = _run(tmp_path / "target", "configs/quickstart.cfg",
                       f"--weights={tmp_path / 'source' / 'backbone.weights.h5'}")
    assert transferred >= max(scratch.values()) + 0.05, (transferred, scratch)
