"""The sweep (keras_tricks.lr_finder.sweep): its schedule, the per-batch loss, the LRFinder callback."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_tricks
from keras_tricks.callbacks import LRFinder
from keras_tricks.lr_finder import (
    _SweepSchedule,
    ema_smooth,
)

from ._common import _assert_same_state, _data, _model, _state


class _TrueBatchLoss(keras.callbacks.Callback):
    """The MSE of batch `i` under the model's current weights."""

    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def loss_of(self, i):
        sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
        pred = ops.convert_to_numpy(self.model(self.x[sl]))
        return float(np.mean((pred - self.y[sl]) ** 2)), len(self.y[sl])


def test_recorded_loss_is_the_batch_loss_not_the_running_mean():
    x, y = _data(n=100)  # batches of 32, 32, 32, 4: unequal sizes
    model = _model(keras.optimizers.SGD(1e-2))
    reference = _TrueBatchLoss(x, y, 32)
    true_losses = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            true_losses.append(reference.loss_of(batch)[0])

    running = []

    class Running(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            running.append(float(ops.convert_to_numpy(logs["loss"])))

    finder = LRFinder(start_lr=1e-3, end_lr=1e-1, num_steps=8)
    probe = Probe()
    reference.set_model(model)
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[probe, finder, Running()],
    )
    assert finder.result.stop_reason == "completed"
    np.testing.assert_allclose(finder.result.losses, true_losses, rtol=1e-5)
    # Keras's running mean of the epoch would have been different.
    cumulative = np.cumsum(true_losses[:4] * np.array([32, 32, 32, 4])) / np.cumsum(
        [32, 32, 32, 4]
    )
    assert not np.allclose(finder.result.losses[:4], cumulative, rtol=1e-3)
    np.testing.assert_allclose(running, finder.result.losses, rtol=1e-6)
    np.testing.assert_allclose(
        finder.result.lrs, np.geomspace(1e-3, 1e-1, 8), rtol=1e-6
    )


@pytest.mark.backends("jax", "tensorflow")  # torch: Keras needs spe=1
def test_steps_per_execution_two_gives_one_point_per_execution():
    x, y = _data(n=128)  # 4 batches of 32 an epoch, 2 executions
    model = _model(keras.optimizers.SGD(1e-2), steps_per_execution=2)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    before = _state(model)
    reference = _TrueBatchLoss(x, y, 32)
    reference.set_model(model)

    # The expected curve, replayed by hand with plain SGD on a copy.
    replay = _model(keras.optimizers.SGD(1e-2))
    replay.set_weights(model.get_weights())
    sweep = _SweepSchedule(1e-3, 1e-1, total=8)
    expected_losses, expected_lrs = [], []
    for point in range(4):
        losses = []
        for j in (2 * point, 2 * point + 1):
            i = j % 4
            xb, yb = x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32]
            replay.optimizer.learning_rate = float(sweep.lr_at(j))
            losses.append(float(replay.train_on_batch(xb, yb)))
        expected_losses.append(np.mean(losses))
        expected_lrs.append(float(sweep.lr_at(2 * point + 0.5)))

    result = keras_tricks.find_lr(
        model,
        x,
        y,
        batch_size=32,
        start_lr=1e-3,
        end_lr=1e-1,
        num_steps=4,
        shuffle=False,
    )
    assert model.steps_per_execution == 2
    np.testing.assert_allclose(result.losses, expected_losses, rtol=1e-4)
    np.testing.assert_allclose(result.lrs, expected_lrs, rtol=1e-6)
    _assert_same_state(before, _state(model))


