"""
Title: Stochastic Weight Averaging with BatchNormalization
Description: Average the weights of the last epochs (SWA), recompute the
BatchNormalization statistics for the average, and save it as a plain Keras
model.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# SWA (Izmailov et al., 2018) averages the weights that SGD visits at the end
# of the last epochs, with a high constant (or cyclic) learning rate: the
# average sits nearer the centre of a wide minimum than any of them, and
# often generalizes better. The averaged weights never ran forward during
# training, so a model with BatchNormalization needs its statistics
# recomputed with one pass over the training data (`update_bn`).
#
# Keras does not give callbacks the data of `fit`: the callback takes the
# training inputs as `bn_data`. Set `KERAS_TRICKS_FAST=1` for a smoke run.

import os

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_tricks

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

"""
## Data
"""

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order]
split = int(0.8 * len(y))
x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]

"""
## Training with SWA

Averaging starts at half the epochs (`start=0.5`). This version has no SWA
learning-rate phase of its own (it comes with the package's new LR control);
the LR here is a constant 0.05 throughout, the regime SWA was made for.
"""

epochs = 2 if FAST else 20
model = keras.Sequential(
    [
        keras.Input((64,)),
        keras.layers.Dense(128),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(
    optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)


class LastEpoch(keras.callbacks.Callback):
    """Evaluate the last epoch's weights, before SWA swaps the average in."""

    def on_train_end(self, logs=None):
        self.accuracy = self.model.evaluate(x_test, y_test, verbose=0)[1]


last = LastEpoch()
swa = keras_tricks.callbacks.StochasticWeightAveraging(
    start=0.5, bn_data=x_train, bn_batch_size=64
)
model.fit(
    x_train, y_train, epochs=epochs, batch_size=64, verbose=0, callbacks=[last, swa]
)
print(f"averaged epochs: {swa.averaged_epochs}")
print(f"last epoch's weights, test accuracy: {last.accuracy:.3f}")
print(f"SWA weights, test accuracy:          {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

"""
## Save

After `fit` the model holds the average: save it as any Keras model.
"""

model.save("swa.keras")
reloaded = keras.saving.load_model("swa.keras")
assert np.allclose(
    reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-5
)
