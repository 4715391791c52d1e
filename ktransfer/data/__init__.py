"""Data: labelled image sources (`sources`), augmentation (`augment`), tf.data (`pipeline`)."""
