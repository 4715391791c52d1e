"""Text as a modality: the glue between the text modules and the shared training, evaluation,
export and tuning code (see `ktransfer.modality`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ktransfer.config import PredictConfig, RunConfig
from ktransfer.data.examples import Examples, Splits
from ktransfer.data.tables import TABLE_EXTENSIONS
from ktransfer.errors import ConfigError, DataError
from ktransfer.modality import Answer, Explainer, Feed, Modality, Network, Presentation
from ktransfer.network.catalog import POOLINGS
from ktransfer.tasks import task_of
from ktransfer.text import gallery, serving
from ktransfer.text.attributions import TokenAttributions, write_attributions
from ktransfer.text.builtin import BUILTIN
from ktransfer.text.chunks import ChunkedPreprocessor, Chunking
from ktransfer.text.classifier import build_classifier
from ktransfer.text.encoders import (
    PREPROCESSOR_DIR,
    check_encoder,
    list_encoders,
    load_encoder,
    load_preprocessor,
    token_lengths,
)
from ktransfer.text.hub import CONFIG as HUB_CONFIG
from ktransfer.text.hub import HubTextPreprocessor
from ktransfer.text.pipeline import TextFeed
from ktransfer.text.prediction import read_texts
from ktransfer.text.sources import open_source
from ktransfer.text.textset import TextSet, text_set

MASK_KEYS = ("padding_mask", "input_mask")


class TextPresentation(Presentation):
    """Texts in the report (mistakes with token attributions), `predict` on strings, .txt files
    and stdin, `predict --explain` as integrated-gradient attributions."""

    noun = "text"
    input_key = "text"

    def list_backbones(self) -> str:
        return list_encoders()

    def data_words(self, data: dict[str, Any]) -> list[str]:
        """Texts cut to --max_length or read in chunks per split, and bad texts skipped."""
        found = [f"{words}: " + ", ".join(f"{n} {split}" for split, n in data[key].items())
                 for key, words in (("truncated", "cut to --max_length"),
                                    ("chunked", "read in chunks")) if data.get(key)]
        if data.get("skipped_bad_texts"):
            found.append(f"bad texts skipped: {data['skipped_bad_texts']}")
        return found

    def gallery(self, model: keras.Model, feed: Feed, examples: Examples,
                mistakes: list[dict[str, Any]], out_dir: str | os.PathLike) -> str:
        assert isinstance(examples, TextSet) and isinstance(feed, TextFeed)
        return gallery.gallery(examples, mistakes, _attributions(model, feed))

    def explainer(self, model: keras.Model, feed: Feed, layer: str
                  ) -> Explainer:
        assert isinstance(feed, TextFeed)
        if layer:
            raise ConfigError("explain_layer", "is for image models (Grad-CAM)")
        attribute = TokenAttributions(model, feed.preprocessor, feed.mask_key)

        def explain(examples: Examples, class_ids: list[int], class_names: list[str],
                    out_dir: str | os.PathLike) -> list[Path]:
            assert isinstance(examples, TextSet) and examples.texts is not None
            texts = [str(t) for t in examples.texts]
            return write_attributions(attribute(texts, class_ids, class_names),
                                      examples.names() or texts, out_dir)

        return explain

    def read_inputs(self, args: list[str], cfg: PredictConfig) -> Examples:
        return read_texts(args, cfg.text, cfg.group("text").on_bad_text)

    def from_values(self, values: list[str]) -> Examples:
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise DataError("give the texts to predict as a list of non-empty strings")
        return text_set(("",), [0] * len(values), list(values),
                        ids=[f"[{i}]" for i in range(len(values))])

    def shown(self, examples: Examples) -> list[str] | None:
        assert isinstance(examples, TextSet) and examples.texts is not None
        return [str(t) for t in examples.texts]


class TextModality(Modality):
    """Class folders of .txt files, CSV / TSV / JSON-lines tables, TFDS text sets and the
    built-in sentiment sentences; keras-hub encoders; a raw-string signature."""

    name = "text"
    presentation = TextPresentation()
    builtin = BUILTIN
    tflite_signature = serving.TOKENS_SIGNATURE

    def check(self, cfg: RunConfig) -> None:
        check_encoder(cfg)
        if cfg.model.weights not in ("imagenet", "none"):
            raise ConfigError("weights", "text encoders bring their own weights: leave "
                              "--weights=imagenet (pretrained, as shipped) or none (random)")
        if POOLINGS.get(cfg.model.pooling).sequence is None:
            raise ConfigError("pooling", f"{cfg.model.pooling} is for images; text uses avg "
                              "(mean over the tokens) or cls")
        if cfg.group("text").text_column == cfg.group("task").label_column:
            raise ConfigError("label_column", "must differ from --text_column")

    def check_features(self, cfg: RunConfig) -> None:
        if cfg.group("text").long_text == "chunks":
            raise ConfigError("long_text", "chunks give several feature vectors per text; tune, "
                              "probe and domain adaptation need one: use --long_text=truncate "
                              "there (train takes chunks)")

    def check_path(self, path: str, flag: str) -> None:
        if not (os.path.isdir(path) or (os.path.isfile(path)
                                        and path.lower().endswith(TABLE_EXTENSIONS))):
            raise ConfigError(flag, f"{path!r} is neither a folder of class folders of .txt "
                              f"files nor a {'/'.join(TABLE_EXTENSIONS)} file")

    def open_source(self, spec: str, cfg: RunConfig, flag: str) -> dict[str, Examples]:
        return dict(open_source(spec, cfg, flag))

    def build(self, cfg: RunConfig, num_classes: int) -> Network:
        text = cfg.group("text")
        encoder = load_encoder(cfg.model, text)
        chunking = Chunking.of(text)
        model = build_classifier(encoder, num_classes, cfg.model, task_of(cfg),
                                 text.chunk_pooling if chunking else "")
        preprocessor = (ChunkedPreprocessor(encoder.preprocessor, chunking, encoder.mask_key)
                        if chunking else encoder.preprocessor)
        return Network(model, encoder.backbone, {"encoder": encoder.name,
                                                  "max_length": text.max_length,
                                                  "long_text": text.long_text},
                       preprocessor=preprocessor)

    def feed(self, cfg: RunConfig, network: Network) -> Feed:
        text = cfg.group("text")
        return TextFeed(network.preprocessor, _mask_key(network.model), text.max_length,
                        text.length_buckets, cfg.data.shuffle_buffer, task=task_of(cfg))

    def feed_for(self, model: keras.Model, location: str | None) -> Feed:
        folder = Path(location or ".") / PREPROCESSOR_DIR
        preprocessor = (HubTextPreprocessor.load(folder) if (folder / HUB_CONFIG).is_file()
                        else load_preprocessor(location or "."))
        chunking = Chunking.load(folder)
        if chunking:
            preprocessor = ChunkedPreprocessor(preprocessor, chunking, _mask_key(model))
        return TextFeed(preprocessor, _mask_key(model), int(preprocessor.sequence_length))

    def accepts(self, model: keras.Model) -> bool:
        return isinstance(model.input, dict) and any(k in model.input for k in MASK_KEYS)

    def endpoints(self, model: keras.Model, feed: Feed, answer: Answer) -> dict[str, Any]:
        assert isinstance(feed, TextFeed)
        return serving.endpoints(model, feed.preprocessor, feed.mask_key, answer)

    def serving_inputs(self, examples: Examples, n: int) -> dict[str, np.ndarray]:
        """`text`: the raw strings."""
        assert isinstance(examples, TextSet) and examples.texts is not None
        return {"text": np.array([str(t).encode("utf-8") for t in examples.texts[:n]],
                                 dtype=object)}

    def data_notes(self, splits: Splits, feed: Feed) -> dict[str, Any]:
        """Bad texts skipped while reading, and texts cut to --max_length, per split."""
        assert isinstance(feed, TextFeed)
        chunking = feed.chunking
        limit = chunking.span if chunking else feed.max_length - 2  # [CLS] and [SEP]
        notes: dict[str, Any] = {"max_length": feed.max_length, "truncated": {},
                                 "skipped_bad_texts": 0}
        if chunking:
            notes.update(chunked={}, chunks={})
        for split, examples in (("train", splits.train), ("val", splits.val),
                                ("test", splits.test)):
            if isinstance(examples, TextSet) and examples.texts is not None:
                lengths = token_lengths(feed.preprocessor, [str(t) for t in examples.texts])
                notes["truncated"][split] = sum(n > limit for n in lengths)
                if chunking:
                    notes["chunked"][split] = sum(n > chunking.window for n in lengths)
                    notes["chunks"][split] = sum(chunking.count(n) for n in lengths)
                notes["skipped_bad_texts"] = max(notes["skipped_bad_texts"], examples.skipped)
        return notes


def _mask_key(model: keras.Model) -> str:
    return next(k for k in MASK_KEYS if k in model.input)


def _attributions(model: keras.Model, feed: TextFeed) -> TokenAttributions | None:
    """Integrated gradients for the report, or None where the encoder has no token embedding
    layer (TF Hub)."""
    try:
        return TokenAttributions(model, feed.preprocessor, feed.mask_key)
    except ConfigError:
        return None


TEXT = TextModality()
