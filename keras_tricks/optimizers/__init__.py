"""keras_tricks.optimizers."""

from keras_tricks.optimizers.gradient_accumulation import GradientAccumulation
from keras_tricks.optimizers.gradient_centralization import (
    GradientCentralization,
    centralize_gradients,
    fan_in_axes,
)

__all__ = [
    "GradientAccumulation",
    "GradientCentralization",
    "centralize_gradients",
    "fan_in_axes",
]
