"""TensorFlow Datasets sources, for any modality: find the prepared dataset, or say offline, in
seconds, what to run on a machine with a network (tfds itself retries for minutes).

Each modality turns the records into its own examples; this module only finds the builder, its
(input, label) keys, class names and the splits ktransfer uses, and reads the labels: a
`ClassLabel` feature gives one class per example (single-label targets), a
`Sequence(ClassLabel)` feature a set of them (multi-label targets, `--task=multi_label`).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from ktransfer.data.splits import SPLIT_NAMES
from ktransfer.errors import DataError

log = logging.getLogger(__name__)


def online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    """Whether `host` answers on port 443 within `timeout` seconds."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def builder(name: str, data_dir: str, flag: str) -> Any:
    """The prepared TFDS builder `name` in `data_dir`; downloads and prepares it when missing and
    a network is there, else a DataError with the command to run elsewhere."""
    import tensorflow_datasets as tfds

    try:
        found = tfds.builder(name, data_dir=data_dir or None)
    except Exception as exc:  # DatasetNotFoundError and friends
        raise DataError(f"--{flag}=tfds:{name}: unknown TFDS dataset ({exc.__class__.__name__})"
                        ) from None
    if not found.is_prepared():
        where = data_dir or "~/tensorflow_datasets"
        if not online():
            raise DataError(
                f"--{flag}=tfds:{name}: not found in {where} and there is no network. On a "
                f"machine with internet run: python -c \"import tensorflow_datasets as tfds; "
                f"tfds.builder('{name}', data_dir='DIR').download_and_prepare()\", copy DIR "
                f"here and pass --data_dir=DIR")
        log.info("downloading and preparing TFDS %s into %s", name, where)
        found.download_and_prepare()
    return found


@dataclass(frozen=True)
class Supervision:
    """Which features of a TFDS dataset ktransfer reads: the input, the label and its
    classes, and the task its labels are targets of."""

    input_key: str
    label_key: str
    class_names: tuple[str, ...]
    task: str  # single_label (a ClassLabel) or multi_label (a Sequence of ClassLabel)

    def targets(self, raw: list[Any]) -> np.ndarray:
        """The labels of records (ints, or int arrays for label sets) in the task's form:
        int32 [N], or float32 multi-hot [N, C]."""
        if self.task == "single_label":
            return np.asarray([int(v) for v in raw], np.int32)
        found = np.zeros((len(raw), len(self.class_names)), np.float32)
        for row, ids in enumerate(raw):
            found[row, np.asarray(ids, np.int64)] = 1.0
        return found


def supervised(found: Any, name: str, flag: str, input_kind: str = "",
               label_key: str = "label") -> Supervision:
    """What to read of a dataset: its (input, label) supervised keys; for a dataset without
    them (multi-label sets like voc), its first feature of type `input_kind` ("Image",
    "Text") and the feature `label_key` (--label_column)."""
    keys = found.info.supervised_keys
    features = found.info.features
    if keys and len(keys) == 2:
        input_key, label_key = keys
    else:
        input_key = next((k for k, f in features.items()
                          if type(f).__name__ == input_kind), "")
        if not input_key or label_key not in features:
            raise DataError(f"--{flag}=tfds:{name}: has no (input, label) supervised keys; "
                            f"name its label feature with --label_column (features: "
                            f"{', '.join(features)})")
    label = features[label_key]
    task = "single_label"
    if type(label).__name__ == "Sequence":
        label, task = label.feature, "multi_label"
    if type(label).__name__ != "ClassLabel":
        raise DataError(f"--{flag}=tfds:{name}: label feature {label_key!r} is a "
                        f"{type(label).__name__}; ktransfer reads ClassLabel or "
                        "Sequence(ClassLabel) labels")
    names = getattr(label, "names", None) or [str(i) for i in range(label.num_classes)]
    return Supervision(input_key, label_key, tuple(names), task)


def split_labels(found: Any, name: str, flag: str, reading: Supervision
                 ) -> dict[str, tuple[str, np.ndarray]]:
    """{ktransfer split: (TFDS split name, the targets of its records)}, read in one pass
    without decoding the input feature (the images or texts)."""
    import tensorflow_datasets as tfds

    label_key, out = reading.label_key, {}
    for split, candidates in SPLIT_NAMES.items():
        tfds_name = next((n for n in candidates if n in found.info.splits), None)
        if tfds_name is None:
            continue
        records = found.as_dataset(split=tfds_name, shuffle_files=False,
                                   decoders={reading.input_key: tfds.decode.SkipDecoding()})
        out[split] = (tfds_name, reading.targets([r[label_key] for r in
                                                  records.as_numpy_iterator()]))
    if "train" not in out:
        raise DataError(f"--{flag}=tfds:{name}: has no train split "
                        f"(splits: {', '.join(found.info.splits)})")
    return out
