"""Pre-flight: names and files are checked once, before any work, one line naming the flag."""

from __future__ import annotations

import re

import pytest

from ktransfer import config, preflight
from ktransfer.errors import ConfigError


@pytest.mark.parametrize("values, flag, message", [
    ({"data": "/no/such/folder"}, "data", "folder '/no/such/folder' does not exist"),
    ({"data": "builtin:nope"}, "data", "unknown built-in image dataset 'nope'"),
    ({"data": "builtin:digits", "val_data": "builtin:nope"}, "val_data", "unknown built-in"),
    ({"data": "builtin:digits", "target_data": "/nope"}, "target_data", "does not exist"),
    ({"data": "builtin:digits", "backbone": "ResNet9000"}, "backbone", "unknown backbone"),
    ({"data": "builtin:digits", "backbone": "file:/no/such.keras"}, "backbone", "does not exist"),
    ({"data": "builtin:digits", "weights": "/no/such.weights.h5"}, "weights", "does not exist"),
    ({"data": "builtin:digits", "lr_schedule": "wavy"}, "lr_schedule",
     "unknown learning-rate schedule 'wavy'"),
    ({"data": "builtin:digits", "optimizer": "lion"}, "optimizer", "unknown optimizer"),
    ({"data": "builtin:digits", "modality": "audio"}, "modality", "unknown input kind"),
    ({"data": "builtin:digits", "pooling": "cls"}, "pooling", "is for text"),
    ({"data": "builtin:digits", "init_from": "/no/run"}, "init_from", "does not exist"),
    ({"data": "builtin:digits", "export_dir": "/proc/exports/x"}, "export_dir", "cannot"),
])
def test_bad_names_and_paths_name_their_flag(values, flag, message, tmp_path):
    cfg = config.build(run_dir=str(tmp_path / "run"), **values)
    with pytest.raises(ConfigError) as info:
        preflight.check_train(cfg)
    assert info.value.flag == flag
    assert str(info.value).startswith(f"--{flag}: ") and message in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_registry_choices_are_the_flag_choices():
    """The choices --help lists for registry-backed flags come from the registries themselves,
    and a name no registry holds is refused by pre-flight with those choices."""
    from absl import flags

    from ktransfer import cli
    from ktransfer.optim.catalog import SCHEDULES

    fv = flags.FlagValues()
    config.define_flags(fv, config.run_groups())
    text = cli.usage("ktransfer.train", config.run_groups(), [], fv)
    assert f"--lr_schedule=<{'|'.join(SCHEDULES.names())}>" in text
    assert "--preprocess=<auto|" in text and "|caffe|" in text
    with pytest.raises(ConfigError, match=f"^--lr_schedule: .*{', '.join(SCHEDULES.names())}"):
        preflight.check_train(config.build(data="builtin:digits", lr_schedule="wavy"))


def test_unwritable_places_are_found_before_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="^--run_dir: cannot create .* is a file"):
        preflight.check_writable(blocker / "run", "run_dir")
    with pytest.raises(ConfigError, match="^--output: .* is a folder"):
        preflight.check_writable(tmp_path, "output", folder=False)
    preflight.check_writable(tmp_path / "new" / "deeper", "run_dir")  # creatable: fine
    assert not (tmp_path / "new").exists()  # and nothing was created


def test_text_names_given_to_the_wrong_kind_get_a_hint(tmp_path):
    cases = [({"data": "builtin:sentiment_movies"}, "data", "it is a text set: add "
              "--modality=text"),
             ({"modality": "text", "data": "builtin:sentiment_movies",
               "backbone": "MobileNetV3Small"}, "backbone",
              "'MobileNetV3Small' is not a text encoder"),
             ({"modality": "text", "data": "builtin:sentiment_movies", "backbone": "minilm",
               "pooling": "flatten"}, "pooling", "flatten is for images"),
             ({"modality": "text", "data": str(tmp_path), "backbone": "hub:/x"},
              "hub_preprocessor", "needs its preprocessing model"),
             ({"modality": "text", "data": "/no/such.csv", "backbone": "minilm"}, "data",
              "neither a folder of class folders of .txt files nor a .csv/.tsv/.jsonl file")]
    for values, flag, message in cases:
        with pytest.raises(ConfigError) as info:
            preflight.check_train(config.build(run_dir=str(tmp_path / "run"), **values))
        assert info.value.flag == flag and message in str(info.value)


