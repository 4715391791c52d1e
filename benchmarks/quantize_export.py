"""Keras-quantized SavedModels of the sentiment run (`export --quantize`): size, CPU latency per
example and test-accuracy drop against float32.

    python benchmarks/quantize_export.py [--seeds=0,1,2] [--modes=int8,int4,float8] [--out=FILE]

Per seed: configs/sentiment.cfg trained once (real all-MiniLM-L6-v2 fine-tuned on 2,000
human-rated sentences), then exported as float32 and with each `--quantize` mode. Figures per
mode, from VERSION/quantization.json: the SavedModel's variables bytes against the float32
export's, the median milliseconds of one example through the Keras model (batch 1, 30 calls
after 3 warm-up calls; float32 measured in the same call), and the accuracy on the 2,008 fixed
test sentences. Needs `make text-assets`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import record  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.deploy import quantize  # noqa: E402
from ktransfer.deploy.serving import export_saved  # noqa: E402
from ktransfer.training import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["size_ratio", "saved_mb", "latency_ms", "float32_latency_ms", "accuracy", "drop"]


def measure_seed(modes: list[str], seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    run = train(config.from_flagfile(ROOT / "configs" / "sentiment.cfg", seed=seed,
                                     run_dir=str(tmp / f"run{seed}"), overwrite=True,
                                     verbose=0, tensorboard=False, report=False)).run_dir
    plain = export_saved(config.ExportConfig(run_dir=str(run), export_dir=str(tmp / "f32")))
    float_bytes = quantize.saved_bytes(plain)
    found = {"float32": {"saved_mb": float_bytes / 1e6,
                         "accuracy": json.loads((run / "metrics.json").read_text())[
                             "test"]["accuracy"]}}
    for mode in modes:
        version = export_saved(config.ExportConfig(
            run_dir=str(run), export_dir=str(tmp / mode), quantize=mode,
            on_accuracy_drop="warn"))
        q = json.loads((version / quantize.REPORT).read_text())
        found[mode] = {"size_ratio": q["saved_variables_bytes"] / float_bytes,
                       "saved_mb": q["saved_variables_bytes"] / 1e6,
                       "latency_ms": q["latency_ms"],
                       "float32_latency_ms": q["float32_latency_ms"],
                       "accuracy": q["accuracy"], "drop": q["drop"]}
    return found


def main() -> None:
    found = record.parser(__doc__, "quantize_export")
    found.add_argument("--modes", default="int8,int4,float8")
    args = found.parse_args()
    modes = args.modes.split(",")
    runs = record.run_seeds(args.seeds, ["all"],
                            lambda part, seed, tmp: measure_seed(modes, seed, tmp))
    arms = ["float32", *modes]
    record.write(args.out, arms=arms, runs=runs, summary=record.summarize(runs, arms, METRICS))


if __name__ == "__main__":
    main()
