"""`LRFinder`: the LR range test as a callback, for a `fit` you drive yourself."""

# The callback is defined in the finder's core (`keras_tricks.lr_finder.sweep`),
# which `find_lr` shares; this module imports it from there, never the reverse.
# The other names stay importable from here, as before the split.
from keras_tricks.lr_finder.result import LRFinderResult as LRFinderResult
from keras_tricks.lr_finder.rules import diverged_at_start as diverged_at_start
from keras_tricks.lr_finder.sweep import LRFinder
from keras_tricks.lr_finder.sweep import _SweepSchedule as _SweepSchedule
from keras_tricks.lr_finder.sweep import batches_per_execution as batches_per_execution
from keras_tricks.lr_finder.sweep import validate_sweep_args as validate_sweep_args

__all__ = ["LRFinder"]
