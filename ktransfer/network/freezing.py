"""Which backbone layers train: feature extraction, top-N, by name or block, gradual unfreezing,
and layer-wise learning-rate multipliers.

Keras 3 runs a BatchNormalization layer with `trainable=False` in inference mode, so keeping BN
frozen while fine-tuning keeps its moving statistics and its behaviour. A "block" is the part of
a layer name up to its first number (`block5_conv1` -> `block5`, `conv4_block2_1_conv` ->
`conv4`, `block_16_expand` -> `block_16`, `expanded_conv_3_add` -> `expanded_conv_3`), which
matches the stage/block naming of keras.applications models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import keras

from ktransfer.config import RunConfig
from ktransfer.errors import ConfigError
from ktransfer.network import lora, remat

_BLOCK = re.compile(r"^([A-Za-z_]*?\d+[a-z]?)(?=_|$)")


def weighted_layers(backbone: keras.Model) -> list[keras.layers.Layer]:
    """Backbone layers that own weights, input to output."""
    return [layer for layer in backbone.layers if layer.weights]


def is_batchnorm(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def block_of(layer_name: str) -> str:
    """The block a layer belongs to (see the module docstring); the name itself if no number."""
    match = _BLOCK.match(layer_name)
    return match.group(1) if match else layer_name


def blocks(backbone: keras.Model) -> list[tuple[str, list[keras.layers.Layer]]]:
    """Consecutive weighted layers grouped by block, input to output."""
    groups: list[tuple[str, list[keras.layers.Layer]]] = []
    for layer in weighted_layers(backbone):
        name = block_of(layer.name)
        if groups and groups[-1][0] == name:
            groups[-1][1].append(layer)
        else:
            groups.append((name, [layer]))
    return groups


def select(backbone: keras.Model, unfreeze: str) -> list[keras.layers.Layer]:
    """The weighted layers phase 2 unfreezes, input to output.

    `unfreeze`: "all"; an integer N (the top N weighted layers); or comma-separated layer-name
    patterns (regular expressions matched at the start of the name, so a block name such as
    `block5` selects its whole block).
    """
    layers = weighted_layers(backbone)
    if unfreeze == "all":
        return layers
    if unfreeze.isdigit():
        return layers[max(0, len(layers) - int(unfreeze)):]
    patterns = [p.strip() for p in unfreeze.split(",") if p.strip()]
    chosen = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError("unfreeze", f"bad pattern {pattern!r}: {exc}") from None
        hits = [layer for layer in layers if regex.match(layer.name)]
        if not hits:
            names = ", ".join(dict.fromkeys(block_of(layer.name) for layer in layers))
            raise ConfigError("unfreeze", f"{pattern!r} matches no layer with weights of the "
                              f"backbone; its blocks are: {names[:300]}")
        chosen.extend(hits)
    chosen_ids = {id(layer) for layer in chosen}
    return [layer for layer in layers if id(layer) in chosen_ids]


def freeze(backbone: keras.Model) -> None:
    """Feature extraction: no backbone weight changes, BatchNorm in inference mode."""
    backbone.trainable = False


def set_trainable(backbone: keras.Model, layers: Iterable[keras.layers.Layer],
                  bn_trainable: bool = False) -> int:
    """Makes exactly `layers` trainable (BatchNorm only if `bn_trainable`); returns the count.

    A hub module that trains runs in training mode (updating its BatchNorm statistics) only with
    `bn_trainable`, like BatchNorm layers here.
    """
    backbone.trainable = True
    wanted = {id(layer) for layer in layers}
    count = 0
    for layer in weighted_layers(backbone):
        trainable = id(layer) in wanted and (bn_trainable or not is_batchnorm(layer))
        layer.trainable = trainable
        if hasattr(layer, "module_training"):  # a hub module: its BatchNorm statistics
            layer.module_training = trainable and bn_trainable
        count += int(trainable)
    return count


def gradual_stages(layers: list[keras.layers.Layer]) -> list[list[keras.layers.Layer]]:
    """Cumulative sets for gradual unfreezing: the top block of `layers`, then one block more
    per stage, down to all of them."""
    groups: list[list[keras.layers.Layer]] = []
    for layer in layers:
        if groups and block_of(groups[-1][-1].name) == block_of(layer.name):
            groups[-1].append(layer)
        else:
            groups.append([layer])
    stages: list[list[keras.layers.Layer]] = []
    current: list[keras.layers.Layer] = []
    for group in reversed(groups):
        current = group + current
        stages.append(list(current))
    return stages


def layer_lr_multipliers(backbone: keras.Model, decay: float) -> dict[str, float]:
    """{variable path: learning-rate multiplier}: the top backbone block gets `decay`, the next
    `decay**2`, and so on down (the head, not listed, keeps 1). Discriminative fine-tuning."""
    multipliers = {}
    for depth, (_, group) in enumerate(reversed(blocks(backbone)), start=1):
        for layer in group:
            for variable in layer.weights:
                multipliers[variable.path] = decay ** depth
    return multipliers


def _count(weights) -> int:
    return sum(int(w.numpy().size) for w in weights)


def _phase2(layer: keras.layers.Layer, stage: int | None, stages: int, bn_trainable: bool,
            lr_multipliers: dict[str, float] | None) -> str:
    """What a backbone layer does in phase 2: frozen, trains (at stage k), its LR factor."""
    if stage is None:
        return "frozen"
    if is_batchnorm(layer) and not bn_trainable:
        return "frozen (BatchNorm)"
    text = f"stage {stage}" if stages > 1 else "trains"
    if lr_multipliers:
        text += f" lr x{lr_multipliers.get(layer.weights[0].path, 1.0):.3g}"
    return text


def _row(name: str, block: str, layer: keras.layers.Layer, phase1: str, phase2: str) -> str:
    return (f"{name[:32]:<32} {block[:18]:<18} {type(layer).__name__[:20]:<20} "
            f"{_count(layer.weights):>10,}  {phase1:<8} {phase2}")


def describe(model: keras.Model, backbone: keras.Model, stages: list[list[keras.layers.Layer]],
             bn_trainable: bool, lr_multipliers: dict[str, float] | None = None) -> str:
    """A table of the backbone's weighted layers and the head: block, type, parameters, and
    whether each trains in phase 1 (head) and phase 2 (fine-tune; `stage k` with gradual
    unfreezing, `xM` for a learning-rate multiplier); `stages` is empty without phase 2.

    Leaves the backbone frozen (as phase 1 starts).
    """
    first_stage: dict[int, int] = {}
    for k, layers in enumerate(stages, start=1):
        for layer in layers:
            first_stage.setdefault(id(layer), k)
    phase2_trainable = 0
    if stages:
        set_trainable(backbone, stages[-1], bn_trainable)
        phase2_trainable = _count(model.trainable_weights)
    freeze(backbone)
    rows = [f"{'layer':<32} {'block':<18} {'type':<20} {'params':>10}  {'phase 1':<8} phase 2"]
    rows += [_row(layer.name, block_of(layer.name), layer, "frozen",
                  _phase2(layer, first_stage.get(id(layer)), len(stages), bn_trainable,
                          lr_multipliers))
             for layer in weighted_layers(backbone)]
    rows += [_row(layer.name, "head", layer, "trains", "trains" if stages else "-")
             for layer in model.layers if layer is not backbone and layer.trainable_weights]
    summary = (f"parameters: {_count(model.weights):,} in all; phase 1 trains "
               f"{_count(model.trainable_weights):,}")
    if stages:
        summary += f"; phase 2 trains {phase2_trainable:,}"
        if len(stages) > 1:
            summary += f" once all {len(stages)} stages are unfrozen"
    return "\n".join([*rows, summary])


def check_fine_tuning(backbone: keras.Model, cfg: RunConfig) -> None:
    """Pre-flight of the fine-tuning phase's own flags on the built backbone (by `train` and by
    `find_lr --phase=fine_tune`, before any step): --lora_targets name adaptable layers,
    --remat has blocks to recompute."""
    if cfg.model.lora_rank:
        lora.targets(backbone, cfg.model)
    if cfg.train.remat:
        remat.check(backbone, cfg.model.backbone)
