"""keras_tricks: the well-known training tricks, one line each inside `model.fit`.

Works on every Keras 3 backend (TensorFlow, JAX, PyTorch). Importing this
package imports `keras` and nothing else heavy: no backend is imported here
that Keras itself did not import.
"""

__version__ = "0.1.0"

from keras_tricks import (  # noqa: E402
    callbacks,
    diagnosis,
    ensembles,
    imbalance,
    layers,
    lora,
    optimizers,
    precision,
    schedules,
)
from keras_tricks.diagnosis import cross_validate  # noqa: E402
from keras_tricks.ensembles import ensemble_predict, tta_predict  # noqa: E402
from keras_tricks.lr_finder import find_lr  # noqa: E402

__all__ = [
    "__version__",
    "callbacks",
    "cross_validate",
    "diagnosis",
    "ensemble_predict",
    "ensembles",
    "find_lr",
    "imbalance",
    "layers",
    "lora",
    "optimizers",
    "precision",
    "schedules",
    "tta_predict",
]
