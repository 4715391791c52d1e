"""`python -m ktransfer.train --flagfile=configs/NAME.cfg`: train a transfer-learning classifier.

Thin entry point: parses flags into a frozen `RunConfig` and calls `ktransfer.training.train`.
The library (and TensorFlow) loads once the flags are parsed and the config's rules hold,
so a bad value is refused at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from absl import flags

from ktransfer import cli  # first: it quiets TensorFlow's logs
from ktransfer.commands import COMMANDS
from ktransfer.modality import MODALITIES

if TYPE_CHECKING:
    from ktransfer.training import TrainResult

TRAIN = "ktransfer.training:train"
IS_CHIEF = "ktransfer.training.distribute:is_chief"

COMMAND = COMMANDS.get("train")
cli.define_flags(COMMAND.groups())
cli.define_extra("list_backbones", False, "Print the known backbones of --modality and exit.")
FLAGS = flags.FLAGS


def summary(result: TrainResult, report: bool) -> str:
    """What a finished run prints: where it is and its headline metric (the task's: accuracy,
    macro-F1, mean absolute error) per split."""
    m = result.metrics
    n = m["num_examples"]
    key = m.get("headline", "accuracy")
    name = key.replace("_", " ")
    lines = [f"run directory: {result.run_dir}",
             f"validation {name}: {m['val'][key]:.4f}  (loss {m['val']['loss']:.4f}, "
             f"{n['val']} examples)"]
    if "test" in m:
        lines.append(f"test {name}: {m['test'][key]:.4f}  (loss "
                     f"{m['test']['loss']:.4f}, {n['test']} examples)")
    q = m.get("quality", {})
    if "low" in q:
        lines.append(f"  what it means: {q['split']} {q['metric']} {q['value']:.4f}, 95 % "
                     f"interval {q['low']:.4f} to {q['high']:.4f} ({q['examples']} examples)"
                     + (f"; {q['baseline_is']}: {q['baseline']:.4f}" if "baseline" in q else ""))
    lines += [f"  WARNING: {warning}" for warning in m.get("warnings", [])]
    a = m.get("adaptation", {})
    if "target_accuracy" in a:
        before = (f"; {a['target_accuracy_before_adabn']:.4f} before --adabn"
                  if "target_accuracy_before_adabn" in a else "")
        lines.append(f"target accuracy: {a['target_accuracy']:.4f}  "
                     f"({a['num_target_eval_images']} examples; domain MMD "
                     f"{a['mmd_before']:.4f} before, {a['mmd_after']:.4f} after{before})")
    if "export" in m:
        lines.append(f"exported: {m['export']}")
    if report:
        lines.append(f"report: {result.run_dir / 'report.html'}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if FLAGS.list_backbones:
        print(MODALITIES.get(FLAGS.modality).presentation.list_backbones())
        return 0
    cfg = COMMAND.build(FLAGS)
    result = cli.load(TRAIN, cfg)(cfg)
    if not cli.load(IS_CHIEF)():
        print("multi-worker: done; the chief (worker 0) writes the outputs")
        return 0
    print(summary(result, cfg.train.report))
    return 0


def run() -> None:
    """The `ktransfer-train` console script (same as `python -m ktransfer.train`)."""
    cli.run(main, "ktransfer.train")


if __name__ == "__main__":
    run()
