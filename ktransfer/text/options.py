"""`TextOptions`: the text modality's config group (table columns, tokenisation, bad texts),
declared by its registration (`ktransfer.modality`) and read as `cfg.group("text")`."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import option, require

# configs/sentiment.cfg's schedule (a head on cached sentence vectors, then the whole encoder
# fine-tuned with a warm-up, cosine decay and layer-wise rates): the image defaults (5
# head epochs, no fine-tuning) leave a text model near chance. Text runs take these defaults
# for every shared flag they do not set (`config.groups.recipe`).
RECIPE = {"pooling": "avg", "cache_features": True, "epochs": 30, "lr": 0.003,
          "dropout": 0.1, "fine_tune_epochs": 3, "fine_tune_lr": 5e-5,
          "warmup_epochs": 0.3, "lr_schedule": "cosine", "lr_layer_decay": 0.9,
          "unfreeze": "all", "early_stopping": 3}


@dataclass(frozen=True)
class TextOptions:
    """Text inputs (--modality=text): table columns, tokenisation and the bad-text policy."""

    text_column: str = option("text", "CSV / TSV / JSON-lines data: the column (key) holding "
                              "the text.", reading=True)
    max_length: int = option(128, "Longest token sequence, special tokens included; longer "
                             "texts are truncated or cut into chunks (--long_text), and "
                             "counted in the report.")
    long_text: str = option("truncate", "A text longer than --max_length: keep its first "
                            "--max_length tokens, or read it all as overlapping chunks of "
                            "--max_length tokens whose outputs are pooled (--chunk_pooling) in "
                            "training, evaluation, prediction and the export alike.",
                            ("truncate", "chunks"))
    chunk_stride: int = option(0, "--long_text=chunks: word pieces from one chunk's start to "
                               "the next; below --max_length - 2 the chunks overlap; 0: half "
                               "a chunk.")
    max_chunks: int = option(8, "--long_text=chunks: chunks per text at most; the rest of a "
                             "longer text is left out (counted in the report). Memory and "
                             "time grow with it.")
    chunk_pooling: str = option("mean", "--long_text=chunks: a text's output from its chunks': "
                                "their mean, or their maximum (class probabilities then "
                                "rescaled to sum to 1).", ("mean", "max"))
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
        window = self.max_length - 2
        require(0 <= self.chunk_stride <= window, "chunk_stride", f"must be in [0, "
                f"{window}] (--max_length - 2, else word pieces between chunks are skipped), "
                f"got {self.chunk_stride}")
        require(1 <= self.max_chunks <= 512, "max_chunks",
                f"must be in [1, 512], got {self.max_chunks}")
        if self.long_text == "truncate":
            for flag, default in (("chunk_stride", 0), ("max_chunks", 8),
                                  ("chunk_pooling", "mean")):
                require(getattr(self, flag) == default, flag,
                        "is for --long_text=chunks; set that too, or leave it out")
