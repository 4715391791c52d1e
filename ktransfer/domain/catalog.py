"""The domain-adaptation registries, importable without TensorFlow: `--mmd_alignment`,
`--mmd_estimator`, `--target_loss` and `--da_select` names, with what each does."""

from __future__ import annotations

from ktransfer.registry import Registry

_DOMAIN = "ktransfer.domain"

# name -> Alignment (its loss layers and the extra inputs they take)
ALIGNMENTS: Registry = Registry("alignment", "mmd_alignment", {
    name: f"{_DOMAIN}.alignments:{name.upper()}" for name in ("marginal", "class", "joint", "cdan")
}, about={
    "marginal": "one MMD between all source and all target features (DAN)",
    "class": "one MMD per class, source rows weighted by label, target rows by predicted "
             "probability (DSAN's local MMD)",
    "joint": "one MMD of (features, predictions) pairs, with a product kernel (JAN's joint "
             "MMD)",
    "cdan": "a conditional domain discriminator on features x predictions behind gradient "
            "reversal, weighted by --mmd_weight (CDAN+E)",
})

# name -> estimate(kernel, source, target, number of kernels)
ESTIMATORS: Registry = Registry("MMD estimator", "mmd_estimator", {
    name: f"{_DOMAIN}.mmd:{name}_estimate" for name in ("unbiased", "biased", "linear")})

# name -> loss(target probabilities [m, C]) to minimise
TARGET_LOSSES: Registry = Registry("target loss", "target_loss", {
    "entropy": f"{_DOMAIN}.target_losses:entropy",
    "im": f"{_DOMAIN}.target_losses:information_maximisation",
    "mcc": f"{_DOMAIN}.target_losses:minimum_class_confusion",
}, about={"entropy": "confident", "im": "confident and using every class, against collapse",
          "mcc": "minimum class confusion"})

# name -> score(epoch outputs), higher is better ("last" keeps the last epoch).
VALIDATORS: Registry = Registry("validator", "da_select", {
    "source_val": f"{_DOMAIN}.validators:source_val",
    "im": f"{_DOMAIN}.validators:information_maximisation",
    "snd": f"{_DOMAIN}.validators:soft_neighbourhood_density",
    "bnm": f"{_DOMAIN}.validators:batch_nuclear_norm",
    "dev": f"{_DOMAIN}.validators:deep_embedded_validation",
}, about={"source_val": "source validation accuracy",
          "im": "confident target predictions that use every class",
          "snd": "soft neighbourhood density of the target predictions",
          "bnm": "batch nuclear norm of the target predictions",
          "dev": "deep embedded validation"})
