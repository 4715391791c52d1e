"""Integer-only TFLite, measured: the test-accuracy drop of `export --tflite=int8` (and
`dynamic`) against the Keras model, with the file sizes, on EfficientNet-Lite0 (built for
integer inference) and on the digits backbone.

    python benchmarks/tflite_int8.py [--seeds=0,1,2] [--settings=lite0_digits_m,quickstart]
        [--out=benchmarks/results/tflite_int8.json]

Settings: `lite0_digits_m` is configs/quickstart_imagenet.cfg on the coloured digits 5-9 with
20 labels per class (448 test images); `quickstart` is configs/quickstart.cfg (small_cnn, 359
test images). Each seed trains the run once, then exports it with each TFLite type; int8 is
calibrated on up to 200 of the run's training images (here all 100 and 10). The accuracy of a
copy is its own runtime's (the TFLite interpreter) on the run's test split.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import record  # noqa: E402
from ktransfer import config  # noqa: E402
from ktransfer.deploy.serving import export_saved  # noqa: E402
from ktransfer.training import train  # noqa: E402

SETTINGS = {
    "lite0_digits_m": ("configs/quickstart_imagenet.cfg",
                       {"data": "builtin:digits_m", "classes": ("5", "6", "7", "8", "9"),
                        "train_per_class": 20}),
    "quickstart": ("configs/quickstart.cfg", {}),
}
TYPES = ("int8", "dynamic")


def measure(setting: str, seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    flagfile, flags = SETTINGS[setting]
    run_dir = tmp / f"{setting}{seed}"
    train(config.from_flagfile(flagfile, seed=seed, split_seed=seed, verbose=0, report=False,
                               tensorboard=False, run_dir=str(run_dir), **flags))
    found = {}
    for kind in TYPES:
        path = export_saved(config.ExportConfig(
            run_dir=str(run_dir), export_dir=str(tmp / f"export_{setting}{seed}_{kind}"),
            tflite=kind, on_accuracy_drop="warn"))
        checked = json.loads((path / "conversions.json").read_text())
        found[f"{setting}_{kind}"] = {
            "keras_accuracy": checked["keras"]["accuracy"],
            "tflite_accuracy": checked["tflite"]["accuracy"],
            "drop_points": 100 * checked["tflite"]["drop"],
            "tflite_mb": checked["tflite"]["bytes"] / 1e6}
    return found


def main() -> None:
    parser = record.parser(__doc__, "tflite_int8")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    args = parser.parse_args()
    seeds, settings = args.seeds, args.settings.split(",")
    runs = record.run_seeds(seeds, settings, measure)
    arms = [f"{setting}_{kind}" for setting in settings for kind in TYPES]
    summary = record.summarize(runs, arms, ["keras_accuracy", "tflite_accuracy", "drop_points",
                                            "tflite_mb"])
    record.write(args.out, seeds=seeds, settings=SETTINGS, runs=runs, summary=summary)


if __name__ == "__main__":
    main()
