"""
Title: Mixed precision that fits the hardware
Description: Pick bf16, fp16 or fp32 from the device Keras runs on, keep the
model's outputs in float32, scale the learning rate for a bigger batch, and
train a small conv net on the digits; the same script runs on a CPU, a GPU or
a TPU.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# Mixed precision computes in 16-bit floats and keeps the weights in float32.
# Which 16-bit type pays off depends on the hardware: bfloat16 on TPUs and on
# NVIDIA GPUs of compute capability 8.0 and newer (A100, L4, H100, RTX 30xx),
# float16 with loss scaling on older GPUs (V100, T4), and neither on a CPU,
# where it only adds casts. `keras_tricks.precision.set_policy("auto")` asks
# the active backend which devices it has and sets the policy accordingly.
#
# Set `KERAS_TRICKS_FAST=1` for a smoke run on a few hundred digits.

import os

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_tricks import precision
from keras_tricks.callbacks import WarmupCosine

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
EPOCHS = 2 if FAST else 30
keras.utils.set_random_seed(0)

"""
## Step 1: the policy

`auto_policy(explain=True)` says what it found and why; `set_policy("auto")`
sets it as Keras's global dtype policy. Call it before building the model:
layers take the policy that is active when they are created. On this
script's CI machine (a CPU) it prints `float32`.
"""

print(precision.auto_policy(explain=True))
policy = precision.set_policy("auto")
ON_ACCELERATOR = policy != "float32"

"""
## Data

The 8x8 digits of scikit-learn as 1-channel images, scaled to [0, 1].
"""

x, y = load_digits(return_X_y=True)
x = (x / 16.0).reshape(-1, 8, 8, 1).astype("float32")
x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=0.25, stratify=y, random_state=0
)
if FAST:
    x_train, y_train = x_train[:256], y_train[:256]

"""
## Step 2: outputs in float32

Under a mixed policy every layer computes in 16 bits, the softmax head too.
A float16 softmax turns into NaN when a logit passes 65504, the largest float16, and rounds small
probabilities to 0. Here is the failure on a single layer, whatever this
machine's policy is (a layer's own `dtype` wins over the global policy):
"""

head = keras.layers.Dense(
    2,
    activation="softmax",
    dtype="mixed_float16",
    kernel_initializer=keras.initializers.Constant([[30000.0, 0.0]]),
)
print(
    "float16 softmax of a logit of 90000:",
    keras.ops.convert_to_numpy(head(np.full((1, 1), 3.0, "float32"))),
)

"""
`check_outputs(model)` lists the outputs that come out in float16 or bfloat16;
`check_outputs(model, fix=True)` clones the model with those output layers
recreated as `dtype="float32"` (they then compute in float32 from their
16-bit inputs) and copies the weights. Writing `dtype="float32"` on the last
layer yourself does the same.
"""


def build_model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


model = build_model()
print(precision.check_outputs(model))
model = precision.check_outputs(model, fix=True)
assert precision.check_outputs(model).ok

"""
## Step 3: the batch size and the learning rate

Accelerators like big batches. Say SGD at 0.05 was tuned with batches of 32;
we train with 128 (512 on a GPU or TPU). The linear scaling rule (Goyal et
al.) multiplies the LR by 128 / 32 = 4 and asks for a warmup (5 epochs, at
most 10% of the run), which `WarmupCosine` provides. Printing the result
explains what changed.
"""

BASE_BATCH = 32
BATCH = 512 if ON_ACCELERATOR else 128
steps_per_epoch = -(-len(x_train) // BATCH)
scaled = precision.scale_hparams(
    0.05,
    BASE_BATCH,
    BATCH,
    weight_decay=1e-4,
    momentum=0.9,
    epochs=EPOCHS,
    steps_per_epoch=steps_per_epoch,
)
print(scaled)

"""
## Step 4: train

Under `mixed_float16` Keras's `compile` wraps the optimizer in a
`LossScaleOptimizer` (dynamic loss scaling) by itself; the keras_tricks
callbacks reach the real optimizer behind it. Under `mixed_bfloat16` and
`float32` the optimizer is used as is.
"""

model.compile(
    optimizer=keras.optimizers.SGD(
        learning_rate=scaled.lr,
        momentum=0.9,
        weight_decay=scaled.weight_decay,
    ),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
print("optimizer:", type(model.optimizer).__name__)
schedule = WarmupCosine(
    peak_lr=scaled.lr,
    warmup_epochs=scaled.warmup_epochs,
)
history = model.fit(
    x_train,
    y_train,
    batch_size=BATCH,
    epochs=EPOCHS,
    callbacks=[schedule],
    verbose=2,
)

"""
## Result

A full run reaches about 95% test accuracy (95.3% on JAX on a CPU). The loss
stayed finite and the outputs are float32 whatever the policy.
"""

loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"policy {policy}: test accuracy {accuracy:.3f}, final loss {loss:.4f}")
assert np.isfinite(loss)
