"""`python -m ktransfer.predict --model=RUN_DIR FILES_OR_FOLDERS...`: classes of images.

Thin entry point: one line per image (`text`), or `--format=csv|json`, to stdout or --output.
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli

flags.DEFINE_string("model", "", "A run directory of ktransfer.train or a .keras classifier "
                    "(labels.txt beside it).")
flags.DEFINE_integer("top_k", 1, "How many classes per image.")
flags.DEFINE_enum("format", "text", ["text", "csv", "json"], "Output format.")
flags.DEFINE_string("output", "", "Write to this file (atomically) instead of stdout.")
flags.DEFINE_enum("on_bad_image", "fail", ["fail", "skip"], "A file that is not a readable "
                  "image: stop with an error naming it, or skip it with a warning.")
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_bool("unsafe_load", False, "Allow a model file that contains code (Lambda).")
FLAGS = flags.FLAGS


def format_predictions(predictions, fmt: str) -> str:
    """text: `file<TAB>class<TAB>probability[...]` per line; csv with a header; json list."""
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps([{"file": p.file, "top_k": [{"class": c, "probability": round(s, 6)}
                                                      for c, s in p.top_k]}
                           for p in predictions], indent=1) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        k = len(predictions[0].top_k)
        writer.writerow(["file"] + [f"{w}{i}" for i in range(1, k + 1)
                                    for w in ("class", "probability")])
        for p in predictions:
            writer.writerow([p.file] + [v for c, s in p.top_k for v in (c, f"{s:.6f}")])
        return buffer.getvalue()
    return "".join(p.file + "".join(f"\t{c}\t{s:.4f}" for c, s in p.top_k) + "\n"
                   for p in predictions)


def main(argv: list[str]) -> int:
    import sys

    from ktransfer.errors import KtransferError

    if not FLAGS.model:
        raise KtransferError("--model: is required (a run directory or a .keras file)")
    if FLAGS.top_k < 1 or FLAGS.batch_size < 1:
        raise KtransferError("--top_k: must be >= 1" if FLAGS.top_k < 1
                             else "--batch_size: must be >= 1")
    from ktransfer import atomic
    from ktransfer.prediction import collect_files, predict_files
    from ktransfer.saving import load_classifier
    from ktransfer.serving import classifier_shape

    files = collect_files(argv[1:])
    model, names, _ = load_classifier(FLAGS.model, unsafe=FLAGS.unsafe_load)
    classifier_shape(model)
    predictions = predict_files(model, names, files, FLAGS.top_k, FLAGS.batch_size,
                                FLAGS.on_bad_image)
    text = format_predictions(predictions, FLAGS.format)
    if FLAGS.output:
        atomic.write_text(FLAGS.output, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    cli.run(main, "ktransfer.predict", positional=True)
