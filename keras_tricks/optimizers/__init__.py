"""keras_tricks.optimizers."""

from keras_tricks.optimizers.adamw_8bit import AdamW8bit
from keras_tricks.optimizers.diffgrad import DiffGrad
from keras_tricks.optimizers.gradient_accumulation import GradientAccumulation
from keras_tricks.optimizers.gradient_centralization import (
    GradientCentralization,
    centralize_gradients,
)
from keras_tricks.optimizers.lookahead import Lookahead
from keras_tricks.optimizers.radam import RAdam

__all__ = [
    "GradientAccumulation",
    "GradientCentralization",
    "centralize_gradients",
    "AdamW8bit",
    "DiffGrad",
    "Lookahead",
    "RAdam",
]
