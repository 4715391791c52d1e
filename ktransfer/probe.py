"""`python -m ktransfer.probe --flagfile=configs/quickstart.cfg --backbones=a,b,c`: rank
backbones from frozen features and audit the labels, before training.

Thin entry point: the train flags plus the probe's flags become one frozen `ProbeRunConfig`;
`ktransfer.probing.probe.probe` runs it and writes OUTPUT_DIR/{probe.json, probe.html,
label_audit.csv, best.cfg}. The library (and TensorFlow) loads once the flags are parsed and the
config's rules hold, so a bad value is refused at once.
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli  # first: it quiets TensorFlow's logs
from ktransfer.commands import COMMANDS

PROBE = "ktransfer.probing.probe:probe"
TABLE = "ktransfer.probing.report:table"

COMMAND = COMMANDS.get("probe")
cli.define_flags(COMMAND.groups())
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    cfg = COMMAND.build(FLAGS)
    result = cli.load(PROBE, cfg)(cfg)
    print(cli.load(TABLE)(result))
    found = result.audit
    print(f"label audit ({found['method']}): {len(found['flagged'])} doubtful label(s) of "
          f"{found['train_examples']}; {len(found['duplicates'])} near-duplicate pair(s)")
    print(f"report: {result.output_dir / 'probe.html'}; labels to check: "
          f"{result.output_dir / 'label_audit.csv'}")
    print(f"train the best: python -m ktransfer.train --flagfile={result.best_flagfile}")
    return 0


def run() -> None:
    """The `ktransfer-probe` console script (same as `python -m ktransfer.probe`)."""
    cli.run(main, "ktransfer.probe")


if __name__ == "__main__":
    run()
