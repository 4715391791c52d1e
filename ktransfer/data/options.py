"""The tf.data options of every input pipeline ktransfer builds."""

from __future__ import annotations

import tensorflow as tf


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` (and what is built on it) with tf.data's autotuning off.

    Keras makes a new iterator for every validation pass and training epoch, and destroying an
    autotuned one waited, idle (no CPU used), for tf.data's tuning thread: on TF 2.21 on the
    project's 2-core VM, 0.8-0.9 s after about half of the validation passes of MobileNetV2 on
    400 images, and once 40 s before an epoch's first step. Off, those waits were gone and the
    pipelines ran as fast or faster (the first pass over 2,000 JPEGs, decoded and resized:
    1.3-1.4 s against 1.3-2.6 s; training steps the same).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)
