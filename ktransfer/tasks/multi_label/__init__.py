"""`multi_label`: any set of labels per example. Its core (`core`: what training and export
need), what evaluation shows (`presentation`) and the probe's part (`probe`), the parts
loaded on first use.
"""

from ktransfer.tasks.multi_label.core import MultiLabel

MULTI_LABEL = MultiLabel()
