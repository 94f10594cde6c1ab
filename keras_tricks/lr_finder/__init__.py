"""The LR range test (LR finder): sweep the LR, record the loss, suggest an LR.

Leslie Smith's range test in fastai's form: train for a few hundred batches at
most while the learning rate grows from `start_lr` to `end_lr` (exponentially
by default), record the loss of every batch, smooth it with a bias-corrected
EMA, stop when it blows up, then put the model and its optimizer back exactly
as they were. :func:`find_lr` runs the whole test on data; the callback
:class:`keras_tricks.callbacks.LRFinder` does the same inside a `fit` that you
drive yourself. Both return an :class:`LRFinderResult` with the curve, the
suggestions (`valley`, `steep`, `minimum`, `chain`, `slide`) and a plot.

The package holds one module a concept, with dependencies that point one way
(`rules` <- `result` <- `sweep` <- `find`): `rules` (the suggestion rules and
the smoothing), `result` (`LRFinderResult` and its plot), `sweep` (the sweep's
schedule, its arguments and the `LRFinder` callback) and `find` (`find_lr`).
Nothing here imports `keras_tricks.callbacks`; `keras_tricks.callbacks.lr_finder`
imports `LRFinder` from here.
"""

from keras_tricks.lr_finder.find import find_lr
from keras_tricks.lr_finder.result import LRFinderResult
from keras_tricks.lr_finder.rules import (
    DEFAULT_METHOD,
    SUGGESTION_METHODS,
    diverged_at_start,
    ema_smooth,
)
from keras_tricks.lr_finder.sweep import _SweepSchedule as _SweepSchedule
from keras_tricks.lr_finder.sweep import validate_sweep_args

__all__ = [
    "DEFAULT_METHOD",
    "LRFinderResult",
    "SUGGESTION_METHODS",
    "diverged_at_start",
    "ema_smooth",
    "find_lr",
    "validate_sweep_args",
]
