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
# epochs 2, 6 and 14) and runs the schedule inside the compiled train step;
# `keras_tricks.callbacks.SnapshotEnsemble` keeps the weights at those ends.
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

`keras_tricks.callbacks.SnapshotEnsemble` reads the cycle ends from the
schedule that the SGDR callback installs (`schedule.cycle_end_steps`), keeps
a copy of the weights on the host at each of them (the last `n`), and
averages their predictions, one snapshot on the device at a time.
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
snapshots = keras_tricks.callbacks.SnapshotEnsemble(sgdr, n=3)
history = model.fit(
    x_train,
    y_train,
    epochs=epochs,
    batch_size=64,
    verbose=0,
    callbacks=[sgdr, snapshots],
)
print("LR after each epoch:", [f"{v:.2g}" for v in history.history["lr"]])
print("snapshots taken after epochs", [e + 1 for e in snapshots.snapshot_epochs])

"""
## The ensemble

`snapshots.predict` averages the softmax outputs of the snapshots; compare
with the last one alone. On the digits a single small network is already
near its best; snapshot ensembles pay off more with larger networks whose
cycles end in minima that make different mistakes (see the
[ensembles benchmark](../benchmarks/ensembles.md)).
"""

single = np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test)
probs = snapshots.predict(x_test)
ensemble = np.mean(np.argmax(probs, axis=1) == y_test)
print(f"last snapshot accuracy: {single:.3f}")
print(f"ensemble of {len(snapshots.snapshots)} snapshots accuracy: {ensemble:.3f}")

"""
## One saveable model

`as_model()` builds a plain Keras model that runs every snapshot and
averages: it saves to `.keras` and loads without keras_tricks.
"""

averaged = snapshots.as_model()
averaged.save("snapshot_ensemble.keras")
reloaded = keras.saving.load_model("snapshot_ensemble.keras")
assert np.allclose(reloaded.predict(x_test, verbose=0), probs, atol=1e-5)
