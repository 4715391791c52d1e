"""Splitting labelled examples of any kind into train / validation / test, as the run's task
stratifies them; class subsets and few-label sampling.

A source opener (one per modality) turns a `--data` string into its splits (`all`, or some of
`train` / `val` / `test`); `load_splits` makes the three sets a run trains, validates and tests on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ktransfer.config import DataConfig
from ktransfer.data.examples import Examples, Splits
from ktransfer.data.targets import Targets
from ktransfer.errors import DataError

# Folder names (and TFDS split names) recognised as given splits, in order of preference.
SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}

# (source string, flag) -> {split name: examples}
SourceOpener = Callable[[str, str], dict[str, Examples]]


def stratified_split(labels: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Splits positions into (kept, held_out) with about `fraction` of each class held out.

    Every class with at least 2 examples keeps at least one and holds out at least one.
    """
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = int(round(fraction * len(idx)))
        n_held = min(max(n_held, 1), len(idx) - 1) if len(idx) >= 2 else 0
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def per_class_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Positions of at most `per_class` examples of each class, chosen with `seed`."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def _given(cfg: DataConfig, open_source: SourceOpener, main: dict[str, Examples], flag: str,
           key: str, class_names: tuple[str, ...], task: Targets) -> Examples | None:
    """The `key` split from `--flag` when given, else from the main source (or None)."""
    spec = getattr(cfg, flag)
    if spec:
        sets = open_source(spec, flag)
        chosen = sets.get(key, sets.get("all", sets.get("train")))
    else:
        chosen = main.get(key)
    if chosen is None:
        return None
    chosen = chosen.as_task(task, flag)
    try:
        return chosen.relabel(class_names, task)
    except DataError as exc:
        raise DataError(f"--{flag}: {exc}") from None


def load_splits(cfg: DataConfig, open_source: SourceOpener, task: Targets) -> Splits:
    """Builds the train / validation / test sets a `DataConfig` describes, with targets in
    `task`'s form, split as it stratifies."""
    main = open_source(cfg.data, "data")
    train = main.get("train", main.get("all"))
    if train is None:
        raise DataError(f"--data: {cfg.data} has no train split (it has {', '.join(main)})")
    train = train.as_task(task)
    class_names = tuple(cfg.classes) if cfg.classes else train.class_names
    check_class_names(class_names)
    try:
        train = train.relabel(class_names, task)
    except DataError as exc:
        raise DataError(f"--classes: {exc}") from None
    test = _given(cfg, open_source, main, "test_data", "test", class_names, task)
    carved = 0.0  # fraction of the data already held out for test
    if test is None and cfg.test_split > 0:
        rest, held = task.split(train.labels, cfg.test_split, cfg.split_seed)
        train, test = train.subset(rest), train.subset(held)
        carved = cfg.test_split
    val = _given(cfg, open_source, main, "val_data", "val", class_names, task)
    if val is None:
        # val_split is a fraction of all the data; what is left after the test split is smaller.
        fraction = cfg.val_split / (1.0 - carved)
        rest, held = task.split(train.labels, max(fraction, 1e-9), cfg.split_seed + 1)
        train, val = train.subset(rest), train.subset(held)
    if cfg.train_per_class:
        train = train.subset(task.sample(train.labels, cfg.train_per_class, cfg.split_seed))
    _check_not_empty(train, val)
    task.check_splits(train.labels, val.labels, class_names)
    return Splits(train=train, val=val, test=test if test is not None and len(test) else None)


def check_class_names(class_names: tuple[str, ...], flag: str = "data") -> None:
    """Class names become lines of labels.txt and fields of predictions: none may be empty,
    hold a control character (tab, newline) or start or end with white space."""
    for name in class_names:
        if not name.strip() or name != name.strip() or any(ord(c) < 32 for c in name):
            raise DataError(f"--{flag}: class name {name!r} is empty, has a tab, newline or "
                            "other control character, or starts or ends with white space; "
                            "rename that class folder (or label)")


def _check_not_empty(train: Examples, val: Examples) -> None:
    for name, examples in (("training", train), ("validation", val)):
        if len(examples) == 0:
            raise DataError(f"--data: the {name} set is empty; add examples or change "
                            "--val_split/--test_split")


def pick(sets: dict[str, Examples], split: str, spec: str) -> Examples:
    """The `split` ('train', 'val', 'test' or 'all') of an opened source."""
    if split != "all" and split in sets:
        return sets[split]
    if "all" in sets:
        return sets["all"]
    if split != "all":
        raise DataError(f"--split: {spec} has no {split!r} split; it has "
                        f"{', '.join(sorted(sets))}")
    return concat(list(sets.values()))


def concat(sets: list[Examples]) -> Examples:
    """One set of several of the same kind and classes (e.g. a folder's train/val/test)."""
    first = sets[0]
    n = len(first)
    per_example = [f.name for f in dataclasses.fields(first)
                   if isinstance(getattr(first, f.name), np.ndarray) and
                   len(getattr(first, f.name)) == n]
    shared = [f.name for f in dataclasses.fields(first) if f.name not in per_example]
    if any(type(s) is not type(first) or getattr(s, name) != getattr(first, name)
           for s in sets for name in shared):
        raise DataError("--split: all needs splits of one kind with the same classes; pick a "
                        "split")
    joined: dict[str, Any] = {name: np.concatenate([getattr(s, name) for s in sets])
                              for name in per_example}
    return dataclasses.replace(first, **joined)
