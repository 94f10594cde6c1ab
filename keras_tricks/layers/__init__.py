"""keras_tricks.layers."""

from keras_tricks.layers.output_head import OutputHead
from keras_tricks.layers.shuffle_caption import ShuffleCaption

__all__ = ["OutputHead", "ShuffleCaption"]
