"""`python -m ktransfer.export --run_dir=RUN --export_dir=DIR/NAME`: a SavedModel for TF Serving.

Thin entry point: flags -> `ExportConfig` -> `ktransfer.deploy.serving.export_saved`.
The library (and TensorFlow) loads once the flags are parsed and the config's rules hold,
so a bad value is refused at once.
"""

from __future__ import annotations

from absl import flags

from ktransfer import cli  # first: it quiets TensorFlow's logs
from ktransfer.commands import COMMANDS

EXPORT = "ktransfer.deploy.serving:export_saved"

COMMAND = COMMANDS.get("export")
cli.define_flags(COMMAND.groups())
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    cfg = COMMAND.build(FLAGS)
    path = cli.load(EXPORT, cfg)(cfg)
    print(f"exported: {path}")
    print(f"TF Serving: tensorflow_model_server --rest_api_port=8501 "
          f"--model_config_file={path.parent.parent / 'models.config'}")
    return 0


def run() -> None:
    """The `ktransfer-export` console script (same as `python -m ktransfer.export`)."""
    cli.run(main, "ktransfer.export")


if __name__ == "__main__":
    run()
