"""The peer library for domain adaptation: ADAPT (adapt-python, the Keras domain-adaptation
library) on the same digits -> digits-M task as benchmarks/mmd_digits.py, with the same data,
splits, network and epochs.

    python benchmarks/adapt_peer.py --adapt_python=PYTHON [--seeds=0,1,2,3,4]
        [--methods=DANN,CDAN,DeepCORAL,MDD] [--source_epochs=30] [--epochs=20]

ADAPT is Keras 2 code: it runs on TensorFlow 2.21 with tf-keras 2.21 and TF_USE_LEGACY_KERAS=1,
in an environment of its own (`make adapt-env` makes .venv-adapt; then
`--adapt_python=.venv-adapt/bin/python`). This script, in ktransfer's environment, writes
each seed's arrays as ktransfer's pipeline feeds them (the source split of builtin:digits with
--val_split=0.15 and --split_seed=SEED, digits-M's unlabelled 'train' half and labelled 'test'
half, 16 px) to a .npz, then runs benchmarks/peer_scripts/adapt_digits.py in the ADAPT
environment on them: ktransfer's small_cnn and head rebuilt in tf.keras, trained
`--source_epochs` on the source, then `--epochs` more from copies of it: on the source alone
(source-only) and with each ADAPT method, ADAPT's defaults otherwise (untuned, as a user would
start). Prints target accuracy per seed and method,
mean ± std, and the gain over source-only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.image.modality import IMAGE  # noqa: E402
from ktransfer.image.pipeline import ImageFeed  # noqa: E402

CHILD = Path(__file__).resolve().parent / "peer_scripts" / "adapt_digits.py"


def arrays(examples, feed: ImageFeed) -> tuple[np.ndarray, np.ndarray]:
    """(pixels float32 [N, 16, 16, 3] in [0, 255], labels int [N]) as ktransfer feeds them."""
    xs, ys = [], []
    for x, y in feed.dataset(examples, batch_size=256).as_numpy_iterator():
        xs.append(x)
        ys.append(y.argmax(1))
    return np.concatenate(xs), np.concatenate(ys)


def export_seed(seed: int, path: Path) -> Path:
    """Writes seed `seed`'s source training split and digits-M halves to `path` (.npz)."""
    cfg = config.build(data="builtin:digits", backbone="small_cnn", weights="none",
                       image_size=16, val_split=0.15, test_split=0.0, seed=seed,
                       split_seed=seed, run_dir=str(path.parent / "unused"))
    feed = ImageFeed(16)
    source = IMAGE.load_splits(cfg).train
    target = IMAGE.opener(cfg)("builtin:digits_m", "target_data")
    xs, ys = arrays(source, feed)
    xt, _ = arrays(target["train"], feed)
    xe, ye = arrays(target["test"], feed)
    np.savez_compressed(path, xs=xs, ys=ys, xt=xt, xe=xe, ye=ye)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapt_python", required=True,
                        help="the Python of the ADAPT environment (make adapt-env)")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--methods", default="DANN,CDAN,DeepCORAL,MDD")
    parser.add_argument("--source_epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    if not Path(args.adapt_python).exists():
        raise SystemExit(f"--adapt_python: {args.adapt_python} does not exist; make adapt-env "
                         "creates .venv-adapt/bin/python")
    with tempfile.TemporaryDirectory() as tmp:
        files = [str(export_seed(int(s), Path(tmp) / f"seed{s}.npz"))
                 for s in args.seeds.split(",")]
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run(
            [args.adapt_python, str(CHILD), f"--methods={args.methods}",
             f"--source_epochs={args.source_epochs}", f"--epochs={args.epochs}", *files],
            env=env)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
