"""Learning-rate schedules: pure functions of the optimizer step.

Every schedule is a `keras.optimizers.schedules.LearningRateSchedule` computed
with `keras.ops`, so it runs inside the compiled train step on every backend
and serializes with the model. `has_momentum` tells whether a schedule also
defines a `.momentum(step)` (OneCycle and CyclicLR do).
"""

from keras_tricks.plotting import plot_schedule
from keras_tricks.schedules.cyclic import CyclicLR
from keras_tricks.schedules.one_cycle import OneCycle
from keras_tricks.schedules.sgdr import SGDR
from keras_tricks.schedules.warmup import WarmupConstant, WarmupCosine, WarmupLinear

__all__ = [
    "CyclicLR",
    "OneCycle",
    "SGDR",
    "WarmupConstant",
    "WarmupCosine",
    "WarmupLinear",
    "plot_schedule",
]
