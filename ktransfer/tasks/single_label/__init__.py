"""`single_label`: one class per example. Its core (`core`: what training and export
need), what evaluation shows (`presentation`) and the probe's part (`probe`), the parts
loaded on first use.
"""

from ktransfer.tasks.single_label.core import SingleLabel

SINGLE_LABEL = SingleLabel()
