"""keras_tricks.optimizers: the optimizers Keras lacks and optimizer wrappers."""

from keras_tricks.optimizers.adamw_8bit import AdamW8bit
from keras_tricks.optimizers.diffgrad import DiffGrad
from keras_tricks.optimizers.gradient_accumulation import GradientAccumulation
from keras_tricks.optimizers.gradient_centralization import (
    GradientCentralization,
    centralize_gradients,
    fan_in_axes,
)
from keras_tricks.optimizers.lars import LARS
from keras_tricks.optimizers.lookahead import Lookahead
from keras_tricks.optimizers.radam import RAdam
from keras_tricks.optimizers.trust_ratio import TrustRatio

__all__ = [
    "AdamW8bit",
    "DiffGrad",
    "GradientAccumulation",
    "GradientCentralization",
    "LARS",
    "Lookahead",
    "RAdam",
    "TrustRatio",
    "centralize_gradients",
    "fan_in_axes",
]
