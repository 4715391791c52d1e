"""`regression`: one number per example. Its core (`core`: what training and export
need), what evaluation shows (`presentation`) and the probe's part (`probe`), the parts
loaded on first use.
"""

from ktransfer.tasks.regression.core import Regression

REGRESSION = Regression()
