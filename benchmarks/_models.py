"""The small MNIST CNN that several benchmarks train (fresh layers each call).

Run the benchmarks as scripts (`python benchmarks/NAME.py`): the script's
folder is then on `sys.path` and this module imports as `_models`.
"""

import keras


def small_cnn_layers():
    """Conv 8 and 16 filters (3x3, ReLU), each with 2x2 max pooling, flattened.

    The caller adds its own `keras.Input((28, 28, 1))` and head.
    """
    return [
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
    ]
