"""`python -m ktransfer.predict --model=RUN_DIR FILES_OR_FOLDERS...`: the classes of examples.

Thin entry point: flags -> `PredictConfig` -> `ktransfer.deploy.prediction.predict_saved`; one line
per example (`text`), or `--format=csv|json`, to stdout or --output.
The library (and TensorFlow) loads once the flags are parsed and the config's rules hold,
so a bad value is refused at once.
"""

from __future__ import annotations

import sys

from absl import flags

from ktransfer import cli  # first: it quiets TensorFlow's logs
from ktransfer.commands import COMMANDS
from ktransfer.runs import atomic

PREDICT = "ktransfer.deploy.prediction:predict_saved"

COMMAND = COMMANDS.get("predict")
cli.define_flags(COMMAND.groups())
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    cfg = COMMAND.build(FLAGS)
    text = cli.load(PREDICT, cfg)(cfg, argv[1:])
    if cfg.output:
        atomic.write_text(cfg.output, text)
    else:
        sys.stdout.write(text)
    return 0


def run() -> None:
    """The `ktransfer-predict` console script (same as `python -m ktransfer.predict`)."""
    cli.run(main, "ktransfer.predict", positional=True)


if __name__ == "__main__":
    run()
