"""Data every modality shares: examples and splits, manifests, TFDS, memos of checked files."""
