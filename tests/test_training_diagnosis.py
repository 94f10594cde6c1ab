"""TrainingDiagnosis names each provoked problem, on every backend, from real training.

Each scenario trains a tiny model for a few epochs on scikit-learn's digits
(1,797 8x8 images): a learning rate 100x too high, one 1e4x too low, a 2-unit
model, a big model on 150 samples, a run stuck at a saddle, a healthy run.
"""

import json
import os

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

import keras_tricks
from keras_tricks.diagnosis import VERDICTS, TrainingDiagnosis, diagnose

BACKEND = keras.backend.backend()


def _digits():
    x, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(x))
    return (x[idx] / 16.0).astype("float32"), y[idx].astype("int32")


X, Y = _digits()


def _mlp(units, optimizer):
    layers = [keras.Input((64,))]
    layers += [keras.layers.Dense(u, activation="relu") for u in units]
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


# name: (hidden units, optimizer factory, training rows, epochs, batch size)
SCENARIOS = {
    # SGD with momentum trains this MLP well at 0.05: 100x that diverges.
    "lr_too_high": ([32], lambda: keras.optimizers.SGD(5.0, momentum=0.9), 1400, 3, 64),
    # Adam's 1e-3 works: 1e4x lower does not move.
    "lr_too_low": ([32], lambda: keras.optimizers.Adam(1e-7), 1400, 3, 64),
    "model_bias": ([2], lambda: keras.optimizers.Adam(3e-2), 1400, 12, 64),
    "overfitting": ([256, 256], lambda: keras.optimizers.Adam(1e-2), 150, 15, 32),
    "ok": ([32], lambda: keras.optimizers.SGD(0.05, momentum=0.9), 1400, 8, 64),
    "not_converged": ([32], lambda: keras.optimizers.SGD(0.005, momentum=0.9), 1400, 2, 64),
}


def _run(name, **kwargs):
    units, optimizer, n, epochs, batch_size = SCENARIOS[name]
    model = _mlp(units, optimizer())
    x, y = X[:n], Y[:n]
    diagnosis = TrainingDiagnosis(probe_data=(x, y), probe_every=2, verbose=0, **kwargs)
    history = model.fit(
        x, y, validation_data=(X[1400:], Y[1400:]), epochs=epochs,
        batch_size=batch_size, callbacks=[diagnosis], verbose=0,
    )
    return diagnosis, history


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_provoked_problem_is_named(name):
    diagnosis, history = _run(name)
    report = diagnosis.report
    assert report.verdict == name, str(report)
    assert report.evidence and report.fix
    # The verdict code is in the logs every epoch (a number, for every logger).
    codes = history.history["diagnosis"]
    assert len(codes) == len(history.history["loss"])
    assert all(0 <= c < len(VERDICTS) for c in codes)
    if name == "overfitting":
        # The gap opens where the validation loss stops following the training loss.
        val, loss = history.history["val_loss"], history.history["loss"]
        assert 0 < report.epoch < len(loss) - 1
        assert val[-1] > 2 * loss[-1]
    if name == "lr_too_high":
        evidence = " ".join(report.evidence)
        assert any(
            words in evidence
            for words in ("started from", "not finite", "above max_update_ratio")
        ), evidence
    if name in ("ok", "not_converged"):
        # A healthy run: the probe measured sensible updates and gradients.
        ratios = [p["update_ratio"] for p in diagnosis.probes if "update_ratio" in p]
        assert ratios and all(1e-5 < r < 1e-1 for r in ratios)


def _saddle_model():
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(4, use_bias=False, kernel_initializer="zeros"),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    return model


def test_a_run_stuck_at_a_saddle_is_told_from_model_bias():
    # Two linear layers at zero: the gradient vanishes, the loss never moves,
    # and the Hessian has a negative eigenvalue. Not an LR problem.
    x, y = X[:512], (Y[:512] / 9.0).astype("float32")[:, None]
    model = _saddle_model()
    diagnosis = TrainingDiagnosis(probe_data=(x, y), probe_every=1, verbose=0)
    model.fit(x, y, epochs=2, batch_size=128, callbacks=[diagnosis], verbose=0)
    assert diagnosis.report.verdict == "saddle", str(diagnosis.report)
    assert diagnosis.hessian.kind == "saddle point"
    assert diagnosis.hessian.smallest < 0 < diagnosis.hessian.largest


def test_the_hessian_check_can_be_switched_off():
    x, y = X[:512], (Y[:512] / 9.0).astype("float32")[:, None]
    diagnosis = TrainingDiagnosis(probe_data=(x, y), probe_every=1, verbose=0,
                                  check_hessian=False)
    _saddle_model().fit(x, y, epochs=1, batch_size=256, callbacks=[diagnosis], verbose=0)
    assert diagnosis.hessian is None and diagnosis.report.verdict == "saddle"


def test_verbose_prints_the_report(capsys):
    diagnosis = TrainingDiagnosis(verbose=1)
    model = _mlp([8], keras.optimizers.Adam(1e-7))
    model.fit(X[:256], Y[:256], epochs=2, batch_size=128, callbacks=[diagnosis], verbose=0)
    out = capsys.readouterr().out
    assert "Training diagnosis: optimization: LR too low / stalled" in out
    assert "find_lr" in out
    # Without probe data: the logs and the update sizes only.
    assert diagnosis.prior_loss is None and diagnosis.initial_loss is None


