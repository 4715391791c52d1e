"""`python -m ktransfer.train --flagfile=configs/NAME.cfg`: train a transfer-learning classifier.

Thin entry point: parses flags into a frozen `RunConfig` and calls `ktransfer.training.train`.
"""

from __future__ import annotations

from absl import flags

# cli sets TF_CPP_MIN_LOG_LEVEL on import; neither absl nor config imports TensorFlow first.
from ktransfer import cli, config

config.define_flags()
flags.DEFINE_bool("list_backbones", False, "Print the known backbones and exit.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    if FLAGS.list_backbones:
        from ktransfer.backbones import list_backbones

        print(list_backbones())
        return 0
    cfg = config.from_flags(FLAGS)
    from ktransfer.training import train

    result = train(cfg)
    from ktransfer.distribute import is_chief

    if not is_chief():
        print("multi-worker: done; the chief (worker 0) writes the outputs")
        return 0
    m = result.metrics
    print(f"run directory: {result.run_dir}")
    print(f"validation accuracy: {m['val']['accuracy']:.4f}  (loss {m['val']['loss']:.4f}, "
          f"{m['num_images']['val']} images)")
    if "test" in m:
        print(f"test accuracy: {m['test']['accuracy']:.4f}  (loss {m['test']['loss']:.4f}, "
              f"{m['num_images']['test']} images)")
    if "adaptation" in m and "target_accuracy" in m["adaptation"]:
        a = m["adaptation"]
        print(f"target accuracy: {a['target_accuracy']:.4f}  ({a['num_target_eval_images']} "
              f"images; domain MMD {a['mmd_before']:.4f} before, {a['mmd_after']:.4f} after"
              + (f"; {a['target_accuracy_before_adabn']:.4f} before --adabn"
                 if "target_accuracy_before_adabn" in a else "") + ")")
    if "export" in m:
        print(f"exported: {m['export']}")
    if cfg.train.report:
        print(f"report: {result.run_dir / 'report.html'}")
    return 0


if __name__ == "__main__":
    cli.run(main, "ktransfer.train")
