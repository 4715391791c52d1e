"""The honest baseline for text transfer: TF-IDF features and a logistic regression
(scikit-learn), trained on the same labelled texts and scored on the same test texts."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from ktransfer.text.textset import TextSet


def tfidf_accuracy(train: TextSet, test: TextSet, c: float = 10.0) -> float:
    """Test accuracy of TF-IDF (word 1-2-grams, sublinear term frequency) + logistic regression
    (C=`c`) fitted on `train`."""
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                          LogisticRegression(C=c, max_iter=2000))
    assert train.texts is not None and test.texts is not None
    model.fit([str(t) for t in train.texts], train.labels)
    predicted = model.predict([str(t) for t in test.texts])
    return float(np.mean(predicted == test.labels))
