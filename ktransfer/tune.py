"""`python -m ktransfer.tune --flagfile=configs/tune_head.cfg`: Keras Tuner search over the head.

Thin entry point: the train flags plus the search flags become one frozen `SearchConfig`;
`ktransfer.tuning.search` runs or resumes the search.
The library (and TensorFlow) loads once the flags are parsed and the config's rules hold,
so a bad value is refused at once.
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli  # first: it quiets TensorFlow's logs
from ktransfer.commands import COMMANDS

SEARCH = "ktransfer.tuning.searching:search"
TABLE = "ktransfer.tuning.searching:format_table"

COMMAND = COMMANDS.get("tune")
cli.define_flags(COMMAND.groups())
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    cfg = COMMAND.build(FLAGS)
    result = cli.load(SEARCH, cfg)(cfg)
    print(cli.load(TABLE)(result.trials))
    print(f"search: {len(result.trials)} trials, {result.seconds:.1f} s, feature cache "
          f"{'on' if result.cached else 'off'}")
    print(f"best flags: {result.best_flagfile}")
    print(f"retrain the winner: python -m ktransfer.train --flagfile={result.best_flagfile}")
    return 0


def run() -> None:
    """The `ktransfer-tune` console script (same as `python -m ktransfer.tune`)."""
    cli.run(main, "ktransfer.tune")


if __name__ == "__main__":
    run()
