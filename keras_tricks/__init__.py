"""keras_tricks: the well-known training tricks, one line each inside `model.fit`.

Works on every Keras 3 backend (TensorFlow, JAX, PyTorch). Importing this
package imports `keras` and nothing else heavy: no backend is imported here
that Keras itself did not import.
"""

__version__ = "0.1.0"

from keras_tricks import callbacks, imbalance, layers, optimizers, schedules  # noqa: E402

__all__ = ["__version__", "callbacks", "imbalance", "layers", "optimizers", "schedules"]
