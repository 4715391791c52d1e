"""`detection`: boxes with classes. Its core (`core`), how boxes follow the pixels
(`geometry`), the head on feature maps (`network`), anchors, loss, decoding, pycocotools
scoring and the annotation readers, the parts loaded on first use."""

from ktransfer.tasks.detection.core import Detection

DETECTION = Detection()
