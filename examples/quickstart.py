"""
Title: Quickstart: one-cycle training on the digits
Description: The README quickstart. Find a learning rate with the LR range
test, train a small classifier with the one-cycle policy, print its accuracy.
"""

# backends: tensorflow, jax, torch

# ## Setup
#
# 1,797 8x8 digits from scikit-learn, 80% to train and 20% to validate. Set
# `KERAS_TRICKS_FAST=1` for a smoke run (two epochs).

import os

import keras
from sklearn.datasets import load_digits

import keras_tricks

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

x, y = load_digits(return_X_y=True)
x = x / 16.0

"""
## The model, the LR range test, the one-cycle run

`find_lr` trains for a hundred batches with a growing LR, reads the loss of
every batch and suggests a `max_lr` (the default rule, the longest smoothed
chain: 30% of the way down the loss's biggest drop); it leaves the model as
it was. The
`OneCycle` callback then sizes the cycle from `fit`'s epochs and steps, and
cycles SGD's momentum the other way (0.95 -> 0.85 -> 0.95) inside the
compiled step.
"""

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
max_lr = keras_tricks.find_lr(model, x, y, batch_size=64).suggestion()
history = model.fit(
    x,
    y,
    epochs=2 if FAST else 10,
    batch_size=64,
    validation_split=0.2,
    verbose=0,
    callbacks=[keras_tricks.callbacks.OneCycle(max_lr=max_lr)],
)

"""
## The result

`logs["lr"]` and `logs["momentum"]` are in the history, epoch by epoch.
"""

print(f"max_lr from the LR range test: {max_lr:.3g}")
print("LR after each epoch:", [f"{v:.2g}" for v in history.history["lr"]])
print(f"final validation accuracy: {history.history['val_accuracy'][-1]:.3f}")
