"""ktransfer against what users would otherwise run, side by side on the same JPEGs: the keras.io
transfer-learning guide's script, the PyTorch (torchvision) recipe, and TensorFlow's in-memory
limit for the same network.

    python benchmarks/peers.py [--images=2000] [--rounds=3] [--epochs=3] [--fine_tune_epochs=2]
        [--peers=ktransfer,ktransfer-nocache,guide,torch[,ktransfer-memo]] [--block=20]
        [--data=DIR]

Every peer runs the same job as a user would, in a fresh process: MobileNetV2 (random weights:
nothing to download, and speed does not depend on them) at 160 px, batch 32, 80 % of the
images to train and 20 % to validate after every epoch, `--epochs` with the backbone frozen,
then `--fine_tune_epochs` with all of it trainable, then save the model. `ktransfer` is
`python -m ktransfer.train` with its defaults (the feature cache, the report, ...);
`ktransfer-nocache` the same with `--nocache_features` (its input pipeline's own speed). Both
start cold: every run has a memo folder of its own, so none skips the up-front decode check of
the images (`ktransfer.data.memo`); `ktransfer-memo` is the default run on a folder an earlier
run has checked (a memo folder shared by its runs, filled once before the rounds);
`guide` is benchmarks/peer_scripts/guide.py; `torch` is benchmarks/peer_scripts/torch_recipe.py
(needs `make peers`: torch and torchvision; skipped with a message without them). The peers run in
interleaved rounds (the order rotates), the medians are reported with the spread.

Per peer: wall time (launch to exit), first batch (launch to the end of the first batch through
the network: a training step, or with ktransfer's feature cache the first batch of the frozen
backbone's feature extraction, which is the frozen phase's work), first step (launch to the end
of the first training batch),
steady frozen and fine-tuning throughput (training images per second of training time, over
every epoch but the first of the phase; validation not counted), the time after the last epoch
(evaluation, saving, report), and the epoch-end work (checkpoints, resume state, logs: what runs
after validation) as a share of a steady frozen epoch. `limit` is TensorFlow's in-memory limit
for the network (one batch in memory, repeated; blocks of at least `--block` seconds;
benchmarks/train_speed.py's measurement).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPTS = HERE / "peer_scripts"
CLASSES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")


def make_images(folder: Path, n: int, size: int = 256) -> Path:
    """`n` JPEGs in class folders: random crops (rescaled) of five of scikit-image's photos,
    a crop's class being its photo."""
    from skimage import data as photos

    rng = np.random.default_rng(0)
    for index in range(n):
        name = CLASSES[index % len(CLASSES)]
        photo = getattr(photos, name)()
        side = int(rng.integers(min(photo.shape[:2]) // 3, min(photo.shape[:2])))
        y, x = (int(rng.integers(0, photo.shape[i] - side + 1)) for i in (0, 1))
        crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size))
        (folder / name).mkdir(parents=True, exist_ok=True)
        crop.save(folder / name / f"{index:05d}.jpg", quality=90)
    return folder


def command(peer: str, data: Path, run_dir: Path, args: argparse.Namespace) -> list[str]:
    common = [f"--data={data}", "--image_size=160", "--batch_size=32",
              f"--epochs={args.epochs}", f"--fine_tune_epochs={args.fine_tune_epochs}"]
    if peer.startswith("ktransfer"):
        return [sys.executable, str(SCRIPTS / "clock.py"), "-m", "ktransfer.train", *common,
                "--backbone=MobileNetV2", "--weights=none", "--lr=0.001", "--fine_tune_lr=1e-5",
                "--unfreeze=all", "--val_split=0.2", "--test_split=0", "--early_stopping=0",
                "--verbose=2", f"--run_dir={run_dir}",
                *(["--nocache_features"] if peer == "ktransfer-nocache" else [])]
    script = "guide.py" if peer == "guide" else "torch_recipe.py"
    return [sys.executable, *([str(SCRIPTS / "clock.py")] if peer == "guide" else []),
            str(SCRIPTS / script), *common]


def run_peer(peer: str, data: Path, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    """One whole run of `peer` in a fresh process; its timings in seconds and images/s."""
    work = Path(tempfile.mkdtemp(dir=tmp))
    timing = work / "timing.json"
    env = {**os.environ, "PEER_TIMING": str(timing), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(REPO),
           "KTRANSFER_CACHE": str(tmp / "memo" if peer == "ktransfer-memo" else work / "cache")}
    launch = time.time()
    result = subprocess.run(command(peer, data, work / "run", args), cwd=work, env=env,
                            capture_output=True, text=True)
    wall = time.time() - launch
    if result.returncode != 0:
        raise SystemExit(f"{peer} failed:\n{result.stderr[-3000:]}")
    clock = json.loads(timing.read_text())
    train_images = round(0.8 * args.images)
    first_batch = min(t for t in (clock["first_step"], clock.get("first_predict")) if t)
    out = {"wall": wall, "startup": clock["first_step"] - launch,
           "first_batch": first_batch - launch}
    for name, epochs in zip(("frozen", "fine_tune"), clock["fits"][-2:], strict=True):
        steady = epochs[1:] or epochs  # [start, end, validation start, validation end]
        out[name + "_block"] = sum(e[1] - e[0] for e in steady)
        out[name] = train_images * len(steady) / sum(e[2] - e[0] for e in steady)
        out[name + "_epoch_end"] = 100 * sum(e[1] - e[3] for e in steady) / out[name + "_block"]
    out["after"] = clock["end"] - clock["fits"][-1][-1][1]
    return out


def remember_checked(data: Path, memo: Path) -> None:
    """Runs ktransfer's up-front check of the images in `data` once, leaving its memo in
    `memo` for the `ktransfer-memo` peer."""
    code = ("from ktransfer.image.sources import read_class_folders; "
            f"read_class_folders({str(data)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, env={
        **os.environ, "KTRANSFER_CACHE": str(memo), "PYTHONPATH": str(REPO),
        "TF_CPP_MIN_LOG_LEVEL": "2"})


