"""`TextOptions`: the text modality's config group (table columns, tokenisation, bad texts),
declared by its registration (`ktransfer.modality`) and read as `cfg.group("text")`."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import option, require


@dataclass(frozen=True)
class TextOptions:
    """Text inputs (--modality=text): table columns, tokenisation and the bad-text policy."""

    text_column: str = option("text", "CSV / TSV / JSON-lines data: the column (key) holding "
                              "the text.", reading=True)
    max_length: int = option(128, "Longest token sequence, special tokens included; longer "
                             "texts are truncated (and counted in the report).")
    length_buckets: bool = option(True, "Fine-tuning batches of texts of similar length, each "
                                  "padded to its own longest text rather than --max_length.")
    on_bad_text: str = option("fail", "A text that is empty or not valid UTF-8: stop with an "
                              "error naming its file and line, or skip it (counted in the "
                              "report).", ("fail", "skip"), reading=True)
    hub_preprocessor: str = option("", "hub: text encoders: the TF Hub preprocessing model that "
                                   "goes with the encoder (URL or folder), e.g. "
                                   "bert_en_uncased_preprocess.")

    def __post_init__(self) -> None:
        require(bool(self.text_column), "text_column", "give a column name")
        require(4 <= self.max_length <= 8192, "max_length",
                f"must be in [4, 8192], got {self.max_length}")
