"""`DataConfig`: where examples come from, how they are split and batched."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import AUTO_BATCH, option, require


def weight_pairs(text: str, flag: str, where: str = "") -> dict[str, float]:
    """{class name: weight} of `name=weight` pairs separated by commas or newlines (# starts
    a comment); a bad pair or a weight that is not a number >= 0 is a ConfigError naming
    `flag` (and `where`, the file, with the line)."""
    found: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        place = f"{where}:{number}: " if where else ""
        for item in (i.strip() for i in line.split("#", 1)[0].split(",")):
            if not item:
                continue
            name, sep, value = (part.strip() for part in item.rpartition("="))
            try:
                weight = float(value) if sep and name else -1.0
            except ValueError:
                weight = -1.0
            require(0.0 <= weight < float("inf"), flag, f"{place}{item!r}: give name=weight "
                    "with a weight >= 0, e.g. cat=1,dog=4.5")
            require(name not in found, flag, f"{place}class {name!r} given twice")
            found[name] = weight
    return found


@dataclass(frozen=True)
class DataConfig:
    """Where examples come from and how they are split and batched."""

    modality: str = option("image", "What the examples are: image, or text.",
                           registry="ktransfer.modality:MODALITIES")
    task: str = option("single_label", "What each example's target is.",
                       registry="ktransfer.tasks:TASKS")
    data: str = option(
        "", "Training data: builtin:NAME, tfds:NAME, a folder of class sub-folders "
        "(folder:PATH or just PATH), or a .csv, .tsv or .jsonl table (texts with "
        "--text_column; image file paths with --file_column; labels in --label_column).")
    data_dir: str = option("", "tfds data folder (where `tfds build` put the dataset).")
    val_data: str = option("", "Validation data (same forms as --data); default: split --data.")
    test_data: str = option("", "Test data (same forms as --data); default: split --data.")
    classes: tuple[str, ...] = option(
        (), "Only these classes, in this order (comma-separated names); default: all.")
    val_split: float = option(0.2, "Fraction of --data held out for validation when no "
                             "validation split is given.")
    test_split: float = option(0.2, "Fraction of --data held out for test when no test split "
                              "is given.")
    split_seed: int = option(0, "Seed of the stratified train/validation/test split.")
    train_per_class: int = option(0, "Keep at most this many training images per class "
                                 "(few-label experiments); 0 keeps all.")
    batch_size: int = option(32, "Global batch size, or auto: the largest divisor of "
                             "--effective_batch_size (itself, its half, ...) whose fine-tuning "
                             "step fits in memory, found by trying one step each, with "
                             "--accumulate making up the rest.", auto=True)
    effective_batch_size: int = option(32, "--batch_size=auto: the examples each optimizer "
                                       "step averages over (batch x --accumulate).")
    cache: str = option("memory", "Cache decoded, resized images: memory, disk (in the run "
                       "directory) or none.", ("memory", "disk", "none"))
    class_weights: str = option("none", "Weight the loss per class: none; balanced "
                               "(n_samples / (n_classes * count)); explicit weights as "
                               "name=weight pairs (cat=1,dog=4.5; unnamed classes weigh 1); "
                               "or a file of such pairs, one per line, or a JSON object "
                               "{name: weight}.")
    shuffle_buffer: int = option(2048, "Shuffle buffer size (examples). Image files are "
                                 "shuffled by name before decoding; the buffer reshuffles "
                                 "in-memory sets and the cached images after the first pass.")
    def __post_init__(self) -> None:
        require(bool(self.data), "data", "is required, e.g. --data=builtin:digits or "
               "--data=/path/to/class_folders")
        for name in ("val_split", "test_split"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, name, f"must be in [0, 1), got {value}")
        require(self.val_split + self.test_split < 1.0, "val_split",
               "--val_split + --test_split must be below 1 to leave training data")
        require(self.train_per_class >= 0, "train_per_class", "must be >= 0")
        if str(self.batch_size) == "auto":  # from Python: build(batch_size="auto")
            object.__setattr__(self, "batch_size", AUTO_BATCH)
        require(self.batch_size >= 1 or self.batch_size == AUTO_BATCH, "batch_size",
                f"must be >= 1 or auto, got {self.batch_size}")
        require(self.effective_batch_size >= 1, "effective_batch_size", "must be >= 1")
        require(self.shuffle_buffer >= 1, "shuffle_buffer", "must be >= 1")
        require(bool(self.class_weights), "class_weights", "give none, balanced, name=weight "
                "pairs or a file")
        if "=" in self.class_weights:
            weight_pairs(self.class_weights, "class_weights")  # raises on a bad pair
        require(len(set(self.classes)) == len(self.classes), "classes", "lists a class twice")
        for name in ("data", "val_data", "test_data"):
            value = getattr(self, name)
            for prefix in ("builtin:", "tfds:", "folder:"):
                require(value != prefix, name, f"give a name or path after {prefix}")
