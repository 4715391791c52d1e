"""Config: validation names the flag; flagfiles round-trip."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from absl import flags

from ktransfer import config
from ktransfer.errors import ConfigError

from conftest import REPO


def test_config_imports_nothing_heavy_and_touches_no_files(tmp_path):
    """Building a config neither imports TensorFlow nor looks at the file system: names and
    paths are checked once, in pre-flight. (It reads the modalities' registrations for their
    config groups, which import numpy, no more.)"""
    out = _fresh_python("import sys; from ktransfer import config; "
                        "config.build(data='/no/such/folder', backbone='nope', "
                        "weights='/no/w.h5', max_length=64); print(sorted(m for m in "
                        "('tensorflow', 'keras', 'tensorflow_hub', 'keras_hub') "
                        "if m in sys.modules))", tmp_path)
    assert out.strip() == "[]"


def _fresh_python(code: str, cwd) -> str:
    """The output of `code` run in a new Python process (the package on its path)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_defaults_with_data_are_valid():
    cfg = config.build(data="builtin:digits")
    assert cfg.model.backbone == "auto"  # the modality's default, fixed by pre-flight
    assert cfg.train.epochs == 5


@pytest.mark.parametrize("values, flag", [
    ({}, "data"),
    ({"data": "builtin:digits", "epochs": -1}, "epochs"),
    ({"data": "builtin:digits", "epochs": 0, "fine_tune_epochs": 0}, "epochs"),
    ({"data": "builtin:digits", "lr": 0.0}, "lr"),
    ({"data": "builtin:digits", "batch_size": 0}, "batch_size"),
    ({"data": "builtin:digits", "val_split": 1.5}, "val_split"),
    ({"data": "builtin:digits", "val_split": 0.6, "test_split": 0.5}, "val_split"),
    ({"data": "builtin:digits", "dropout": 1.0}, "dropout"),
    ({"data": "builtin:digits", "unfreeze": "0"}, "unfreeze"),
    ({"data": "builtin:digits", "lr_layer_decay": 1.5}, "lr_layer_decay"),
    ({"data": "builtin:digits", "backbone": "hub:"}, "backbone"),
    ({"data": "builtin:digits", "image_size": 3}, "image_size"),
    ({"data": "builtin:digits", "classes": ["1", "1"]}, "classes"),
    ({"data": "builtin:digits", "head_hidden": ["0"]}, "head_hidden"),
    ({"data": "builtin:digits", "head_hidden": ["big"]}, "head_hidden"),
    ({"data": "builtin:digits", "aug_crop": 1.0}, "aug_crop"),
    ({"data": "builtin:digits", "no_such_option": 1}, "no_such_option"),
])
def test_bad_values_name_their_flag(values, flag):
    with pytest.raises(ConfigError) as info:
        config.build(**values)
    assert info.value.flag == flag
    assert str(info.value).startswith(f"--{flag}: ")
    assert "\n" not in str(info.value)


FIXED_CHOICES = [(f.name, f.metadata["choices"])
                 for cls in config.search_groups().values()
                 for f in config.options(cls)
                 if f.metadata.get("choices") and not f.metadata.get("registry")]
_RUN_FIELDS = {f.name for cls in config.run_groups().values() for f in config.options(cls)}


@pytest.mark.parametrize("name, choices", FIXED_CHOICES, ids=[n for n, _ in FIXED_CHOICES])
def test_a_value_outside_a_fields_choices_is_refused_in_python_as_on_the_command_line(
        name, choices):
    """The command line's enum flags refuse other values; a notebook's `config.build` (or
    `train(...)`, `adapt(**flags)`) must too, before any work, instead of passing them on."""
    build = config.build if name in _RUN_FIELDS else config.build_search
    with pytest.raises(ConfigError) as info:
        build(data="builtin:digits", **{name: "no-such-choice"})
    assert str(info.value) == (f"--{name}: expected one of {', '.join(choices)}, "
                               "got 'no-such-choice'")
    for choice in choices:  # each is still accepted (other rules may ask for more flags)
        try:
            build(data="builtin:digits", **{name: choice})
        except ConfigError as exc:
            assert "expected one of" not in str(exc)



def test_flagfile_round_trip(tmp_path):
    cfg = config.build(data="builtin:digits", classes=["3", "1"], head_hidden=["64", "32"],
                       backbone="small_cnn", weights="none", bn_trainable=True, lr=0.02,
                       aug_flip="horizontal", run_dir=str(tmp_path / "r"))
    text = config.to_flagfile(cfg, "a header\nline two")
    assert text.startswith("# a header\n# line two\n")
    path = tmp_path / "flags.cfg"
    path.write_text(text)

    fv = flags.FlagValues()
    config.define_flags(fv)
    fv([ "prog", f"--flagfile={path}"])
    again = config.from_flags(fv)
    assert again == cfg
    assert again.data.classes == ("3", "1")
    assert again.model.head_hidden == (64, 32)


def test_command_line_overrides_flagfile(tmp_path):
    path = tmp_path / "a.cfg"
    path.write_text("--data=builtin:digits\n--epochs=3\n")
    fv = flags.FlagValues()
    config.define_flags(fv)
    fv(["prog", f"--flagfile={path}", "--epochs=7"])
    assert config.from_flags(fv).train.epochs == 7


def test_augment_enabled():
    from ktransfer.image.options import ImageOptions

    assert not ImageOptions().enabled and ImageOptions(on_bad_image="skip").first_enabled() is None
    assert ImageOptions(aug_flip="horizontal").enabled
    assert ImageOptions(aug_noise=2.0).enabled


def test_the_modality_registry_imports_no_tensorflow_and_keras_then_loads_cleanly(tmp_path):
    """Knowing the modalities imports no TensorFlow, and importing Keras after them (which
    registers every Keras class of ktransfer, each modality's too) does not cycle back."""
    out = _fresh_python("import sys; from ktransfer.modality import MODALITIES; "
                        "print('tensorflow' in sys.modules, sorted(MODALITIES)); import keras; "
                        "print(keras.saving.get_registered_object('ktransfer>Preprocess') is "
                        "not None)", tmp_path)
    assert out.split() == ["False", "['image',", "'text']", "True"]


def test_text_runs_take_the_text_recipe_for_every_flag_they_leave_out(tmp_path):
    """--modality=text alone gives configs/sentiment.cfg's schedule (a head, then the encoder
    fine-tuned); a flag given wins, and images keep their own defaults; the same from keyword
    values, a flagfile and the command line."""
    from ktransfer.text.options import RECIPE as TEXT_RECIPE

    text = config.build(modality="text", data="t.csv")
    assert (text.train.epochs, text.train.fine_tune_epochs, text.train.cache_features) == \
        (TEXT_RECIPE["epochs"], TEXT_RECIPE["fine_tune_epochs"], True)
    assert config.build(modality="text", data="t.csv", fine_tune_epochs=0).train.\
        fine_tune_epochs == 0
    image = config.build(data="builtin:digits")
    assert (image.train.epochs, image.train.fine_tune_epochs) == (5, 0)
    path = tmp_path / "a.cfg"
    path.write_text("--modality=text\n--data=t.csv\n--epochs=4\n")
    assert config.from_flagfile(path).train.fine_tune_epochs == TEXT_RECIPE["fine_tune_epochs"]
    fv = flags.FlagValues()
    config.define_flags(fv)
    fv(["prog", f"--flagfile={path}", "--lr=0.5"])
    parsed = config.from_flags(fv)
    assert (parsed.train.epochs, parsed.train.lr, parsed.train.lr_schedule) == \
        (4, 0.5, TEXT_RECIPE["lr_schedule"])