def limit(args: argparse.Namespace) -> dict[str, float]:
    """TensorFlow's in-memory limit for MobileNetV2 at 160 px, batch 32, frozen and fine-tuning
    (a process of its own)."""
    result = subprocess.run([sys.executable, str(SCRIPTS / "limit.py"), "--image_size=160",
                             "--batch_size=32", f"--block={args.block}"], capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode != 0:
        raise SystemExit(f"limit failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def spread(values: list[float], digits: int = 1) -> str:
    return (f"{np.median(values):.{digits}f} ({min(values):.{digits}f}-"
            f"{max(values):.{digits}f})")


def report(results: dict[str, list[dict]], limits: list[dict], args: argparse.Namespace) -> None:
    print(f"\npeers: {args.images} JPEGs (80 % train), MobileNetV2 160 px, batch 32, "
          f"{args.epochs} frozen + {args.fine_tune_epochs} fine-tuning epochs; machine: "
          f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs); median (min-max) "
          f"of {args.rounds} interleaved rounds")
    columns = (("wall", "wall s", 18), ("first_batch", "first batch s", 16),
               ("startup", "first step s", 16),
               ("frozen", "frozen img/s", 20), ("fine_tune", "fine-tune img/s", 20),
               ("after", "after s", 14), ("frozen_epoch_end", "epoch-end %", 14))
    print(f"{'peer':<18} " + " ".join(f"{title:>{w}}" for _, title, w in columns))
    for peer, runs in results.items():
        print(f"{peer:<18} " + " ".join(
            f"{spread([r[k] for r in runs]) if k in runs[0] else '-':>{w}}"
            for k, _, w in columns))
    if limits:
        print(f"{'limit (in memory)':<18} {'':>18} {'':>16} {'':>16} "
              f"{spread([x['frozen'] for x in limits]):>20} "
              f"{spread([x['fine_tune'] for x in limits]):>20}")
    med = {p: {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
           for p, runs in results.items()}
    if limits:
        med["limit"] = {k: float(np.median([x[k] for x in limits])) for k in limits[0]}
    print("\nratios of medians:")
    if "ktransfer" in med and "guide" in med:
        ratio = med["ktransfer"]["wall"] / med["guide"]["wall"]
        print(f"  wall time, ktransfer / guide: {ratio:.2f}x")
    for peer in ("ktransfer", "ktransfer-nocache", "ktransfer-memo"):
        if peer in med and "guide" in med:
            print(f"  first batch, {peer} / guide: "
                  f"{med[peer]['first_batch'] / med['guide']['first_batch']:.2f}x; first "
                  f"training step: {med[peer]['startup'] / med['guide']['startup']:.2f}x")
    pipeline = "ktransfer-nocache" if "ktransfer-nocache" in med else "ktransfer"
    for other in ("guide", "torch", "limit"):
        if pipeline in med and other in med:
            print(f"  throughput, {pipeline} / {other}: frozen "
                  f"{med[pipeline]['frozen'] / med[other]['frozen']:.2f}x, fine-tuning "
                  f"{med[pipeline]['fine_tune'] / med[other]['fine_tune']:.2f}x")
    blocks = [r[k] for runs in results.values() for r in runs
              for k in ("frozen_block", "fine_tune_block")]
    if blocks:
        print(f"  (steady-state blocks lasted {min(blocks):.1f}-{max(blocks):.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fine_tune_epochs", type=int, default=2)
    parser.add_argument("--peers", default="ktransfer,ktransfer-nocache,guide,torch")
    parser.add_argument("--block", type=float, default=20.0)
    parser.add_argument("--data", default="", help="a folder of class folders of JPEGs to use")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]  # none: the in-memory limit alone
    if "torch" in peers and importlib.util.find_spec("torchvision") is None:
        print("torch: skipped, torch and torchvision are not installed "
              "(make peers)", flush=True)
        peers.remove("torch")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = Path(args.data) if args.data else make_images(tmp / "images", args.images)
        if "ktransfer-memo" in peers:
            remember_checked(data, tmp / "memo")
        results: dict[str, list[dict]] = {peer: [] for peer in peers}
        limits = []
        for round_index in range(args.rounds):
            shift = round_index % max(1, len(peers))
            order = peers[shift:] + peers[:shift]
            for peer in order:
                results[peer].append(run_peer(peer, data, tmp, args))
                print(f"round {round_index + 1} {peer}: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in results[peer][-1].items()), flush=True)
            limits.append(limit(args))
            print(f"round {round_index + 1} limit: {limits[-1]}", flush=True)
    report(results, limits, args)


if __name__ == "__main__":
    main()
