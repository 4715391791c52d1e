"""TensorFlow Datasets sources, for any modality: find the prepared dataset, or say offline, in
seconds, what to run on a machine with a network (tfds itself retries for minutes).

Each modality turns the records into its own examples; this module only finds the builder, its
(input, label) keys, class names and the splits ktransfer uses.
"""

from __future__ import annotations

import logging
import socket
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


def supervised(found: Any, name: str, flag: str) -> tuple[str, str, tuple[str, ...]]:
    """(input key, label key, class names) of a dataset with (input, label) supervised keys."""
    keys = found.info.supervised_keys
    if not keys or len(keys) != 2:
        raise DataError(f"--{flag}=tfds:{name}: has no (input, label) supervised keys")
    input_key, label_key = keys
    label = found.info.features[label_key]
    names = getattr(label, "names", None) or [str(i) for i in range(label.num_classes)]
    return input_key, label_key, tuple(names)


def split_labels(found: Any, name: str, flag: str, skip: str) -> dict[str, tuple[str, np.ndarray]]:
    """{ktransfer split: (TFDS split name, int32 labels of its records)}, read in one pass
    without decoding the `skip` feature (the images or texts)."""
    import tensorflow_datasets as tfds

    _, label_key, _ = supervised(found, name, flag)
    out = {}
    for split, candidates in SPLIT_NAMES.items():
        tfds_name = next((n for n in candidates if n in found.info.splits), None)
        if tfds_name is None:
            continue
        records = found.as_dataset(split=tfds_name, shuffle_files=False,
                                   decoders={skip: tfds.decode.SkipDecoding()})
        labels = np.fromiter((int(r[label_key]) for r in records.as_numpy_iterator()), np.int32)
        out[split] = (tfds_name, labels)
    if "train" not in out:
        raise DataError(f"--{flag}=tfds:{name}: has no train split "
                        f"(splits: {', '.join(found.info.splits)})")
    return out
