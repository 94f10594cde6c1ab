"""keras_tricks.callbacks."""
