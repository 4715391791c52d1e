"""Registries: names, decorators, lazy entries and the one-line error naming the flag."""

from __future__ import annotations

import importlib
import sys

import pytest

from ktransfer.errors import ConfigError
from ktransfer.registry import Registry, registry_at

from plugins import AXES


def test_register_get_and_the_error_naming_the_flag():
    things = Registry("thing", "thing_flag")

    @things.register("a")
    def make_a() -> str:
        return "A"

    things.register("b", "ktransfer.errors:DataError")  # lazy: imported on first use
    assert things.names() == ("a", "b") and "a" in things and list(things) == ["a", "b"]
    assert things.get("a")() == "A"
    assert things["b"].__name__ == "DataError"
    with pytest.raises(ConfigError) as info:
        things.get("c")
    assert str(info.value) == "--thing_flag: unknown thing 'c'; choose one of a, b"
    with pytest.raises(ConfigError, match="^--other: unknown thing"):
        things.check("c", flag="other")


def test_lazy_entries_are_not_imported_until_used(monkeypatch):
    monkeypatch.delitem(sys.modules, "ktransfer.image.modality", raising=False)
    from ktransfer.modality import MODALITIES

    assert "image" in MODALITIES.names()
    assert "ktransfer.image.modality" not in sys.modules
    assert MODALITIES.get("image").name == "image"


def test_registry_at_finds_a_registry_by_its_path():
    from ktransfer.optim.catalog import SCHEDULES

    assert registry_at("ktransfer.optim.catalog:SCHEDULES") is SCHEDULES
    with pytest.raises(TypeError):
        registry_at("ktransfer.optim.schedules:make_schedule")


def test_describe_lists_every_entry_with_what_was_said_of_it_and_loads_none():
    things = Registry("thing", "thing_flag", {"lazy": "ktransfer.no_such_module:X"},
                      about={"lazy": "never imported"})
    things.register("plain", object())
    things.register("told", object(), about="a told thing")
    assert things.describe() == "lazy: never imported; plain; told: a told thing"


def test_the_help_of_a_registry_flag_is_generated_from_its_registry():
    """Adding an alignment (or any entry) updates --help: the choices are not written by
    hand in the config."""
    from absl import flags

    from ktransfer import config
    from ktransfer.domain.catalog import ALIGNMENTS

    fv = flags.FlagValues()
    config.define_flags(fv, config.run_groups(), lambda p: registry_at(p).names(),
                        lambda p: registry_at(p).describe())
    helptext = fv["mmd_alignment"].help
    for name in ALIGNMENTS.names():
        assert f"{name}: {ALIGNMENTS.about(name)}" in helptext


# Run in a fresh Python where importing TensorFlow or Keras fails: every registry a flag names
# and every modality's backbone check must work there, and each registry-backed flag of each
# command, given a name no registry holds, must be refused by pre-flight's name check.
NAMES_WITHOUT_TENSORFLOW = r"""
import dataclasses, json, sys
from ktransfer import config, preflight
from ktransfer.errors import ConfigError
from ktransfer.modality import BACKBONE_CHECKS
from ktransfer.registry import import_object, registry_at

commands = {
    "train": (config.build, config.run_groups(), {"data": "builtin:digits"}),
    "tune": (config.build_search, config.search_groups(), {"data": "builtin:digits"}),
    "find_lr": (config.build_find_lr, config.find_lr_groups(), {"data": "builtin:digits"}),
    "probe": (config.build_probe, config.probe_groups(), {"data": "builtin:digits"}),
    **{name: (lambda cls=cls, **v: config.build_command(cls, **v), config.command_groups(cls),
              base) for name, cls, base in (
        ("evaluate", config.EvaluateConfig, {"model": "x"}),
        ("predict", config.PredictConfig, {"model": "x"}),
        ("export", config.ExportConfig, {"run_dir": "x", "export_dir": "y"}))},
}
refused, paths = {}, set()
for command, (build, groups, base) in commands.items():
    for group in groups.values():
        for f in dataclasses.fields(group):
            path = f.metadata.get("registry")
            if not path:
                continue
            paths.add(path)
            value = ("nope",) if isinstance(f.default, tuple) else "nope"
            try:
                preflight.check_names(build(**base, **{f.name: value}))
                refused[f"{command} --{f.name}"] = "accepted"
            except ConfigError as exc:
                refused[f"{command} --{f.name}"] = exc.flag
for path in sorted(paths):
    registry_at(path).names()
for check in BACKBONE_CHECKS.values():
    try:
        import_object(check)("nope")
    except ConfigError as exc:
        refused[check] = exc.flag
print(json.dumps({"refused": refused, "loaded": sorted(m for m in ("tensorflow", "keras")
                                                       if m in sys.modules)}))
"""


