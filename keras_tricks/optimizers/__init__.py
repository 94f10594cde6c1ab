"""keras_tricks.optimizers."""