def test_exp_and_linear_sweeps_and_smoothing():
    x, y = _data()
    for mode, expected in (
        ("exp", np.geomspace(1e-4, 1e-2, 12)),
        ("linear", np.linspace(1e-4, 1e-2, 12)),
    ):
        model = _model(keras.optimizers.SGD(1e-3))
        result = keras_tricks.find_lr(
            model,
            x,
            y,
            batch_size=32,
            start_lr=1e-4,
            end_lr=1e-2,
            num_steps=12,
            mode=mode,
        )
        np.testing.assert_allclose(result.lrs, expected, rtol=1e-6)
        assert result.stop_reason == "completed"
        np.testing.assert_allclose(
            result.smoothed_losses, ema_smooth(result.losses, 0.98)
        )
    # Bias-corrected EMA by hand.
    smoothed = ema_smooth([1.0, 3.0], beta=0.5)
    np.testing.assert_allclose(smoothed, [1.0, (0.25 + 1.5) / 0.75])


@pytest.mark.backends("jax", "tensorflow")
def test_one_trace_for_the_sweep():
    x, y = _data(n=96)
    model = _model(keras.optimizers.SGD(1e-3))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    traces = []
    original = model.train_step

    def counting_train_step(*args):
        traces.append(1)
        return original(*args)

    model.train_step = counting_train_step
    keras_tricks.find_lr(
        model, x, y, batch_size=32, start_lr=1e-4, end_lr=1e-2, num_steps=9
    )
    assert len(traces) == 1


@pytest.mark.backends("jax")
def test_sweep_after_a_fit_really_uses_the_sweep_lr_on_jax():
    # jax.jit reuses a live trace of the same bound `train_step`: the sweep
    # must not run on the trace of the earlier fit (its LR was 1e-2).
    x, y = _data(n=32)
    model = _model(keras.optimizers.SGD(1e-2))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    twin = _model(keras.optimizers.SGD(1e-3))
    twin.set_weights(model.get_weights())
    finder = LRFinder(start_lr=1e-3, end_lr=1.0, num_steps=2, restore=False)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[finder])
    twin.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_divergence_stops_the_sweep():
    x, y = _data(n=256)
    model = _model(keras.optimizers.SGD(1e-3))
    result = keras_tricks.find_lr(
        model, x, y, batch_size=16, start_lr=1e-4, end_lr=1e4, num_steps=60
    )
    assert result.stop_reason == "diverged"
    assert len(result.lrs) < 60
    last = result.smoothed_losses[-1]
    best = np.min(result.smoothed_losses[:-1])
    assert not np.isfinite(last) or last > 4.0 * best
    assert result.suggestion() < result.lrs[-1]


def test_callback_round_trip_and_reuse():
    finder = LRFinder(start_lr=1e-5, end_lr=1.0, num_steps=10, mode="linear", beta=0.9)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(finder)
    )
    assert isinstance(restored, LRFinder)
    assert restored.get_config() == finder.get_config()
    x, y = _data(n=64)
    model = _model(keras.optimizers.SGD(1e-3))
    for _ in range(2):  # reused across fits: state resets at on_train_begin
        model.fit(x, y, batch_size=16, epochs=5, callbacks=[restored], verbose=0)
        assert len(restored.result.lrs) == 10
        assert restored.result.stop_reason == "completed"
        assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0


def test_noisy_small_losses_at_the_start_do_not_stop_the_sweep():
    # Batch losses alternate between 1e-4 and 1 (a trained model's small,
    # noisy losses, exaggerated): the smoothed loss of the second point is
    # far above 4x the first. The warm-up (first 10% of the points) must not
    # call that a divergence.
    x = np.zeros((100, 1), "float32")
    y = np.tile(np.array([[0.01], [0.01], [1.0], [1.0]], "float32"), (25, 1))
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros")]
    )
    model.compile(keras.optimizers.SGD(), "mse")
    finder = LRFinder(start_lr=1e-9, end_lr=1e-8, num_steps=50)
    # The LRs are too small to train: a flat curve, which the finder says.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            x, y, batch_size=2, epochs=1, shuffle=False, callbacks=[finder], verbose=0
        )
    assert any("no descent" in str(w.message) for w in caught)
    assert finder.result.stop_reason == "completed"
    assert len(finder.result.lrs) == 50
