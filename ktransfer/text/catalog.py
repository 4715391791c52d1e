"""The text registries, importable without TensorFlow: named encoders (`--backbone=minilm`)
and encoder sources (`kerashub:`, `hub:`); and the check of an encoder name, which pre-flight
runs before TensorFlow loads."""

from __future__ import annotations

from ktransfer.errors import ConfigError
from ktransfer.registry import Registry

# Named encoders: name -> () -> a keras-hub handle (a local folder or a preset name).
ENCODERS: Registry = Registry("text encoder", "backbone", {
    "minilm": "ktransfer.text.encoders:minilm_folder"})

# Encoders named SOURCE:HANDLE -> EncoderSource; a new source is an entry here.
SOURCES: Registry = Registry("text encoder source", "backbone", {
    "kerashub": "ktransfer.text.encoders:KERASHUB", "hub": "ktransfer.text.hub:SOURCE",
}, about={"kerashub": "a Hugging Face or keras-hub checkpoint folder, or a preset name",
          "hub": "a TF Hub text encoder, with --hub_preprocessor"})


def check_encoder_name(name: str) -> None:
    """ConfigError (--backbone) unless `name` is a named encoder or SOURCE:HANDLE of a
    registered source with a handle; the handle itself is checked later, by its source."""
    kind, colon, handle = name.partition(":")
    if colon and kind in SOURCES:
        if not handle:
            raise ConfigError("backbone", f"give a name or folder after {kind}:")
        return
    if name not in ENCODERS:
        raise ConfigError("backbone", f"{name!r} is not a text encoder; give "
                          f"{', '.join(ENCODERS)} or SOURCE:HANDLE with a source of "
                          f"{', '.join(SOURCES)} (`python -m ktransfer.train "
                          "--modality=text --list_backbones`)")
