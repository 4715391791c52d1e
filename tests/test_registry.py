"""Registries: names, decorators, lazy entries and the one-line error naming the flag."""

from __future__ import annotations

import sys

import pytest

from ktransfer.errors import ConfigError
from ktransfer.registry import Registry, registry_at


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
    from ktransfer.optim.schedules import SCHEDULES

    assert registry_at("ktransfer.optim.schedules:SCHEDULES") is SCHEDULES
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
    from ktransfer.domain.alignments import ALIGNMENTS

    fv = flags.FlagValues()
    config.define_flags(fv, config.run_groups(), lambda p: registry_at(p).names(),
                        lambda p: registry_at(p).describe())
    helptext = fv["mmd_alignment"].help
    for name in ALIGNMENTS.names():
        assert f"{name}: {ALIGNMENTS.get(name).about}" in helptext
