"""keras_tricks.layers."""

from keras_tricks.layers.output_head import OutputHead

__all__ = ["OutputHead"]
