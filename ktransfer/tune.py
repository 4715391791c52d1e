"""`python -m ktransfer.tune --flagfile=configs/tune_head.cfg`: Keras Tuner search over the head.

Thin entry point: the train flags plus the search flags (`ktransfer.tuning.TuneConfig`) become
frozen configs; `ktransfer.tuning.search` runs or resumes the search.
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli, config
from ktransfer.tuning import TuneConfig

GROUPS = {**config.GROUPS, "tune": TuneConfig}
config.define_flags(groups=GROUPS)
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    parts = config.from_flags(FLAGS, GROUPS)
    cfg = config.RunConfig(**{name: parts[name] for name in config.GROUPS})
    from ktransfer.tuning import format_table, search

    result = search(cfg, parts["tune"])
    print(format_table(result.trials))
    print(f"search: {len(result.trials)} trials, {result.seconds:.1f} s, feature cache "
          f"{'on' if result.cached else 'off'}")
    print(f"best flags: {result.best_flagfile}")
    print(f"retrain the winner: python -m ktransfer.train --flagfile={result.best_flagfile}")
    return 0


if __name__ == "__main__":
    cli.run(main, "ktransfer.tune")
