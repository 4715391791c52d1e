"""Domain adaptation: the adaptation model and its alignments (`adaptation`), MMD (`mmd`),
CDAN (`adversarial`), target losses, pseudo-labels, and epoch selection without target labels
(`selection`, `validators`)."""
