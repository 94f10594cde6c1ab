"""keras_tricks.layers."""
