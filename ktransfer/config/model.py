"""`ModelConfig`: the backbone and the new head."""

from __future__ import annotations

from dataclasses import dataclass

from ktransfer.config.fields import option, require


@dataclass(frozen=True)
class ModelConfig:
    """Backbone and the new classification head."""

    backbone: str = option(
        "auto", "Backbone: auto (the modality's default: efficientnet_lite0 for images, "
        "minilm for text), efficientnet_lite0/1/2, a keras.applications name (see "
        "--list_backbones), small_cnn, hub:HANDLE (a TF Hub URL or a local SavedModel "
        "folder), file:PATH.keras (your own model) or, for text, minilm or kerashub:FOLDER.")
    weights: str = option("imagenet", "Backbone weights: imagenet, none (random init) or the "
                         "path of a weights file (.weights.h5 / .h5; .pth for "
                         "efficientnet_lite). hub: and file: backbones bring their own "
                         "weights (imagenet means: as shipped).")
    backbone_layer: str = option("", "Cut the backbone at this layer (its output becomes the "
                                "features), e.g. to drop the classifier of a file: model.")
    hub_output_key: str = option("", "hub: modules returning a dict: the output to use "
                                "(default: 'default' or the only one).")
    unsafe_load: bool = option(False, "Allow loading model files that contain code (Lambda "
                              "layers, TF Hub modules). Only for files you trust.")
    init_from: str = option("", "Start from a model ktransfer trained (a run directory or its "
                            "model.keras): all its weights, head included. To keep training "
                            "it, on new images of the same classes or, with --target_data, to "
                            "adapt it to a new domain. Give the --backbone, --image_size and "
                            "--head_hidden it was trained with.")
    pooling: str = option("avg", "How the backbone's output becomes one vector per example: "
                          "avg (images: over positions; text: mean over the tokens, padding "
                          "masked; also called mean), max, flatten (images), cls (text: the "
                          "first token).", registry="ktransfer.network.catalog:POOLINGS")
    head_hidden: tuple[int, ...] = option((), "Hidden Dense layer sizes of the head, "
                                         "comma-separated (e.g. 256,128); empty for none.")
    head_activation: str = option("relu", "Activation of the hidden head layers.",
                                 ("relu", "gelu", "swish", "tanh", "elu"))
    dropout: float = option(0.2, "Dropout rate before each Dense layer of the head.")
    l2: float = option(0.0, "L2 penalty on the head's kernels.")
    initializer: str = option("glorot_uniform", "Kernel initializer of the head.",
                             ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                              "lecun_normal", "zeros"))
    label_smoothing: float = option(0.0, "Label smoothing of the cross-entropy loss.")
    bn_trainable: bool = option(False, "Let BatchNorm layers train when the backbone is "
                               "unfrozen (default: they stay frozen, in inference mode).")

    lora_rank: int = option(0, "Phase 2: LoRA (Hu et al. 2021): train rank-R adapters on the "
                            "backbone's Dense / EinsumDense / convolution layers (Keras' "
                            "enable_lora) instead of its weights; only the adapters and the "
                            "head train. model.keras and exports hold the merged weights, "
                            "RUN/lora_adapters.npz the adapters alone. 0: fine-tune the weights "
                            "themselves.")
    lora_alpha: float = option(0.0, "LoRA: the update is scaled by ALPHA / --lora_rank; 0 means "
                               "ALPHA = --lora_rank (scale 1, Keras' default).")
    lora_targets: str = option("auto", "LoRA: which layers get adapters: auto (the attention "
                               "query and value projections, as keras-hub does; when there are "
                               "none, every Dense / EinsumDense / convolution layer), or "
                               "comma-separated regexes matched at the start of a layer's name "
                               "or path (e.g. query,value,intermediate).")

    def __post_init__(self) -> None:
        require(bool(self.backbone), "backbone", "is required (see --list_backbones)")
        kind, colon, handle = self.backbone.partition(":")
        require(not colon or bool(handle), "backbone", f"give a name or path after {kind}:")
        require(bool(self.weights), "weights", "give imagenet, none or a weights file path")
        require(all(n >= 1 for n in self.head_hidden), "head_hidden", "sizes must be >= 1")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.l2 >= 0.0, "l2", "must be >= 0")
        require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
        require(0 <= self.lora_rank <= 1024, "lora_rank", "must be in 0..1024 (0: off)")
        require(self.lora_alpha >= 0.0, "lora_alpha", "must be >= 0 (0: the rank)")
        require(not (self.lora_rank and self.bn_trainable), "lora_rank", "trains the adapters "
                "alone, so BatchNorm stays frozen: drop --bn_trainable")
        require(bool(self.lora_targets.strip(",").strip()), "lora_targets",
                "give auto or layer-name patterns")
