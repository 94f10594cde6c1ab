"""
Title: RAdam, DiffGrad, Ranger and 8-bit AdamW on the digits
Description: Train the same small network with each optimizer Keras lacks,
build "Ranger" from three one-liners, and measure what 8-bit moments save.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# `keras_tricks.optimizers` adds four optimizers that Keras does not ship:
#
# * `RAdam` rectifies Adam's adaptive step while its variance is undefined:
#   no warm-up to tune.
# * `DiffGrad` damps Adam's step where the gradient stops changing.
# * `Lookahead` wraps any optimizer: slow weights follow the fast ones every
#   few steps. "Ranger" is `Lookahead(GradientCentralization(RAdam()))`.
# * `AdamW8bit` stores both Adam moments in 8 bits per value (block-wise, as
#   bitsandbytes): about a quarter of AdamW's optimizer memory.
#
# Set `KERAS_TRICKS_FAST=1` for a smoke run in seconds.

import os

import keras
import numpy as np
from sklearn.datasets import load_digits

from keras_tricks.callbacks import OneCycle
from keras_tricks.optimizers import (
    AdamW8bit,
    DiffGrad,
    GradientCentralization,
    Lookahead,
    RAdam,
)

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
EPOCHS = 1 if FAST else 15

"""
## Data

The 1,797 8x8 digits of scikit-learn: 1,437 to train, 360 to validate.
"""

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order]
x_train, y_train, x_val, y_val = x[:1437], y[:1437], x[1437:], y[1437:]
if FAST:
    x_train, y_train = x_train[:256], y_train[:256]

"""
## One model, five optimizers

An MLP whose hidden layers hold 16k and 65k weights: large enough for
`AdamW8bit` to quantize them (tensors under `min_8bit_size=4096` values keep
float32 moments).
"""


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


OPTIMIZERS = {
    "AdamW": lambda: keras.optimizers.AdamW(1e-3, weight_decay=1e-2),
    "RAdam": lambda: RAdam(1e-3, weight_decay=1e-2),
    "DiffGrad": lambda: DiffGrad(1e-3, weight_decay=1e-2),
    # Ranger: three tricks, composed.
    "Ranger": lambda: Lookahead(
        GradientCentralization(RAdam(1e-3, weight_decay=1e-2)),
        sync_period=6,
        slow_step_size=0.5,
    ),
    "AdamW8bit": lambda: AdamW8bit(1e-3, weight_decay=1e-2),
}


def state_bytes(optimizer):
    return sum(
        int(np.prod(v.shape))
        * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
        for v in optimizer.variables
    )


results, models = {}, {}
for name, make in OPTIMIZERS.items():
    model = make_model()
    model.compile(
        optimizer=make(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=EPOCHS,
        validation_data=(x_val, y_val),
        verbose=0,
    )
    models[name] = model
    results[name] = (
        history.history["val_accuracy"][-1],
        state_bytes(model.optimizer),
    )

print(f"{'optimizer':<10} {'val acc':>8} {'state':>10} {'/ AdamW':>8}")
for name, (acc, size) in results.items():
    ratio = size / results["AdamW"][1]
    print(f"{name:<10} {acc:8.3f} {size / 1024:8.0f} KiB {ratio:8.2f}")

"""
## With the package's schedules

Every optimizer here works with the schedule callbacks: `OneCycle` cycles the
learning rate and `beta_1` (the momentum of the Adam family) inside the
compiled step, also behind `Lookahead` and `GradientCentralization`.
"""

model = make_model()
model.compile(
    optimizer=OPTIMIZERS["Ranger"](),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
history = model.fit(
    x_train,
    y_train,
    batch_size=64,
    epochs=EPOCHS,
    validation_data=(x_val, y_val),
    callbacks=[OneCycle(max_lr=3e-3)],
    verbose=0,
)
print(
    f"Ranger + OneCycle: val accuracy {history.history['val_accuracy'][-1]:.3f}, "
    f"momentum per epoch {np.round(history.history['momentum'], 3).tolist()}"
)

"""
## Saving

The optimizers and their state (8-bit codes included) are saved with the
model and restored by `keras.saving.load_model`.
"""

path = "ranger.keras"
models["Ranger"].save(path)
restored = keras.saving.load_model(path)
print(type(restored.optimizer).__name__, int(restored.optimizer.iterations))