def test_gradient_accumulation_is_refused_where_it_was_not_built_for(tiny_config):
    """Accumulation under several replicas goes through merge_call (ktransfer.optim.optimizers);
    where tf.distribute skips it (TPU, XLA on several GPUs), one line up front."""
    for values in ({"strategy": "tpu"}, {"strategy": "mirrored", "jit_compile": "on"}):
        with pytest.raises(ConfigError, match=r"^--accumulate: gradient accumulation with "
                                              r"several replicas is built and tested for"):
            preflight.check_train(tiny_config(accumulate=2, **values))
    preflight.check_train(tiny_config(accumulate=2, strategy="mirrored"))
    preflight.check_train(tiny_config(accumulate=2, jit_compile="on"))  # one device: fine


@pytest.mark.parametrize("entry, cfg, flag", [
    ("ktransfer.reporting.evaluation:evaluate_saved",
     lambda tmp: config.EvaluateConfig(model=str(tmp / "no-run")), "model"),
    ("ktransfer.reporting.evaluation:evaluate_saved",
     lambda tmp: config.EvaluateConfig(model=str(tmp), tta="sideways"), "tta"),
    ("ktransfer.deploy.prediction:predict_saved",
     lambda tmp: config.PredictConfig(model=str(tmp / "m.keras")), "model"),
    ("ktransfer.deploy.serving:export_saved",
     lambda tmp: config.ExportConfig(model=str(tmp / "m.keras"), export_dir=str(tmp / "e/x")),
     "model"),
])
def test_library_entries_run_pre_flight_themselves(entry, cfg, flag, tmp_path):
    """evaluate / predict / export called from Python are checked as the command line is,
    before a model is opened (before, only the entry points checked)."""
    from ktransfer.registry import import_object

    function = import_object(entry)
    args = (cfg(tmp_path), []) if "predict" in entry else (cfg(tmp_path),)
    with pytest.raises(ConfigError) as info:
        function(*args)
    assert info.value.flag == flag


def test_a_file_given_as_an_image_folder_is_called_a_file(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"not a folder")
    with pytest.raises(ConfigError, match=r"^--data: .*photo.jpg' is a file; give a folder"):
        preflight.check_train(config.build(data=str(path), run_dir=str(tmp_path / "r")))


def test_hidden_class_folders_are_left_out_with_a_warning(tmp_path, caplog):
    from ktransfer.image.sources import read_class_folders

    from conftest import write_images

    root = write_images(tmp_path / "images", per_class=2)
    (root / ".ipynb_checkpoints").mkdir()
    with caplog.at_level("WARNING"):
        images = read_class_folders(root)
    assert images.class_names == ("bird", "cat", "dog")
    assert "left out 1 hidden folder(s)" in caplog.text and ".ipynb_checkpoints" in caplog.text


@pytest.mark.parametrize("modality, data, backbone", [
    ("image", "builtin:digits", "efficientnet_lite0"),
    ("text", "builtin:sentiment_movies", "minilm"),
])
def test_the_default_backbone_is_the_modalitys_own(modality, data, backbone):
    """`--modality=text` alone no longer stops on an image backbone: auto is each modality's
    default (before: MobileNetV3Small for text too)."""
    cfg = preflight.with_defaults(config.build(modality=modality, data=data, run_dir="r"))
    assert cfg.model.backbone == backbone


@pytest.mark.parametrize("flags, refused", [
    ({"max_length": 64}, "--max_length: is a flag of --modality=text; this run is "
                         "--modality=image"),
    ({"on_bad_text": "skip"}, "--on_bad_text: is a flag of --modality=text"),
])
def test_a_flag_of_another_modality_is_refused_not_ignored(flags, refused):
    """An image run given a text flag (ignored silently before: the flag did nothing) is a
    one-line error naming it, before any work; its own modality's flags are taken."""
    with pytest.raises(ConfigError, match="^" + re.escape(refused)):
        preflight.check_train(config.build(data="builtin:digits", **flags), run_dir=False)
    preflight.check_train(config.build(data="builtin:digits", aug_flip="horizontal",
                                       image_size=32, preprocess="tf"), run_dir=False)
