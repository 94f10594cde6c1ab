"""Every callback and optimizer wrapper of keras_tricks under mixed precision.

Each test runs under `mixed_float16` (where `compile` wraps the optimizer in
Keras's `LossScaleOptimizer`, dynamic loss scaling) and `mixed_bfloat16`, on
whichever backend the suite runs on. Models are tiny and runs are a few steps:
the point is that training runs, the loss stays finite, the weights change,
and that the learning rate each update *really used* is the one the callback
says. That LR is measured, not read back: the model is a single bias-free
`Dense(1)` trained by plain SGD on MSE, so each update is `-lr * g` with a
gradient `g = 2/B * x^T (x w - y)` that the test computes itself, and
`lr = -(dw . g) / (g . g)`.
"""

import math

import keras
import numpy as np
import pytest

import keras_tricks
from keras_tricks import _control, imbalance, precision
from keras_tricks import callbacks as kt_callbacks
from keras_tricks import optimizers as kt_optimizers

POLICIES = ["mixed_float16", "mixed_bfloat16"]
BATCH = 4


@pytest.fixture(params=POLICIES)
def policy(request):
    keras.config.set_dtype_policy(request.param)
    return request.param


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    # Targets away from the predictions (|x w| <= 0.1): the residual is large
    # compared with 16-bit rounding, yet small enough that the float16
    # gradient times Keras's initial loss scale (2**15) stays below 65504.
    # A larger one overflows, and the LossScaleOptimizer skips that update.
    y = np.full((n, 1), -0.2, "float32")
    return x, y


def _linear_model(optimizer):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(1, use_bias=False, name="w")]
    )
    model.get_layer("w").set_weights([np.array([[0.05], [-0.03], [0.02]], "float32")])
    model.compile(optimizer=optimizer, loss="mse")
    return model


class _Recorder(keras.callbacks.Callback):
    """Kernel of layer `w` before training and after every batch."""

    def on_train_begin(self, logs=None):
        self.kernels = [self._kernel()]

    def on_train_batch_end(self, batch, logs=None):
        self.kernels.append(self._kernel())

    def _kernel(self):
        return np.array(self.model.get_layer("w").get_weights()[0], "float64")


def _used_lrs(x, y, kernels, batch_size=BATCH):
    """The LR of each recorded update, from `dw = -lr * g` (no shuffling)."""
    per_epoch = len(x) // batch_size
    lrs = []
    for i in range(len(kernels) - 1):
        b = i % per_epoch
        xb = x[b * batch_size : (b + 1) * batch_size].astype("float64")
        yb = y[b * batch_size : (b + 1) * batch_size].astype("float64")
        g = 2.0 / batch_size * xb.T @ (xb @ kernels[i] - yb)
        dw = kernels[i + 1] - kernels[i]
        lrs.append(-float((dw * g).sum() / (g * g).sum()))
    return np.array(lrs)


def _loss_scaled(model, policy):
    is_lso = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_lso == (policy == "mixed_float16")


def _iterations(model):
    (base,) = _control.base_optimizers(model.optimizer)
    return int(keras.ops.convert_to_numpy(base.iterations))


def _fit(model, x, y, callbacks, epochs):
    return model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        shuffle=False,
        callbacks=callbacks,
        verbose=0,
    )


def _logged_lr(history):
    # Schedule callbacks log `lr`; the plateau callbacks log Keras's name,
    # `learning_rate`.
    logs = history.history
    return logs["lr"] if "lr" in logs else logs["learning_rate"]


def _kernel(model, name):
    return np.array(model.get_layer(name).get_weights()[0])


def _check_trained(history, recorder):
    losses = history.history["loss"]
    assert all(math.isfinite(v) for v in losses), losses
    assert not np.allclose(recorder.kernels[0], recorder.kernels[-1])


# --- schedule callbacks -------------------------------------------------------