def _without_tensorflow(tmp_path) -> dict:
    """PYTHONPATH with `tensorflow` and `keras` packages that fail when imported."""
    import os

    for name in ("tensorflow", "keras"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} imported')\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_every_name_a_flag_takes_is_checked_without_tensorflow(tmp_path):
    """On ce06f12 --task, --backbone, --optimizer, --strategy, --mmd_alignment (13 registries
    of 24) were refused only after TensorFlow loaded, 8-9 s later."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", NAMES_WITHOUT_TENSORFLOW], capture_output=True,
                          text=True, timeout=120, env=_without_tensorflow(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["loaded"] == []
    wrong = {k: v for k, v in found["refused"].items()
             if v != (k.split("--")[-1] if "--" in k else "backbone")}
    assert wrong == {} and len(found["refused"]) >= 25, found["refused"]


@pytest.mark.parametrize("command, flag", [
    ("train", "--task=nope"), ("train", "--backbone=nope"), ("tune", "--tuner=nope"),
    ("probe", "--backbones=small_cnn,nope"), ("export", "--tflite=nope"),
    ("train", "--modality=text --backbone=nope")])
def test_a_bad_name_is_one_line_in_under_5_seconds_before_tensorflow(tmp_path, command, flag):
    import subprocess
    import time

    args = {"train": ["--data=builtin:digits"], "tune": ["--data=builtin:digits"],
            "probe": ["--data=builtin:digits"], "export": ["--run_dir=x", "--export_dir=y"]}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", f"ktransfer.{command}", *args[command],
                           *flag.split()], capture_output=True, text=True, timeout=60,
                          env=_without_tensorflow(tmp_path))
    seconds = time.monotonic() - started
    flag_name = flag.split()[-1].split("=")[0]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"ktransfer.{command}: error: {flag_name}: "), done.stderr
    assert seconds < 5, seconds


def _registries() -> dict[str, Registry]:
    """Every registry the package declares at module level ("module:NAME"), found in the
    source, so that a new registry is covered by the contract below without being listed."""
    import ast

    from conftest import REPO

    found = {}
    for path in sorted((REPO / "ktransfer").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            value = getattr(node, "value", None)
            if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Registry":
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                found[f"{module}:{target.id}"] = registry_at(f"{module}:{target.id}")
    return found


REGISTRIES = _registries()


def test_the_contract_finds_every_registry():
    assert len(REGISTRIES) >= 24
    assert {"ktransfer.commands:COMMANDS", "ktransfer.tasks:TASKS",
            "ktransfer.image.catalog:BACKBONES"} <= set(REGISTRIES)


@pytest.mark.parametrize("path, name", [(path, name) for path, registry in REGISTRIES.items()
                                        for name in registry.names()])
def test_every_entry_of_every_registry_loads(path, name):
    """The generic contract, for every entry of every registry: its name is a flag value
    (lower case, no spaces), it loads, and what was said of it (if anything) is text. Each
    registry's own contract test (tasks, modalities, alignments, formats ...) goes further."""
    registry = REGISTRIES[path]
    assert name == name.strip() and " " not in name and name.lower() == name, name
    assert registry.get(name) is not None
    assert isinstance(registry.about(name), str)


def _names() -> dict[str, set[str]]:
    return {path: set(registry.names()) for path, registry in REGISTRIES.items()}


@pytest.mark.parametrize("axis", sorted(AXES))
def test_each_axis_has_a_toy_plugin_that_is_one_registration(axis):
    """tests/plugins/ holds a toy per axis; registering it adds its one name to its axis's
    registry and nothing to any other, the generic contract holds for it, and taking it back
    leaves the shipped entries alone."""
    path, module, name = AXES[axis]
    plugin = importlib.import_module(f"plugins.{module}")
    was_registered = name in REGISTRIES[path]
    plugin.unregister()
    shipped = _names()
    try:
        plugin.register()
        added = {p: names - shipped[p] for p, names in _names().items() if names != shipped[p]}
        assert added == {path: {name}}
        test_every_entry_of_every_registry_loads(path, name)
    finally:
        plugin.unregister()
    assert _names() == shipped
    if was_registered:
        plugin.register()


def test_the_package_names_no_plugin():
    """The toys touch no file of the package: nothing under ktransfer/ names them."""
    from conftest import REPO

    toys = {module for _, module, _ in AXES.values()}
    for path in (REPO / "ktransfer").rglob("*.py"):
        text = path.read_text()
        assert "plugins." not in text and not any(f'"{toy}"' in text for toy in toys), path
