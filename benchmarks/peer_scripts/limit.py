"""TensorFlow's in-memory limit for MobileNetV2: one batch in memory, repeated, frozen and
fine-tuning (benchmarks/train_speed.py's measurement); prints {"frozen": img/s,
"fine_tune": img/s} as JSON.

    python limit.py [--image_size=160] [--batch_size=32] [--block=20]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train_speed  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--image_size", type=int, default=160)
parser.add_argument("--batch_size", type=int, default=32)
parser.add_argument("--block", type=float, default=20.0)
args = parser.parse_args()
out = {}
for phase, key in (("frozen", "frozen"), ("fine-tune", "fine_tune")):
    model = train_speed.build("MobileNetV2", phase, "float32", False, args.image_size)
    ds = train_speed.datasets(args.image_size, args.batch_size)["limit"][0]
    model.fit(ds, steps_per_epoch=8, epochs=1, verbose=0)  # trace
    # 50 steps a fit call: Keras' per-call overhead stays under 1 %
    out[key] = train_speed.block(model, ds, 50, args.batch_size, args.block)
print(json.dumps(out))
