"""Freezing strategies: blocks, selection by count/name, gradual stages, layer-wise rates."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ktransfer import config
from ktransfer.errors import ConfigError
from ktransfer.image.backbones import small_cnn
from ktransfer.network import freezing
from ktransfer.optim.optimizers import make_optimizer


@pytest.mark.parametrize("name, block", [
    ("block5_conv1", "block5"), ("conv4_block2_1_conv", "conv4"), ("block_16_expand", "block_16"),
    ("expanded_conv_3_add", "expanded_conv_3"), ("block6a_expand_conv", "block6a"),
    ("Conv_1", "Conv_1"), ("convnext_tiny_stage_3_block_2_depthwise_conv",
                           "convnext_tiny_stage_3"), ("top_conv", "top_conv"),
])
def test_block_of_follows_keras_applications_naming(name, block):
    assert freezing.block_of(name) == block


def _names(layers):
    return [layer.name for layer in layers]


def test_select_all_top_n_and_by_name():
    backbone = small_cnn((16, 16, 3))
    assert len(freezing.select(backbone, "all")) == 10
    assert _names(freezing.select(backbone, "2")) == ["block3_conv1", "block3_bn1"]
    assert _names(freezing.select(backbone, "block3,block2_conv2")) == [
        "block2_conv2", "block3_conv1", "block3_bn1"]
    with pytest.raises(ConfigError, match="^--unfreeze: 'block9' matches no layer.*block1"):
        freezing.select(backbone, "block9")


def test_set_trainable_keeps_batchnorm_frozen_unless_asked():
    backbone = small_cnn((16, 16, 3))
    chosen = freezing.select(backbone, "block3")
    assert freezing.set_trainable(backbone, chosen) == 1
    assert [layer.name for layer in backbone.layers if layer.trainable and layer.weights] == [
        "block3_conv1"]
    assert freezing.set_trainable(backbone, chosen, bn_trainable=True) == 2


def test_gradual_stages_add_one_block_at_a_time_from_the_top():
    backbone = small_cnn((16, 16, 3))
    stages = freezing.gradual_stages(freezing.select(backbone, "all"))
    assert [sorted({freezing.block_of(n) for n in _names(s)}) for s in stages] == [
        ["block3"], ["block2", "block3"], ["block1", "block2", "block3"]]


def test_layer_wise_multipliers_scale_each_blocks_update():
    backbone = small_cnn((16, 16, 3))
    multipliers = freezing.layer_lr_multipliers(backbone, 0.5)
    kernels = {layer.name: layer.kernel for layer in backbone.layers
               if isinstance(layer, keras.layers.Conv2D)}
    assert multipliers[kernels["block3_conv1"].path] == 0.5
    assert multipliers[kernels["block1_conv1"].path] == 0.125
    # Plain SGD (momentum 0): the step of each variable is lr * multiplier * gradient.
    train_cfg = config.TrainConfig(optimizer="sgd", momentum=0.0)
    optimizer = make_optimizer(train_cfg, 0.1, multipliers)
    variables = [kernels["block3_conv1"], kernels["block1_conv1"]]
    before = [v.numpy().copy() for v in variables]
    grads = [np.ones(v.shape, "float32") for v in variables]
    optimizer.apply_gradients(zip(grads, variables, strict=True))
    steps = [float(np.mean(b - v.numpy())) for b, v in zip(before, variables, strict=True)]
    np.testing.assert_allclose(steps, [0.05, 0.0125], rtol=1e-5)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.lr_multipliers == multipliers


def test_describe_lists_blocks_parameters_and_phases(tiny_config):
    from ktransfer.image.backbones import get_spec
    from ktransfer.image.classifier import build_classifier

    cfg = tiny_config()
    backbone = small_cnn((16, 16, 3))
    model = build_classifier(get_spec("small_cnn"), backbone, 3, 16, cfg.model)
    stages = freezing.gradual_stages(freezing.select(backbone, "block2,block3"))
    table = freezing.describe(model, backbone, stages, bn_trainable=False,
                              lr_multipliers=freezing.layer_lr_multipliers(backbone, 0.5))
    lines = {line.split()[0]: line for line in table.splitlines()}
    assert lines["block1_conv1"].split()[-1] == "frozen"
    assert lines["block3_conv1"].endswith("stage 1 lr x0.5")
    assert lines["block2_conv1"].endswith("stage 2 lr x0.25")
    assert lines["block3_bn1"].endswith("frozen (BatchNorm)")
    assert "trains" in lines["logits"]
    conv_params = 3 * 3 * (64 * 64 + 64 * 128 + 32 * 64)  # block2_conv1/2, block3_conv1
    assert f"phase 2 trains {conv_params + 128 * 3 + 3:,}" in table
    assert not backbone.trainable  # left frozen, as phase 1 starts
