"""The real `python -m ktransfer.train` in a subprocess: runs, flag errors, data sources."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from ktransfer import __version__, config
from ktransfer.cli import NATIVE_LINE

from conftest import REPO, error_line, run_cli


# One case per way a command can fail: absl's parser, a config rule, pre-flight, the data, the
# download of a backbone and a check on the built model. Every name a pre-flight check refuses
# is in tests/test_preflight.py, in-process.
@pytest.mark.parametrize("args, expected", [
    (["--data=builtin:digits", "--epochs=-1"], "--epochs: must be >= 0, got -1"),
    (["--data=/no/such/dir"], "--data: folder '/no/such/dir' does not exist"),
    (["--data=builtin:digits", "--no_such_flag=1"], "no_such_flag"),
    (["--data=builtin:digits", "--classes=1,x", "--backbone=small_cnn", "--weights=none"],
     "--classes: class 'x' is not in the data"),
    (["--data=builtin:digits", "--backbone=hub:https://127.0.0.1:9/module/5"],
     "--backbone=hub:https://127.0.0.1:9/module/5: cannot download the module"),
    (["--data=builtin:digits", "--backbone=small_cnn", "--weights=none", "--unfreeze=block7",
      "--fine_tune_epochs=1"], "--unfreeze: 'block7' matches no layer"),
])
def test_bad_flags_fail_with_one_line_naming_the_flag(args, expected, tmp_path):
    result = run_cli("train", *args, f"--run_dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert expected in error_line(result), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing was written


def test_list_backbones():
    result = run_cli("train", "--list_backbones")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert {"VGG16", "ResNet50", "EfficientNetB0", "ConvNeXtTiny", "small_cnn"} <= set(names)


@pytest.mark.slow
def test_train_on_an_image_folder_prints_accuracies(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", f"--data={image_folder}", "--backbone=small_cnn",
                     "--weights=none", "--image_size=16", "--batch_size=4", "--epochs=0",
                     "--fine_tune_epochs=6", "--fine_tune_lr=0.01", "--bn_trainable",
                     "--val_split=0.25",
                     "--test_split=0.25", "--aug_flip=horizontal", "--verbose=0",
                     f"--run_dir={run_dir}", f"--export_dir={tmp_path / 'exports' / 'colours'}")
    assert result.returncode == 0, result.stderr
    assert "validation accuracy:" in result.stdout and "test accuracy:" in result.stdout
    assert (tmp_path / "exports" / "colours" / "1" / "saved_model.pb").is_file()
    assert (run_dir / "report.html").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["class_names"] == ["bird", "cat", "dog"]
    assert metrics["num_examples"] == {"train": 18, "val": 9, "test": 9}
    # Colour classes are easy: well above 1/3 chance after 6 short epochs from scratch.
    assert metrics["val"]["accuracy"] >= 0.6
    # Quiet by default: none of TensorFlow's native lines (cuInit, oneDNN, absl's own); our
    # messages read "HH:MM:SS message".
    assert not [line for line in result.stderr.splitlines()
                if NATIVE_LINE.match(line.encode())], result.stderr
    assert re.search(r"^\d\d:\d\d:\d\d data: 18 train", result.stderr, re.M)
    # The resolved flagfile re-runs the same job as is; --verbosity=1 shows the native lines.
    again = run_cli("train", f"--flagfile={run_dir / 'flags.cfg'}", "--overwrite",
                    "--verbosity=1")
    assert again.returncode == 0, again.stderr
    assert [line for line in again.stderr.splitlines() if NATIVE_LINE.match(line.encode())]


def test_version_of_every_command():
    for command in ("train", "evaluate", "predict", "export", "tune", "find_lr", "probe"):
        result = run_cli(command, "--version")
        assert result.returncode == 0 and result.stdout == f"ktransfer.{command} {__version__}\n"


def test_offline_tfds_fails_fast_with_how_to(tmp_path):
    result = run_cli("train", "--data=tfds:cifar10", f"--data_dir={tmp_path}",
                     "--backbone=small_cnn", "--weights=none", f"--run_dir={tmp_path / 'r'}",
                     timeout=60)
    assert result.returncode == 2
    assert "not found in" in error_line(result) and "--data_dir=DIR" in error_line(result)


@pytest.mark.parametrize("outcome, code", [("return 0", 0), ("raise DataError('--data: no')", 2)])
def test_an_entry_point_leaves_its_objects_out_of_the_final_garbage_collections(
        outcome, code, tmp_path):
    # A full collection over TensorFlow's objects takes 0.2-0.3 s, the last ones 1-2 s.
    script = tmp_path / "entry.py"
    script.write_text(
        "import atexit, gc\n"
        "from ktransfer import cli\n"
        "from ktransfer.errors import DataError\n"
        "seen = []\n"
        "atexit.register(lambda: print('later', gc.get_freeze_count() > seen[0], flush=True))\n"
        "def main(argv):\n"
        "    seen.append(gc.get_freeze_count())\n"
        "    print('imports', seen[0] > 0)\n"
        "    seen.append([[] for _ in range(1000)])  # made while running, kept\n"
        f"    {outcome}\n"
        "cli.run(main, 'entry')\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == code, result.stderr
    assert result.stdout.split() == ["imports", "True", "later", "True"]


def test_the_one_line_error_comes_after_what_native_code_wrote_before_it(tmp_path):
    """A codec's message written to fd 2 just before the error (libjpeg's "Improper call to
    JPEG library" on a broken file) went through the filter's pump thread and could land
    after ktransfer's error line; the error line is now the last."""
    script = tmp_path / "entry.py"
    script.write_text(
        "import os\n"
        "from ktransfer import cli\n"
        "from ktransfer.errors import DataError\n"
        "def main(argv):\n"
        "    os.write(2, b''.join(b'native line %d\\n' % i for i in range(3000)))\n"
        "    raise DataError('--data: broken.jpg: not a readable image')\n"
        "cli.run(main, 'entry')\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert error_line(result) == "entry: error: --data: broken.jpg: not a readable image"
    assert "native line 2999" in result.stderr  # not dropped: it is not a TensorFlow log line


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C (KeyboardInterrupt) in a command: one line saying what was kept, exit 130;
    before, a traceback."""
    import sys

    from ktransfer import cli

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["ktransfer.train"])
    with pytest.raises(SystemExit) as info:
        cli.run(interrupted, "ktransfer.train")
    assert info.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ktransfer.train: interrupted; what was written is kept")
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("groups", [
    config.run_groups(), config.search_groups(), config.find_lr_groups(),
    config.command_groups(config.EvaluateConfig, "evaluate"),
    config.command_groups(config.PredictConfig, "predict"),
    config.command_groups(config.ExportConfig, "export"), config.probe_groups(),
], ids=["train", "tune", "find_lr", "evaluate", "predict", "export", "probe"])
def test_help_lists_the_commands_own_flags_by_group_and_no_absl_flag(groups):
    from absl import flags

    from ktransfer import cli
    from ktransfer.registry import registry_at

    fv = flags.FlagValues()
    config.define_flags(fv, groups, lambda p: registry_at(p).names(),
                        lambda p: registry_at(p).describe())
    text = cli.usage("ktransfer.x", groups, [], fv)
    for group, cls in groups.items():
        assert f"\n{group}: " in text
        said = text.split(f"\n{group}: ", 1)[1].split("\n  --", 1)[0]
        assert said.rstrip().endswith("."), said  # the whole sentence (ce06f12 cut some)
        for f in config.options(cls):
            assert f"--{f.name}=" in text or f"--[no]{f.name}" in text, f.name
    for absl_flag in ("logtostderr", "verbosity", "only_check_args", "pdb"):
        assert f"--{absl_flag}" not in text and f"--[no]{absl_flag}" not in text


def test_help_of_a_command_prints_its_flags_and_exits_0():
    result = run_cli("evaluate", "--help")
    assert result.returncode == 0, result.stderr
    assert "--model=string" in result.stdout and "--logtostderr" not in result.stdout


@pytest.mark.parametrize("argv", [["--epochs=-1"], ["--lr=-1"], ["--val_split=2"]])
def test_a_bad_value_is_refused_before_tensorflow_loads(argv, tmp_path):
    """Config rules run before the library (and TensorFlow) is imported: a bad flag is
    refused in well under a second of work, not after TensorFlow's 10-20 s import."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['ktransfer.train', '--data=builtin:digits', *{argv!r}]\n"
            "try:\n    runpy.run_module('ktransfer.train', run_name='__main__')\n"
            "except SystemExit as exc:\n"
            "    print(exc.code, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.split() == ["2", "False", "False"], out.stderr
    assert out.stderr.strip().startswith("ktransfer.train: error: --")


def test_a_new_command_is_one_module_and_one_registration(tmp_path):
    """tests/plugins/hello.py registers itself; `ktransfer hello` then runs it like the
    built-in commands: flags into a frozen config (its rules refused in one line), one call."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys, plugins.hello; from ktransfer.commands import main; "
            "sys.argv = ['ktransfer', *sys.argv[1:]]; main()")
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    ran = subprocess.run([sys.executable, "-c", code, "hello", "--name=tests", "--times=2"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0 and ran.stdout.splitlines() == ["hello, tests"] * 2, ran.stderr
    bad = subprocess.run([sys.executable, "-c", code, "hello", "--times=0"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == "ktransfer.hello: error: --times: must be >= 1"
