"""`python -m ktransfer.evaluate --model=RUN_DIR [--data=...]`: metrics, confusion matrix, plots.

Thin entry point: loads the classifier and the images and calls `ktransfer.evaluation.evaluate`.
Without --data it evaluates the run's own test split (as `train` made it).
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli

flags.DEFINE_string("model", "", "A run directory of ktransfer.train or a .keras classifier "
                    "(labels.txt beside it).")
flags.DEFINE_string("data", "", "Labelled images: builtin:NAME, tfds:NAME or a folder of class "
                    "folders; default: the run's own split (see --split).")
flags.DEFINE_string("data_dir", "", "tfds data folder.")
flags.DEFINE_enum("split", "test", ["test", "val", "train", "all"], "Which split: of the run "
                  "(without --data), or of --data when it has splits (all: every image).")
flags.DEFINE_string("output_dir", "", "Where evaluation.json and the plots go; default "
                    "MODEL_DIR/evaluation-SPLIT.")
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_integer("top_k", 5, "k of the top-k accuracy.")
flags.DEFINE_enum("on_bad_image", "fail", ["fail", "skip"], "An unreadable image file: stop "
                  "with an error naming it, or skip it with a warning.")
flags.DEFINE_bool("unsafe_load", False, "Allow a model file that contains code (Lambda).")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    import os

    from ktransfer.errors import KtransferError

    if not FLAGS.model:
        raise KtransferError("--model: is required (a run directory or a .keras file)")
    if FLAGS.batch_size < 1 or FLAGS.top_k < 1:
        raise KtransferError("--batch_size: must be >= 1" if FLAGS.batch_size < 1
                             else "--top_k: must be >= 1")
    from ktransfer.data.sources import pick_split
    from ktransfer.evaluation import evaluate
    from ktransfer.saving import load_classifier
    from ktransfer.serving import classifier_shape

    model, names, run_dir = load_classifier(FLAGS.model, unsafe=FLAGS.unsafe_load)
    classifier_shape(model)
    images = pick_split(FLAGS.data, FLAGS.data_dir, FLAGS.split, run_dir, FLAGS.on_bad_image)
    base = run_dir or os.path.dirname(os.path.abspath(FLAGS.model))
    out = FLAGS.output_dir or os.path.join(base, f"evaluation-{FLAGS.split}")
    summary = evaluate(model, names, images, out, FLAGS.batch_size, FLAGS.top_k)
    k = min(FLAGS.top_k, len(names))
    print(f"images: {summary['num_images']}  accuracy: {summary['accuracy']:.4f}  "
          f"top-{k}: {summary[f'top{k}_accuracy']:.4f}  macro F1: {summary['macro_f1']:.4f}")
    for row in summary["per_class"]:
        print(f"  {row['class']:<20} precision {row['precision']:.3f}  recall "
              f"{row['recall']:.3f}  F1 {row['f1']:.3f}  ({row['support']} images)")
    print(f"written: {os.path.join(out, 'evaluation.json')} and plots")
    return 0


if __name__ == "__main__":
    cli.run(main, "ktransfer.evaluate")
