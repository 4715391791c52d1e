"""`RunConfig`: every group one `ktransfer.train` run needs, and the rules across groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ktransfer.config.adapt import AdaptConfig
from ktransfer.config.data import DataConfig
from ktransfer.config.distribute import DistributeConfig
from ktransfer.config.fields import AUTO_BATCH, require
from ktransfer.config.groups import declared_groups, pick
from ktransfer.config.model import ModelConfig
from ktransfer.config.train import TrainConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything one `ktransfer.train` run needs.

    `groups` holds the declared groups (a modality's own options, see `config.groups`) as
    (name, options) pairs; `group(name)` reads one (its defaults when absent).
    """

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    groups: tuple[tuple[str, Any], ...] = ()

    def group(self, name: str) -> Any:
        """The declared group `name` (e.g. "text"): as given, or its defaults."""
        return pick(self.groups, name, declared_groups())

    def __post_init__(self) -> None:
        require(self.adapt.mmd_layers != "head" or bool(self.model.head_hidden), "mmd_layers",
                "head aligns the hidden head layers and this head has none: give "
                "--head_hidden or --mmd_layers=all")
        require(self.train.epochs + self.train.fine_tune_epochs > 0 or bool(self.model.init_from),
                "epochs", "--epochs and --fine_tune_epochs are both 0: nothing to train (with "
                "--init_from, 0 and 0 re-use that model as it is)")
        require(self.data.batch_size != AUTO_BATCH or self.train.accumulate == 1, "accumulate",
                "is set by --batch_size=auto (to --effective_batch_size / the batch found); "
                "leave it at 1")
        require(not self.model.lora_rank or self.train.fine_tune_epochs > 0, "lora_rank",
                "adapts the backbone in phase 2: give --fine_tune_epochs >= 1")
