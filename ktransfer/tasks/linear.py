"""The linear probes the task probes share: scikit-learn models on standardised features."""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

# Fixed, mild L2 (C=0.1 on standardised features): a probe compares backbones, so every backbone
# gets the same model rather than its own tuned one.
C = 0.1


def logistic(seed: int) -> Pipeline:
    """Multinomial logistic regression on standardised features."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500,
                                                              random_state=seed))


def ridge() -> Pipeline:
    """Ridge regression on standardised features (alpha 1/C, the logistic's strength)."""
    return make_pipeline(StandardScaler(), Ridge(alpha=1 / C))