def test_diagnose_is_a_pure_function_of_the_numbers():
    nan = float("nan")
    assert diagnose({"loss": [2.0, 1.0, nan]}).verdict == "lr_too_high"
    assert diagnose({"loss": [2.0, 0.5, 0.4, 1.2]}).verdict == "lr_too_high"
    # A spike near zero is not divergence.
    spike = [2.0, 0.5, 0.1, 0.01, 0.004, 0.002, 0.005]
    assert diagnose({"loss": spike}, initial_loss=2.3).verdict != "lr_too_high"
    assert diagnose({"loss": [2.3, 2.3, 2.3]}, initial_loss=2.3).verdict == "lr_too_low"
    falling = [2.0, 1.5, 1.0, 0.7, 0.5]
    assert diagnose({"loss": falling}, prior_loss=2.3).verdict == "not_converged"
    flat_high = [2.0, 1.2, 1.0, 0.99, 0.985, 0.983, 0.982]
    assert diagnose({"loss": flat_high}, prior_loss=2.3).verdict == "model_bias"
    assert diagnose({"loss": flat_high}, prior_loss=2.3, target_loss=1.0).verdict == "ok"
    val = [2.0, 1.0, 0.8, 0.9, 1.0, 1.1]
    report = diagnose({"loss": [2.0, 1.0, 0.5, 0.3, 0.2, 0.1], "val_loss": val},
                      prior_loss=2.3)
    assert report.verdict == "overfitting" and report.epoch == 2
    converged = [2.3, 0.3, 0.1, 0.09, 0.089, 0.088, 0.0875]
    assert diagnose({"loss": converged}, prior_loss=2.3).ok


def test_serialization_round_trip_and_bad_arguments():
    callback = TrainingDiagnosis(probe_every=3, high_loss=np.float32(0.3),
                                 target_loss=0.5, verbose=0)
    config = callback.get_config()
    json.dumps(config)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(callback))
    assert type(restored) is TrainingDiagnosis
    assert restored.get_config() == config
    assert keras_tricks.callbacks.TrainingDiagnosis is TrainingDiagnosis
    with pytest.raises(ValueError, match="`probe_every`.*Received: probe_every=0"):
        TrainingDiagnosis(probe_every=0)
    with pytest.raises(ValueError, match="`stall_progress`.*Received: stall_progress=True"):
        TrainingDiagnosis(stall_progress=True)
    with pytest.raises(ValueError, match="`probe_data` must be a tuple"):
        TrainingDiagnosis(probe_data=X)
    with pytest.raises(ValueError, match="`max_update_ratio` must be > min_update_ratio"):
        TrainingDiagnosis(min_update_ratio=0.1, max_update_ratio=0.01)


def test_two_fits_in_a_row_with_schedule_plateau_and_keras_callbacks(tmp_path):
    # One instance, two fits: each fit is judged alone; alongside the package's
    # OneCycle and SmartReduceLROnPlateau and Keras's CSVLogger/EarlyStopping.
    x, y = X[:512], Y[:512]
    model = _mlp([32], keras.optimizers.SGD(0.05, momentum=0.9))
    diagnosis = TrainingDiagnosis(probe_data=(x, y), probe_every=2, verbose=0)
    csv = tmp_path / "log.csv"
    first = model.fit(
        x, y, epochs=4, batch_size=64, validation_split=0.25, verbose=0,
        callbacks=[
            keras_tricks.callbacks.OneCycle(max_lr=0.1),
            diagnosis,
            keras.callbacks.CSVLogger(str(csv)),
        ],
    )
    assert len(diagnosis.history["loss"]) == 4
    assert diagnosis.history["lr"] == pytest.approx(first.history["lr"])
    first_report = diagnosis.report
    assert first_report.verdict in VERDICTS
    assert "diagnosis" in csv.read_text().splitlines()[0]
    model.fit(
        x, y, epochs=3, batch_size=64, validation_split=0.25, verbose=0,
        callbacks=[
            keras_tricks.callbacks.SmartReduceLROnPlateau(),
            keras.callbacks.EarlyStopping(patience=5),
            diagnosis,
        ],
    )
    assert len(diagnosis.history["loss"]) == 3  # reset in on_train_begin
    assert diagnosis.probes[0]["epoch"] == 1
    assert diagnosis.report is not first_report


def test_save_and_load_mid_training_keeps_the_model_usable(tmp_path):
    # The callback holds no state in the model: a .keras file saved mid-run
    # loads in plain Keras and training continues with a fresh diagnosis.
    x, y = X[:256], Y[:256]
    model = _mlp([16], keras.optimizers.Adam(1e-2))
    first = TrainingDiagnosis(probe_data=(x, y), verbose=0)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[first])
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    diagnosis = TrainingDiagnosis(probe_data=(x, y), probe_every=1, verbose=0)
    loaded.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[diagnosis])
    # Its starting loss is the trained model's, below the first fit's start.
    assert diagnosis.initial_loss < 0.95 * first.initial_loss


@pytest.mark.backends("torch")
def test_torch_jit_compile():
    x, y = X[:256], Y[:256]
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-7), loss="sparse_categorical_crossentropy",
                  jit_compile=True)
    diagnosis = TrainingDiagnosis(probe_data=(x, y), probe_every=1, verbose=0)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[diagnosis])
    assert diagnosis.report.verdict == "lr_too_low"
