"""`python -m ktransfer.evaluate --model=RUN_DIR [--data=...]`: metrics, confusion matrix, plots.

Thin entry point: flags -> `EvaluateConfig` -> `ktransfer.reporting.evaluation.evaluate_saved`.
Without --data it evaluates the run's own test split (as `train` made it).
The library (and TensorFlow) loads once the flags are parsed and the config's rules hold,
so a bad value is refused at once.
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli, config  # cli first: it quiets TensorFlow's logs

EVALUATE = "ktransfer.reporting.evaluation:evaluate_saved"

cli.define_flags(config.command_groups(config.EvaluateConfig, "evaluate"))
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    cfg = config.command_from_flags(config.EvaluateConfig, FLAGS)
    summary, out = cli.load(EVALUATE)(cfg)
    k = cfg.top_k
    top = (f"top-{k}: {summary[f'top{k}_accuracy']:.4f}  " if k < len(summary["class_names"])
           and f"top{k}_accuracy" in summary else "")  # top-k of k classes is always 1
    print(f"examples: {summary['num_examples']}  accuracy: {summary['accuracy']:.4f}  "
          f"{top}macro F1: {summary['macro_f1']:.4f}")
    if "tta" in summary:
        print(f"test-time augmentation {summary['tta']['views']} ({summary['tta']['passes']} "
              f"views): accuracy {summary['tta']['accuracy']:.4f}, without it "
              f"{summary['tta']['accuracy_without']:.4f}")
    for row in summary["per_class"]:
        print(f"  {row['class']:<20} precision {row['precision']:.3f}  recall "
              f"{row['recall']:.3f}  F1 {row['f1']:.3f}  ({row['support']} examples)")
    print(f"written: {out / 'evaluation.json'} and plots")
    return 0


def run() -> None:
    """The `ktransfer-evaluate` console script (same as `python -m ktransfer.evaluate`)."""
    cli.run(main, "ktransfer.evaluate")


if __name__ == "__main__":
    run()
