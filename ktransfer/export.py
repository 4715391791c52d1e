"""`python -m ktransfer.export --run_dir=RUN --export_dir=DIR/NAME`: a SavedModel for TF Serving.

Thin entry point: loads the trained classifier and calls `ktransfer.serving.export`.
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli

flags.DEFINE_string("run_dir", "", "Run directory of ktransfer.train (or use --model).")
flags.DEFINE_string("model", "", "A .keras classifier file (labels.txt beside it), instead of "
                    "--run_dir.")
flags.DEFINE_string("export_dir", "", "Where the model's numbered versions go: DIR/NAME "
                    "(TF Serving's base path).")
flags.DEFINE_integer("version", 0, "Version number; 0 takes the next free one.")
flags.DEFINE_integer("top_k", 5, "How many top classes the signatures return.")
flags.DEFINE_bool("tflite", False, "Also write VERSION/model.tflite (pixels in).")
flags.DEFINE_bool("unsafe_load", False, "Allow a model file that contains code (Lambda).")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    from ktransfer.errors import KtransferError

    if bool(FLAGS.run_dir) == bool(FLAGS.model):
        raise KtransferError("--run_dir: give exactly one of --run_dir and --model")
    if not FLAGS.export_dir:
        raise KtransferError("--export_dir: is required, e.g. --export_dir=exports/digits")
    if FLAGS.version < 0 or FLAGS.top_k < 1:
        raise KtransferError("--version: must be >= 0" if FLAGS.version < 0
                             else "--top_k: must be >= 1")
    from ktransfer.saving import load_classifier
    from ktransfer.serving import export

    flag = "run_dir" if FLAGS.run_dir else "model"
    model, names, _ = load_classifier(FLAGS.run_dir or FLAGS.model, unsafe=FLAGS.unsafe_load,
                                      flag=flag)
    path = export(model, names, FLAGS.export_dir, FLAGS.version, FLAGS.top_k, FLAGS.tflite)
    print(f"exported: {path}")
    print(f"TF Serving: tensorflow_model_server --rest_api_port=8501 "
          f"--model_config_file={path.parent.parent / 'models.config'}")
    return 0


if __name__ == "__main__":
    cli.run(main, "ktransfer.export")
