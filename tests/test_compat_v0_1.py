"""Files written by keras_tricks 0.1.0 keep working (DESIGN.md decision 13).

`tests/data/v0_1/<backend>/` holds `.keras` files saved by 0.1 (a schedule
inside an optimizer, both optimizer wrappers, `OutputHead`, `PriorBias`), a
`BackupAndRestore` folder of a run whose plateau callback had reduced a
schedule, and the predictions and next training losses of the uninterrupted
0.1 run (`make_files.py` wrote them). Loaded with this version, each file must
predict the same and continue training on the same trajectory: its optimizer
variables must still load (Keras drops them all, silently, when their count
differs).
"""

import json
import os
import warnings

import keras
import numpy as np
import pytest

import keras_tricks
from keras_tricks import _control

HERE = os.path.join(os.path.dirname(__file__), "data", "v0_1", keras.backend.backend())
with open(os.path.join(HERE, "expected.json")) as f:
    EXPECTED = json.load(f)
MODELS = sorted(k for k in EXPECTED if k != "backup")


def _data(n=64, d=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (rng.random(n) * classes).astype("int32") % classes
    y[: n // 2] = 0
    return x, y


@pytest.mark.parametrize("name", MODELS)
def test_v0_1_file_predicts_and_resumes_the_same(name):
    x, y = _data()
    with warnings.catch_warnings():
        # "Skipping variable loading for optimizer" must not happen.
        warnings.simplefilter("error")
        model = keras.saving.load_model(os.path.join(HERE, f"{name}.keras"))
    want = EXPECTED[name]
    np.testing.assert_allclose(
        model.predict(x, verbose=0), want["predictions"], rtol=1e-5, atol=1e-6
    )
    losses = []
    for i in range(len(want["losses"])):
        j = i % 4
        losses.append(
            float(model.train_on_batch(x[j * 16 : (j + 1) * 16], y[j * 16 : (j + 1) * 16]))
        )
    np.testing.assert_allclose(losses, want["losses"], rtol=2e-5, atol=1e-6)


def test_v0_1_backup_resumes_with_its_plateau_reduction(tmp_path):
    """A 0.1 `BackupAndRestore` folder restores the reduction of a schedule."""
    import shutil

    x, y = _data()
    backup = tmp_path / "backup"
    shutil.copytree(os.path.join(HERE, "backup"), backup)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.05, 1000)),
        "sparse_categorical_crossentropy",
    )
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if "lr" not in seen:
                seen["epoch"] = epoch
                seen["lr"] = _control.current_lr(self.model.optimizer)
                seen["iterations"] = int(
                    keras.ops.convert_to_numpy(self.model.optimizer.iterations)
                )

    model.fit(
        x,
        y,
        batch_size=16,
        epochs=6,
        verbose=0,
        shuffle=False,
        callbacks=[
            keras_tricks.callbacks.BackupAndRestore(str(backup)),
            keras_tricks.callbacks.ReduceLROnPlateau(
                monitor="loss", factor=0.5, patience=1, min_delta=10.0
            ),
            Probe(),
        ],
    )
    want = EXPECTED["backup"]
    assert seen["epoch"] == 4
    assert seen["iterations"] == want["iterations"]
    np.testing.assert_allclose(seen["lr"], want["lr"], rtol=1e-5)
