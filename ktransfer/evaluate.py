"""`python -m ktransfer.evaluate --model=RUN_DIR [--data=...]`: metrics, confusion matrix, plots.

Thin entry point: flags -> `EvaluateConfig` -> `ktransfer.reporting.evaluation.evaluate_saved`.
Without --data it evaluates the run's own test split (as `train` made it).
The library (and TensorFlow) loads once the flags are parsed and the config's rules hold,
so a bad value is refused at once.
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli  # first: it quiets TensorFlow's logs
from ktransfer.commands import COMMANDS

EVALUATE = "ktransfer.reporting.evaluation:evaluate_saved"
DESCRIBE = "ktransfer.reporting.evaluation:describe"

COMMAND = COMMANDS.get("evaluate")
cli.define_flags(COMMAND.groups())
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    cfg = COMMAND.build(FLAGS)
    summary, out = cli.load(EVALUATE, cfg)(cfg)
    for line in cli.load(DESCRIBE)(summary, cfg.top_k):
        print(line)
    print(f"written: {out / 'evaluation.json'} and plots")
    return 0


def run() -> None:
    """The `ktransfer-evaluate` console script (same as `python -m ktransfer.evaluate`)."""
    cli.run(main, "ktransfer.evaluate")


if __name__ == "__main__":
    run()
