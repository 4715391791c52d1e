"""Maximum mean discrepancy (MMD) between feature batches, as a function and as a Keras layer.

Multi-kernel MMD as in DAN (Long et al. 2015) and the Transfer-Learning-Library: a sum of
Gaussian kernels exp(-d^2 / b_i) whose bandwidths b_i are `kernel_mul`-spaced multiples of the
mean pairwise squared distance of the joint batch (taken as a constant, no gradient), centred on
it. Estimators: the quadratic-time unbiased and biased ones, and Gretton's linear-time one.
`class_mmd` is the class-conditional ("local") MMD of DSAN (Zhu et al. 2020): the same kernels,
but source rows weighted by their labels and target rows by the network's predicted
probabilities, one MMD per class, averaged, so each class is pulled onto its own counterpart.
Always computed in float32 (inputs in float16/bfloat16 are cast first).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from ktransfer.domain.catalog import ESTIMATORS


def _sq_dists(a, b):
    """Pairwise squared Euclidean distances [n, m] of rows of a [n, d] and b [m, d]."""
    a2 = ops.sum(ops.square(a), axis=1, keepdims=True)
    b2 = ops.sum(ops.square(b), axis=1, keepdims=True)
    return ops.maximum(a2 - 2.0 * ops.matmul(a, ops.transpose(b)) + ops.transpose(b2), 0.0)


def _bandwidths(source, target, kernel_mul: float, kernel_num: int):
    joint = ops.concatenate([source, target], axis=0)
    n = ops.cast(ops.shape(joint)[0], "float32")
    mean_d2 = ops.sum(_sq_dists(joint, joint)) / ops.maximum(n * n - n, 1.0)
    base = ops.stop_gradient(ops.maximum(mean_d2, 1e-8)) / (kernel_mul ** (kernel_num // 2))
    return [base * (kernel_mul ** i) for i in range(kernel_num)]


def _kernel(d2, bandwidths):
    return sum(ops.exp(-d2 / b) for b in bandwidths)


def _flat32(x):
    return ops.cast(ops.reshape(x, (ops.shape(x)[0], -1)), "float32")


def _linear(kernel, source, target):
    """Gretton's linear-time estimate: disjoint pairs of rows, O(n)."""
    k = ops.minimum(ops.shape(source)[0], ops.shape(target)[0]) // 2 * 2
    x1, x2 = source[0:k:2], source[1:k:2]
    y1, y2 = target[0:k:2], target[1:k:2]

    def pair(a, b):
        return kernel(ops.sum(ops.square(a - b), axis=1))

    h = pair(x1, x2) + pair(y1, y2) - pair(x1, y2) - pair(x2, y1)
    # Fewer than 2 rows on a side (a replica's share of a last batch): 0, not NaN.
    return ops.sum(h) / ops.maximum(ops.cast(k // 2, "float32"), 1.0)


def _biased(kernel, source, target):
    """The V-statistic: means of the full kernel matrices (never negative)."""
    return (ops.mean(kernel(_sq_dists(source, source)))
            + ops.mean(kernel(_sq_dists(target, target)))
            - 2.0 * ops.mean(kernel(_sq_dists(source, target))))


def _unbiased(kernel, source, target, kernels: int):
    """The quadratic U-statistic: the i == j pairs left out (k(x, x) = 1 per kernel)."""
    kxx = kernel(_sq_dists(source, source))
    kyy = kernel(_sq_dists(target, target))
    kxy = kernel(_sq_dists(source, target))
    n = ops.cast(ops.shape(source)[0], "float32")
    m = ops.cast(ops.shape(target)[0], "float32")
    diag = float(kernels)
    # Equal sizes: Gretton's MMD_u^2, which also leaves the i == j pairs out of the cross term
    # (so a batch against itself gives exactly 0); unequal sizes: the two-sample U-statistic.
    cross = ops.where(ops.equal(n, m),
                      (ops.sum(kxy) - ops.trace(kxy)) / ops.maximum(n * (n - 1.0), 1.0),
                      ops.mean(kxy))
    return ((ops.sum(kxx) - n * diag) / ops.maximum(n * (n - 1.0), 1.0)
            + (ops.sum(kyy) - m * diag) / ops.maximum(m * (m - 1.0), 1.0)
            - 2.0 * cross)


# --mmd_estimator (domain.catalog.ESTIMATORS): estimate(kernel, source, target, kernels)
unbiased_estimate = _unbiased


def biased_estimate(kernel: Any, s: Any, t: Any, kernels: int) -> Any:
    return _biased(kernel, s, t)


def linear_estimate(kernel: Any, s: Any, t: Any, kernels: int) -> Any:
    return _linear(kernel, s, t)


def mmd(source, target, estimator: str = "unbiased", kernel_mul: float = 2.0,
        kernel_num: int = 5):
    """MMD^2 between feature batches source [n, d] and target [m, d] (n, m may differ);
    a float32 scalar. The unbiased estimate can be slightly negative when the domains match."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS.names()}, got {estimator!r}")
    source, target = _flat32(source), _flat32(target)
    bandwidths = _bandwidths(source, target, kernel_mul, kernel_num)
    return ESTIMATORS.get(estimator)(lambda d2: _kernel(d2, bandwidths), source, target,
                                     kernel_num)


def class_mmd(source, target, source_labels, target_probabilities, kernel_mul: float = 2.0,
              kernel_num: int = 5, threshold: float = 0.0):
    """Class-conditional MMD^2 (DSAN's local MMD) between source [n, d] and target [m, d].

    source_labels [n, C]: one-hot (or soft) labels; target_probabilities [m, C]: predicted class
    probabilities (treated as constants). For each class c present in both batches (in the
    labels, and as some target row's most likely class), source and target rows are weighted
    by their class-c mass normalised to sum 1, and the weighted (biased) MMD^2 is taken; the
    result is the mean over those classes, a float32 scalar (0 when no class is shared).
    Target rows whose largest probability is below `threshold` get no weight (a prediction
    too unsure to say which class to pull the row toward).
    """
    source, target = _flat32(source), _flat32(target)
    ys = ops.cast(source_labels, "float32")
    pt = ops.stop_gradient(ops.cast(target_probabilities, "float32"))
    if threshold > 0:
        pt = pt * ops.cast(ops.max(pt, axis=1, keepdims=True) >= threshold, "float32")
    num_classes = ops.shape(pt)[-1]
    in_source = ops.sum(ys, axis=0) > 0.0
    in_target = ops.sum(ops.one_hot(ops.argmax(pt, axis=-1), num_classes), axis=0) > 0.0
    shared = ops.cast(ops.logical_and(in_source, in_target), "float32")  # [C]
    ws = ys / ops.maximum(ops.sum(ys, axis=0, keepdims=True), 1e-8) * shared  # [n, C]
    wt = pt / ops.maximum(ops.sum(pt, axis=0, keepdims=True), 1e-8) * shared  # [m, C]
    bandwidths = _bandwidths(source, target, kernel_mul, kernel_num)

    def term(wa, a, wb, b):  # sum_c wa[:, c]^T K(a, b) wb[:, c]
        return ops.sum(ops.matmul(wa, ops.transpose(wb)) * _kernel(_sq_dists(a, b), bandwidths))

    total = (term(ws, source, ws, source) + term(wt, target, wt, target)
             - 2.0 * term(ws, source, wt, target))
    return total / ops.maximum(ops.sum(shared), 1.0)


def joint_mmd(source, target, source_probabilities, target_probabilities,
              estimator: str = "unbiased", kernel_mul: float = 2.0, kernel_num: int = 5):
    """Joint MMD^2 (JAN's JMMD, Long et al. 2017) of (features, predictions) pairs: the kernel
    of a pair is the product of a multi-kernel on the features [n, d] and one on the predicted
    probabilities [n, C], so the domains are aligned in features and in what the network makes
    of them at once. `estimator`: unbiased or biased (linear counts as unbiased here)."""
    source, target = _flat32(source), _flat32(target)
    ps, pt = _flat32(source_probabilities), _flat32(target_probabilities)
    feature_bw = _bandwidths(source, target, kernel_mul, kernel_num)
    output_bw = _bandwidths(ps, pt, kernel_mul, kernel_num)

    def joint(a, b, pa, pb):
        return (_kernel(_sq_dists(a, b), feature_bw) / kernel_num
                * _kernel(_sq_dists(pa, pb), output_bw) / kernel_num)

    kxx, kyy, kxy = joint(source, source, ps, ps), joint(target, target, pt, pt), \
        joint(source, target, ps, pt)
    if estimator == "biased":
        return ops.mean(kxx) + ops.mean(kyy) - 2.0 * ops.mean(kxy)
    n = ops.cast(ops.shape(source)[0], "float32")
    m = ops.cast(ops.shape(target)[0], "float32")
    cross = ops.where(ops.equal(n, m),  # as _unbiased: i == j pairs out when sizes match
                      (ops.sum(kxy) - ops.trace(kxy)) / ops.maximum(n * (n - 1.0), 1.0),
                      ops.mean(kxy))
    return ((ops.sum(kxx) - ops.trace(kxx)) / ops.maximum(n * (n - 1.0), 1.0)
            + (ops.sum(kyy) - ops.trace(kyy)) / ops.maximum(m * (m - 1.0), 1.0)
            - 2.0 * cross)


@keras.saving.register_keras_serializable(package="ktransfer")
class MMDLoss(keras.layers.Layer):
    """Takes [source_features, target_features], adds `weight * MMD^2` to the model's losses
    (during training) and returns the source features unchanged. Given
    [source_features, target_features, source_labels, target_probabilities] it adds the
    class-conditional `class_mmd` instead.

    With `joint=True` the two extra inputs are both domains' predicted probabilities
    [source_probabilities, target_probabilities] and it adds JAN's `joint_mmd`.

    `weight` is a non-trainable variable so a callback can ramp it up during training.
    """

    def __init__(self, weight: float = 1.0, estimator: str = "unbiased",
                 kernel_mul: float = 2.0, kernel_num: int = 5, joint: bool = False,
                 threshold: float = 0.0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # full precision under mixed policies
        super().__init__(**kwargs)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS.names()}, got {estimator!r}")
        self.initial_weight = float(weight)
        self.estimator = estimator
        self.kernel_mul = float(kernel_mul)
        self.kernel_num = int(kernel_num)
        self.joint, self.threshold = bool(joint), float(threshold)
        self.weight = self.add_weight(shape=(), initializer=keras.initializers.Constant(weight),
                                      trainable=False, name="mmd_weight", dtype="float32")
        self.built = True  # no shape-dependent weights

    def call(self, inputs, training=False):
        source, target, *classes = inputs
        if classes and self.joint:
            source_p, target_p = classes
            value = joint_mmd(source, target, source_p, target_p, self.estimator,
                              self.kernel_mul, self.kernel_num)
        elif classes:
            labels, probabilities = classes
            value = class_mmd(source, target, labels, probabilities, self.kernel_mul,
                              self.kernel_num, self.threshold)
        else:
            value = mmd(source, target, self.estimator, self.kernel_mul, self.kernel_num)
        if training:
            self.add_loss(ops.cast(self.weight, "float32") * value)
        return source

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weight": self.initial_weight,
                "estimator": self.estimator, "kernel_mul": self.kernel_mul,
                "kernel_num": self.kernel_num, "joint": self.joint,
                "threshold": self.threshold}
