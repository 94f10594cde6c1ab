"""keras_tricks.optimizers."""

from keras_tricks.optimizers.gradient_accumulation import GradientAccumulation
from keras_tricks.optimizers.gradient_centralization import (
    GradientCentralization,
    centralize_gradients,
)
from keras_tricks.optimizers.lars import LARS
from keras_tricks.optimizers.trust_ratio import TrustRatio

__all__ = [
    "GradientAccumulation",
    "GradientCentralization",
    "centralize_gradients",
    "LARS",
    "TrustRatio",
]