SCHEDULES = {
    "OneCycle": lambda: kt_callbacks.OneCycle(max_lr=0.05, cycle_momentum=False),
    "SGDR": lambda: kt_callbacks.SGDR(max_lr=0.05, first_cycle_steps=3),
    "WarmupCosine": lambda: kt_callbacks.WarmupCosine(peak_lr=0.05, warmup_steps=2),
    "CyclicLR": lambda: kt_callbacks.CyclicLR(
        base_lr=0.01, max_lr=0.05, step_size=2, cycle_momentum=False
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_callback_lr_is_the_one_used(policy, name):
    x, y = _data()
    model = _linear_model(keras.optimizers.SGD(learning_rate=0.01))
    _loss_scaled(model, policy)
    schedule_callback = SCHEDULES[name]()
    recorder = _Recorder()
    history = _fit(model, x, y, [schedule_callback, recorder], epochs=2)
    _check_trained(history, recorder)
    steps = 2 * len(x) // BATCH
    assert _iterations(model) == steps  # no update was skipped
    expected = np.array(
        [
            float(keras.ops.convert_to_numpy(schedule_callback.schedule(i)))
            for i in range(steps)
        ]
    )
    assert len(set(np.round(expected, 6))) > 2  # the schedule really moves
    np.testing.assert_allclose(
        _used_lrs(x, y, recorder.kernels), expected, rtol=3e-2, atol=1e-6
    )
    # The epoch logs show the LR of the next update.
    np.testing.assert_allclose(
        history.history["lr"][-1],
        float(keras.ops.convert_to_numpy(schedule_callback.schedule(steps))),
        rtol=1e-5,
        atol=1e-8,
    )


def test_schedule_object_as_the_optimizer_learning_rate(policy):
    # The schedules also work without a callback, passed to the optimizer.
    schedule = keras_tricks.schedules.WarmupCosine(
        peak_lr=0.05, total_steps=8, warmup_steps=3, initial_lr=0.01
    )
    x, y = _data()
    model = _linear_model(keras.optimizers.SGD(learning_rate=schedule))
    _loss_scaled(model, policy)
    recorder = _Recorder()
    history = _fit(model, x, y, [recorder], epochs=2)
    _check_trained(history, recorder)
    expected = [float(keras.ops.convert_to_numpy(schedule(i))) for i in range(8)]
    np.testing.assert_allclose(
        _used_lrs(x, y, recorder.kernels), expected, rtol=3e-2, atol=1e-6
    )


def test_one_cycle_momentum_cycling(policy):
    x, y = _data()
    model = _linear_model(keras.optimizers.SGD(learning_rate=0.01, momentum=0.9))
    _loss_scaled(model, policy)
    recorder = _Recorder()
    history = _fit(
        model, x, y, [kt_callbacks.OneCycle(max_lr=0.05), recorder], epochs=2
    )
    _check_trained(history, recorder)
    momentum = history.history["momentum"]
    assert all(0.85 - 1e-6 <= m <= 0.95 + 1e-6 for m in momentum)
    assert momentum[0] != momentum[1]


# --- plateau and stopping -----------------------------------------------------


@pytest.mark.parametrize("name", ["ReduceLROnPlateau", "SmartReduceLROnPlateau"])
def test_plateau_callbacks_reduce_the_lr_actually_used(policy, name):
    x, y = _data(n=8)
    model = _linear_model(keras.optimizers.SGD(learning_rate=0.02))
    _loss_scaled(model, policy)
    if name == "ReduceLROnPlateau":
        # No epoch can improve by 1e6: the LR halves after every epoch but
        # the first.
        plateau = kt_callbacks.ReduceLROnPlateau(
            monitor="loss", factor=0.5, patience=0, min_delta=1e6
        )
    else:
        plateau = kt_callbacks.SmartReduceLROnPlateau(monitor="loss", factor=0.5)
    recorder = _Recorder()
    epochs = 3
    history = _fit(model, x, y, [plateau, recorder], epochs=epochs)
    _check_trained(history, recorder)
    per_epoch = len(x) // BATCH
    used = _used_lrs(x, y, recorder.kernels).reshape(epochs, per_epoch)
    logged = _logged_lr(history)
    np.testing.assert_allclose(used[0], 0.02, rtol=3e-2)
    # Like Keras's ReduceLROnPlateau, each epoch logs the LR its updates used
    # (a reduction decided at the end of the epoch shows in the next one).
    for epoch in range(epochs):
        np.testing.assert_allclose(used[epoch], logged[epoch], rtol=3e-2)
    if name == "ReduceLROnPlateau":
        np.testing.assert_allclose(logged, [0.02, 0.02, 0.01], rtol=1e-5)
        assert _control.current_lr(model.optimizer) == pytest.approx(0.005)


def test_early_stopping_restores_best_weights(policy):
    x, y = _data(n=8)
    model = _linear_model(keras.optimizers.SGD(learning_rate=0.02))
    stopper = kt_callbacks.EarlyStopping(
        monitor="loss", patience=0, min_delta=1e6, restore_best_weights=True
    )
    recorder = _Recorder()
    history = _fit(model, x, y, [stopper, recorder], epochs=5)
    losses = history.history["loss"]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    per_epoch = len(x) // BATCH
    # Trained, then put back to the weights after epoch 1 (the best).
    assert not np.allclose(recorder.kernels[per_epoch], recorder.kernels[0])
    np.testing.assert_array_equal(
        model.get_layer("w").get_weights()[0], recorder.kernels[per_epoch]
    )


def test_backup_and_restore_resumes(policy, tmp_path):
    x, y = _data(n=8)
    model = _linear_model(keras.optimizers.SGD(learning_rate=0.02))
    backup = kt_callbacks.BackupAndRestore(backup_dir=str(tmp_path / "backup"))

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(model, x, y, [backup, Interrupt()], epochs=3)
    kernel = np.array(model.get_layer("w").get_weights()[0])
    resumed = _linear_model(keras.optimizers.SGD(learning_rate=0.02))
    recorder = _Recorder()
    history = _fit(resumed, x, y, [backup, recorder], epochs=3)
    assert history.epoch == [2]
    np.testing.assert_allclose(recorder.kernels[0], kernel)
    _check_trained(history, recorder)
    assert _iterations(resumed) == 3 * len(x) // BATCH


# --- LR finder ----------------------------------------------------------------


def test_lr_finder_callback_sweeps_the_lr_actually_used(policy):
    x, y = _data()
    model = _linear_model(keras.optimizers.SGD(learning_rate=0.01))
    finder = kt_callbacks.LRFinder(start_lr=1e-3, end_lr=1e-1, num_steps=4)
    recorder = _Recorder()
    _fit(model, x, y, [finder, recorder], epochs=1)
    lrs = finder.result.lrs
    assert len(lrs) == 4 and np.all(np.diff(lrs) > 0)
    assert np.all(np.isfinite(finder.result.losses))
    np.testing.assert_allclose(
        _used_lrs(x, y, recorder.kernels)[: len(lrs)], lrs, rtol=3e-2
    )
    # restore=True: the model is back where it started.
    np.testing.assert_allclose(
        model.get_layer("w").get_weights()[0], recorder.kernels[0]
    )


def test_find_lr_leaves_the_model_as_it_was(policy):
    x, y = _data()
    model = _linear_model(keras.optimizers.SGD(learning_rate=0.01))
    before = np.array(model.get_layer("w").get_weights()[0])
    result = keras_tricks.find_lr(
        model, x, y, batch_size=BATCH, start_lr=1e-3, end_lr=1e-1, num_steps=4
    )
    assert len(result.lrs) >= 3
    assert np.all(np.isfinite(result.losses))
    np.testing.assert_array_equal(model.get_layer("w").get_weights()[0], before)


# --- optimizer wrappers -------------------------------------------------------


def _hidden_model(optimizer):
    model = keras.Sequential(
        [
            keras.Input((3,)),
            # Small weights: no float16 overflow at the initial loss scale.
            keras.layers.Dense(
                4,
                name="hidden",
                kernel_initializer=keras.initializers.RandomNormal(0.0, 0.1, seed=0),
            ),
            keras.layers.Dense(
                1,
                name="w",
                use_bias=False,
                kernel_initializer=keras.initializers.Constant(0.1),
            ),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse")
    return model


def test_gradient_centralization_centralizes_the_update(policy):
    x, y = _data()
    model = _hidden_model(
        kt_optimizers.GradientCentralization(keras.optimizers.SGD(0.05))
    )
    _loss_scaled(model, policy)
    before = _kernel(model, "hidden")
    recorder = _Recorder()
    history = _fit(model, x, y, [recorder], epochs=1)
    _check_trained(history, recorder)
    delta = _kernel(model, "hidden") - before
    assert np.abs(delta).max() > 1e-4
    # Keras kernels are (in, out): the update's mean over `in` is zero.
    np.testing.assert_allclose(delta.mean(axis=0), 0.0, atol=1e-6)


def test_gradient_accumulation_updates_every_k_batches(policy):
    x, y = _data()
    model = _linear_model(
        kt_optimizers.GradientAccumulation(keras.optimizers.SGD(0.05), steps=2)
    )
    _loss_scaled(model, policy)
    recorder = _Recorder()
    history = _fit(model, x, y, [recorder], epochs=1)
    _check_trained(history, recorder)
    k = recorder.kernels
    changed = [not np.array_equal(k[i], k[i + 1]) for i in range(len(k) - 1)]
    assert changed == [False, True, False, True]
    assert _iterations(model) == 2


def test_wrappers_compose_under_mixed_precision(policy):
    x, y = _data()
    optimizer = kt_optimizers.GradientAccumulation(
        kt_optimizers.GradientCentralization(keras.optimizers.SGD(0.05)), steps=2
    )
    model = _hidden_model(optimizer)
    _loss_scaled(model, policy)
    before = _kernel(model, "hidden")
    recorder = _Recorder()
    history = _fit(
        model, x, y, [kt_callbacks.WarmupCosine(peak_lr=0.05), recorder], epochs=2
    )
    _check_trained(history, recorder)
    delta = _kernel(model, "hidden") - before
    assert np.abs(delta).max() > 1e-5
    np.testing.assert_allclose(delta.mean(axis=0), 0.0, atol=1e-6)
    assert _iterations(model) == 2 * len(x) // BATCH // 2


# --- class imbalance ----------------------------------------------------------


def _imbalanced(n=24):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (np.arange(n) % 6 == 0).astype("int32")  # 1 positive in 6
    return x, y


def test_oversampled_dataset_trains(policy):
    x, y = _imbalanced()
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(2, activation="softmax", dtype="float32"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    _loss_scaled(model, policy)
    before = [w.copy() for w in model.get_weights()]
    dataset = imbalance.OversampledDataset(x, y, batch_size=8, seed=0)
    history = model.fit(dataset, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][-1])
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(before, model.get_weights(), strict=True)
    )


def test_output_head_stays_float32_and_starts_at_the_prior(policy):
    x, y = _imbalanced()
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="relu"),
            keras_tricks.layers.OutputHead(2, "softmax", prior=y),
        ]
    )
    assert precision.check_outputs(model).ok
    assert model.layers[0].compute_dtype != "float32"  # the body is mixed
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    _loss_scaled(model, policy)
    bias = np.array(model.layers[-1].get_weights()[-1])
    prior = np.bincount(y) / len(y)
    np.testing.assert_allclose(np.exp(bias) / np.exp(bias).sum(), prior, rtol=1e-4)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][-1])
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(before, model.get_weights(), strict=True)
    )
