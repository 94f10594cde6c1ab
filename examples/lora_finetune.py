"""
Title: LoRA fine-tuning of a whole model
Description: Put Keras's LoRA adapters on every Dense layer of a pretrained
model with one call, train only the adapters and a new head, then merge.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# LoRA (Hu et al., 2021) freezes a pretrained kernel `W` and trains a
# low-rank update: the layer computes with `W + (alpha / rank) * A @ B`, `A`
# of shape `(in, rank)` and `B` of shape `(rank, out)`, `B` starting at zero
# so that the model is unchanged at first. `rank` is the update's capacity
# (and its parameter count, `rank * (in + out)` per layer); `alpha / rank`
# scales it. Keras layers have `enable_lora(rank, lora_alpha)`;
# `keras_tricks.lora.enable` applies it to the chosen layers of a whole model,
# freezes the rest and reports the trainable parameters.
#
# The task: a network pretrained on the digits 0-4 learns the digits 5-9.
# Set `KERAS_TRICKS_FAST=1` for a smoke run.

import os

import keras
import numpy as np
from sklearn.datasets import load_digits

from keras_tricks import lora

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order]
old, new = y < 5, y >= 5
x_old, y_old = x[old], y[old]
x_new, y_new = x[new], y[new] - 5
split = len(y_new) // 2
epochs = 2 if FAST else 40

"""
## Pretraining
"""

body = keras.Sequential(
    [
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu", name="dense_a"),
        keras.layers.Dense(128, activation="relu", name="dense_b"),
    ],
    name="body",
)
pretrained = keras.Sequential([body, keras.layers.Dense(5, activation="softmax")])
pretrained.compile("adam", "sparse_categorical_crossentropy")
pretrained.fit(x_old, y_old, epochs=epochs, batch_size=64, verbose=0)

"""
## LoRA on the body, a new head

`keep_trainable="head"` leaves the new head fully trainable; the body's Dense
layers get rank-4 adapters; everything else is frozen.
"""

model = keras.Sequential([body, keras.layers.Dense(5, activation="softmax", name="head")])
report = lora.enable(model, rank=4, alpha=8, keep_trainable="head")
model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
model.fit(x_new[:split], y_new[:split], epochs=epochs, batch_size=32, verbose=0)
accuracy = model.evaluate(x_new[split:], y_new[split:], verbose=0)[1]
print(f"adapted layers: {report['layers']}")
print(f"trainable parameters: {report['trainable_after']:,} of {report['total']:,}")
print(f"accuracy on the new digits: {accuracy:.3f}")

"""
## Merge for export

`lora.merge` folds each adapter into its kernel (and zeroes `B`): the model
computes the same, and a `.keras` file of it loads in plain Keras.
"""

before = model.predict(x_new[split:], verbose=0)
lora.merge(model)
assert np.allclose(model.predict(x_new[split:], verbose=0), before, atol=1e-5)
model.save("lora_merged.keras")
