"""Write the 0.1 compatibility fixtures (run once, with keras_tricks 0.1.0).

For each backend: `.keras` files of models whose optimizers hold keras_tricks
0.1 objects (a schedule inside an optimizer, both wrappers), an `OutputHead`
and a `PriorBias` head, a `BackupAndRestore` folder written by a run whose
`ReduceLROnPlateau` reduced a schedule; and `expected.json` with, for each
file, the predictions at save time and the losses of the next training steps
of the uninterrupted in-memory run. `tests/test_compat_v0_1.py` loads them
with the current version and checks that both match.

    for b in tensorflow jax torch; do
        KERAS_BACKEND=$b python tests/data/v0_1/make_files.py
    done
"""

import json
import os
import shutil

import keras
import numpy as np

import keras_tricks
from keras_tricks import callbacks, layers, optimizers, schedules
from keras_tricks.imbalance import PriorBias

assert keras_tricks.__version__ == "0.1.0", keras_tricks.__version__
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), keras.backend.backend())
CONTINUE_STEPS = 6


def data(n=64, d=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (rng.random(n) * classes).astype("int32") % classes
    y[: n // 2] = 0  # imbalanced
    return x, y


def mlp(head):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), head]
    )


def builds():
    x, y = data()
    yield "sgd_one_cycle_schedule", lambda: (
        mlp(keras.layers.Dense(3, activation="softmax")),
        keras.optimizers.SGD(
            schedules.OneCycle(max_lr=0.1, total_steps=40), momentum=0.9
        ),
    )
    yield "gc_adam_warmup_cosine", lambda: (
        mlp(keras.layers.Dense(3, activation="softmax")),
        optimizers.GradientCentralization(
            keras.optimizers.Adam(schedules.WarmupCosine(1e-2, 40, warmup_steps=5))
        ),
    )
    yield "accumulation_sgdr", lambda: (
        mlp(keras.layers.Dense(3, activation="softmax")),
        optimizers.GradientAccumulation(
            keras.optimizers.SGD(schedules.SGDR(0.05, 10), momentum=0.9), steps=2
        ),
    )
    yield "output_head", lambda: (
        mlp(layers.OutputHead(3, "softmax", prior=y)),
        keras.optimizers.Adam(1e-2),
    )
    yield "prior_bias", lambda: (
        mlp(
            keras.layers.Dense(
                3, activation="softmax", bias_initializer=PriorBias([0.5, -0.2, -0.3])
            )
        ),
        keras.optimizers.RMSprop(1e-2),
    )


def main():
    os.makedirs(HERE, exist_ok=True)
    x, y = data()
    expected = {}
    for name, build in builds():
        model, opt = build()
        model.compile(opt, "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        path = os.path.join(HERE, f"{name}.keras")
        model.save(path)
        preds = np.asarray(model.predict(x, verbose=0)).tolist()
        losses = []
        for i in range(CONTINUE_STEPS):
            j = i % 4
            losses.append(
                float(model.train_on_batch(x[j * 16 : (j + 1) * 16], y[j * 16 : (j + 1) * 16]))
            )
        expected[name] = {"predictions": preds, "losses": losses}

    # A BackupAndRestore folder from an interrupted run in which
    # ReduceLROnPlateau reduced an optimizer-owned schedule.
    backup = os.path.join(HERE, "backup")
    shutil.rmtree(backup, ignore_errors=True)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 3:
                raise RuntimeError("interrupt")

    model = mlp(keras.layers.Dense(3, activation="softmax"))
    model.compile(
        keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.05, 1000)),
        "sparse_categorical_crossentropy",
    )
    cbs = [
        callbacks.BackupAndRestore(backup, delete_checkpoint=False),
        callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0),
        Interrupt(),
    ]
    try:
        model.fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False, callbacks=cbs)
    except RuntimeError:
        pass
    expected["backup"] = {
        "lr_scale": keras_tricks._control.get_lr_scale(model.optimizer),
        "lr": keras_tricks._control.current_lr(model.optimizer),
        "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
    }
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f)
    print("wrote", HERE, sorted(expected))


if __name__ == "__main__":
    main()
