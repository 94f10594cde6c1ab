"""
Title: Snapshot ensembles with SGDR warm restarts
Description: Train once with cosine annealing and warm restarts, keep the
weights at the end of every cycle, and average the snapshots' predictions.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# SGDR (Loshchilov & Hutter, 2016) anneals the learning rate along half a
# cosine and then restarts it at its peak. At the end of each cycle the LR is
# at its minimum and the model sits in a good minimum; right after, the big LR
# throws it towards another one. Huang et al. ("Snapshot Ensembles", 2017)
# keep the weights at every cycle end and average the predictions: an
# ensemble for the price of one training run.
#
# `keras_tricks.callbacks.SGDR` sizes the cycles in epochs here
# (`first_cycle_epochs=2, t_mul=2`: cycles of 2, 4 and 8 epochs, ending after
# epochs 2, 6 and 14) and runs the schedule inside the compiled train step.
# Set `KERAS_TRICKS_FAST=1` for a smoke run.

import os

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_tricks

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

"""
## Data

The 1,797 8x8 digits of scikit-learn, shuffled, 80% to train.
"""

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order]
split = int(0.8 * len(y))
x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]

"""
## Snapshots at the end of every cycle

The cycles last `first * t_mul**i` epochs, so they end after known epochs.
A small callback keeps the weights (in memory) at those epochs;
`keras.callbacks.ModelCheckpoint` would write them to files instead.
"""


def cycle_ends(first, t_mul, epochs):
    ends, end, length = [], 0, first
    while end + length <= epochs:
        end += length
        ends.append(end)
        length *= t_mul
    return ends


class Snapshots(keras.callbacks.Callback):
    def __init__(self, at_epochs):
        super().__init__()
        self.at_epochs, self.weights = set(at_epochs), []

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.at_epochs:
            self.weights.append(self.model.get_weights())


"""
## Training
"""

first, epochs = (1, 3) if FAST else (2, 14)
model = keras.Sequential(
    [
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(
    optimizer=keras.optimizers.SGD(momentum=0.9),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
sgdr = keras_tricks.callbacks.SGDR(
    max_lr=0.1, first_cycle_epochs=first, t_mul=2.0, min_lr=1e-4
)
ends = cycle_ends(first, 2, epochs)
snapshots = Snapshots(ends)
history = model.fit(
    x_train,
    y_train,
    epochs=epochs,
    batch_size=64,
    verbose=0,
    callbacks=[sgdr, snapshots],
)
print("LR after each epoch:", [f"{v:.2g}" for v in history.history["lr"]])
print("snapshots taken after epochs", ends)

"""
## The ensemble

Average the softmax outputs of the snapshots and compare with the last one
alone. On the digits a single small network is already near its best (both
about 0.975 on the JAX backend); snapshot ensembles pay off with larger
networks whose cycles end in minima that make different mistakes.
"""

probs = []
for weights in snapshots.weights:
    model.set_weights(weights)
    probs.append(model.predict(x_test, verbose=0))
single = np.mean(np.argmax(probs[-1], axis=1) == y_test)
ensemble = np.mean(np.argmax(np.mean(probs, axis=0), axis=1) == y_test)
print(f"last snapshot accuracy: {single:.3f}")
print(f"ensemble of {len(probs)} snapshots accuracy: {ensemble:.3f}")
