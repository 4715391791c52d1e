"""`python -m ktransfer.find_lr --flagfile=configs/quickstart.cfg [--phase=fine_tune]`: the
learning-rate range test for one phase of a run.

Thin entry point: the train flags plus the test's flags become one frozen `LRFinderConfig`;
`ktransfer.training.lr_finder.find_lr` runs it and writes OUTPUT_DIR/lr_find.{csv,png,json}.
The library (and TensorFlow) loads once the flags are parsed and the config's rules hold,
so a bad value is refused at once.
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli  # first: it quiets TensorFlow's logs
from ktransfer.commands import COMMANDS

FIND_LR = "ktransfer.training.lr_finder:find_lr"

COMMAND = COMMANDS.get("find_lr")
cli.define_flags(COMMAND.groups())
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    cfg = COMMAND.build(FLAGS)
    result = cli.load(FIND_LR, cfg)(cfg)
    rules = ", ".join(f"{name} {lr:.3g}" for name, lr in result.suggestions.items())
    print(f"find_lr: {len(result.lrs)} steps from {result.lrs[0]:.3g} to {result.lrs[-1]:.3g}; "
          f"suggestions ({result.phase} phase): {rules}")
    print(f"suggested: --{result.flag}={result.suggestions['valley']:.3g} (valley rule); plot: "
          f"{result.output_dir / 'lr_find.png'}")
    return 0


def run() -> None:
    """The `ktransfer-find-lr` console script (same as `python -m ktransfer.find_lr`)."""
    cli.run(main, "ktransfer.find_lr")


if __name__ == "__main__":
    run()
