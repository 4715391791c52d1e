"""The search registries, importable without TensorFlow: `--space` and `--tuner` names."""

from __future__ import annotations

from ktransfer.registry import Registry

_SEARCH = "ktransfer.tuning.searching"

# --space: name -> search(search config, modality) -> SearchResult
SPACES: Registry = Registry("space", "space", {
    "head": f"{_SEARCH}:head_search", "adaptation": f"{_SEARCH}:adaptation_search"})

# --tuner: name -> (build, tune config, epochs, **common) -> a Keras Tuner tuner
TUNERS: Registry = Registry("tuner", "tuner", {
    name: f"{_SEARCH}:{name}_tuner" for name in ("random", "hyperband", "bayesian")})

# --tuner for --space=adaptation: name -> a Keras Tuner oracle (hyperband has none that fits
# whole training runs)
ADAPTATION_ORACLES: Registry = Registry("tuner", "tuner", {
    name: f"{_SEARCH}:{name}_oracle" for name in ("random", "bayesian")})
