"""
Title: Test-time augmentation
Description: Average a model's predictions over random augmentations of the
input with `tta_predict`, on any backend.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# A model trained with augmentation has learnt that a shifted digit is the
# same digit. At test time, averaging its predictions over a few shifted
# copies of each input (and the input itself) smooths out the mistakes that
# one view provokes. `keras_tricks.tta_predict(model, x, augment, n)` runs
# `n` random views plus the original through the model in one batch and
# averages them. Set `KERAS_TRICKS_FAST=1` for a smoke run.

import os

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_tricks

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

"""
## Data and model

The 8x8 digits as images; the model trains with random shifts of up to one
pixel, the same augmentation that test time will use.
"""

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order]
split = int(0.8 * len(y))
x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]

shift = keras.layers.RandomTranslation(1 / 8, 1 / 8, fill_mode="constant", seed=0)
model = keras.Sequential(
    [
        keras.Input((8, 8, 1)),
        shift,
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
model.fit(x_train, y_train, epochs=2 if FAST else 30, batch_size=64, verbose=0)

"""
## Predict with and without TTA

Inside `predict` the `RandomTranslation` layer is inactive; `tta_predict`
calls it with `training=True` to draw the views.
"""

plain = model.predict(x_test, verbose=0)
tta = keras_tricks.tta_predict(model, x_test, shift, n=4 if FAST else 8, batch_size=128)
print(f"plain accuracy: {np.mean(plain.argmax(1) == y_test):.3f}")
print(f"TTA accuracy:   {np.mean(tta.argmax(1) == y_test):.3f}")
