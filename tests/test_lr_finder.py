"""LR range test: find_lr, the LRFinder callback, suggestions, plot, restoration."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_tricks
from keras_tricks import _control
from keras_tricks.callbacks import LRFinder
from keras_tricks.lr_finder import (
    LRFinderResult,
    _SweepSchedule,
    diverged_at_start,
    ema_smooth,
)
from keras_tricks.optimizers import GradientAccumulation, GradientCentralization

BACKEND = keras.backend.backend()


def _data(n=96, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ rng.normal(size=(d, 1))).astype("float32") + 0.1
    return x, y


def _model(optimizer=None, **compile_kwargs):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer or keras.optimizers.Adam(1e-2), "mse", **compile_kwargs)
    return model


def _state(model):
    return (
        [np.array(ops.convert_to_numpy(v.value), copy=True) for v in model.variables],
        [
            np.array(ops.convert_to_numpy(v.value), copy=True)
            for v in model.optimizer.variables
            # The control variables that `_control` adds (not saved).
            if not getattr(v, "_kt_control", False)
        ],
    )


def _assert_same_state(before, after):
    for group_before, group_after in zip(before, after, strict=True):
        assert len(group_before) == len(group_after)
        for a, b in zip(group_before, group_after, strict=True):
            np.testing.assert_array_equal(a, b)


# --- restoration -----------------------------------------------------------


def test_restores_weights_optimizer_and_training_exactly():
    x, y = _data()
    twin_a = _model(keras.optimizers.Adam(1e-2))
    twin_b = _model(keras.optimizers.Adam(1e-2))
    twin_b.set_weights(twin_a.get_weights())
    for m in (twin_a, twin_b):  # a trained optimizer: iterations > 0, slots != 0
        m.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    before = _state(twin_a)
    cls = type(twin_a.optimizer)
    lr = float(ops.convert_to_numpy(twin_a.optimizer.learning_rate))

    result = keras_tricks.find_lr(
        twin_a, x, y, batch_size=32, start_lr=1e-4, end_lr=1.0, num_steps=12
    )
    assert len(result.lrs) > 0
    _assert_same_state(before, _state(twin_a))
    # The class stays controlled (a twin that saves and serializes as the
    # user's class); what it computes is the untouched optimizer's.
    assert isinstance(twin_a.optimizer, cls)
    assert keras.saving.serialize_keras_object(twin_a.optimizer)[
        "class_name"
    ] == keras.saving.serialize_keras_object(twin_b.optimizer)["class_name"]
    assert float(ops.convert_to_numpy(twin_a.optimizer.learning_rate)) == lr
    assert int(ops.convert_to_numpy(twin_a.optimizer.iterations)) == 3

    # Training afterwards is exactly the training of a model that never swept.
    for m in (twin_a, twin_b):
        m.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(twin_a.get_weights(), twin_b.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _wrapped(kind):
    if kind == "centralization":
        return GradientCentralization(keras.optimizers.Adam(1e-2))
    if kind == "accumulation":
        return GradientAccumulation(keras.optimizers.SGD(1e-2, momentum=0.9), steps=2)
    return GradientAccumulation(  # both, nested
        GradientCentralization(keras.optimizers.Adam(1e-2)), steps=2
    )


@pytest.mark.parametrize("kind", ["centralization", "accumulation", "nested"])
def test_sweeps_through_optimizer_wrappers_and_restores_them(kind):
    x, y = _data()
    twin_a, twin_b = _model(_wrapped(kind)), _model(_wrapped(kind))
    twin_b.set_weights(twin_a.get_weights())
    for m in (twin_a, twin_b):  # iterations, slots and accumulators are non-zero
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    before = _state(twin_a)
    cls = type(twin_a.optimizer)

    result = keras_tricks.find_lr(
        twin_a, x, y, batch_size=16, start_lr=1e-4, end_lr=1.0, num_steps=10
    )
    accumulating = kind != "centralization"
    # An accumulating wrapper applies one update (one sweep step) per two
    # batches, and every batch is a point.
    assert len(result.lrs) == (20 if accumulating else 10)
    if accumulating:
        np.testing.assert_array_equal(result.lrs[0::2], result.lrs[1::2])
    assert result.lrs[-1] == pytest.approx(1.0, rel=1e-6)
    assert np.ptp(result.losses) > 0  # the weights moved during the sweep
    _assert_same_state(before, _state(twin_a))
    # The class stays controlled (a twin that saves and serializes as the
    # user's class); what it computes is the untouched optimizer's.
    assert isinstance(twin_a.optimizer, cls)
    assert keras.saving.serialize_keras_object(twin_a.optimizer)[
        "class_name"
    ] == keras.saving.serialize_keras_object(twin_b.optimizer)["class_name"]

    for m in (twin_a, twin_b):
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(twin_a.get_weights(), twin_b.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_restores_a_plateau_reduced_own_schedule():
    x, y = _data()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model = _model(keras.optimizers.SGD(schedule))
    _control.take_control(model.optimizer, model)
    _control.set_lr_scale(model.optimizer, 0.25)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    lr_before = _control.current_lr(model.optimizer)
    keras_tricks.find_lr(
        model, x, y, batch_size=32, start_lr=1e-4, end_lr=1.0, num_steps=10
    )
    assert model.optimizer._learning_rate is schedule
    assert _control.get_lr_scale(model.optimizer) == 0.25
    assert _control.current_lr(model.optimizer) == pytest.approx(lr_before)
    assert lr_before == pytest.approx(0.1 * 0.5 ** (3 / 10) * 0.25, rel=1e-6)


def test_restore_false_hands_the_lr_back_to_later_fits():
    """Issue 14 #4: after `LRFinder(restore=False)` a plain `fit` trains at
    the optimizer's own LR, not at the sweep's end."""
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.01))
    finder = keras_tricks.callbacks.LRFinder(
        start_lr=1e-4, end_lr=10.0, num_steps=10, restore=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=32, epochs=10, callbacks=[finder], verbose=0)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.01)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(_control.current_lr(self.model.optimizer))

    model.fit(x, y, batch_size=32, epochs=1, callbacks=[Probe()], verbose=0)
    np.testing.assert_allclose(seen, 0.01, rtol=1e-6)


def test_mixed_float16_restores_and_records_finite_losses():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = _data()
    model = _model(keras.optimizers.Adam(1e-2))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = _state(model)
    result = keras_tricks.find_lr(
        model, x, y, batch_size=32, start_lr=1e-4, end_lr=1.0, num_steps=10
    )
    assert np.isfinite(result.losses).all()
    _assert_same_state(before, _state(model))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


# --- the per-batch loss ------------------------------------------------------


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


# --- data inputs ---------------------------------------------------------------


def test_repeats_arrays_and_pydataset_and_takes_an_endless_generator():
    x, y = _data(n=64)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32]

    def endless():
        while True:
            for i in range(2):
                yield x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32]

    for data, target in ((x, y), (Batches(), None), (endless(), None)):
        model = _model(keras.optimizers.SGD(1e-3))
        result = keras_tricks.find_lr(
            model,
            data,
            target,
            batch_size=32 if target is not None else None,
            start_lr=1e-4,
            end_lr=1e-2,
            num_steps=7,
        )
        assert len(result.lrs) == 7 and result.stop_reason == "completed"


@pytest.mark.backends("tensorflow")
def test_tf_data_dataset():
    import tensorflow as tf

    x, y = _data(n=64)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model = _model(keras.optimizers.SGD(1e-3))
    result = keras_tricks.find_lr(
        model, dataset, start_lr=1e-4, end_lr=1e-2, num_steps=10
    )
    assert len(result.lrs) == 10


def test_short_generator_is_a_clear_error_and_model_is_restored():
    x, y = _data(n=64)
    model = _model(keras.optimizers.SGD(1e-3))
    model.fit(x, y, batch_size=32, verbose=0)
    before = _state(model)

    def three_batches():
        for i in range(3):
            yield x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]

    with pytest.raises(ValueError, match="data ran out after 3 of the 10 points"):
        keras_tricks.find_lr(
            model, three_batches(), start_lr=1e-4, end_lr=1e-2, num_steps=10
        )
    _assert_same_state(before, _state(model))


# --- errors ---------------------------------------------------------------------


def test_clear_errors():
    x, y = _data()
    bare = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="compiled model"):
        keras_tricks.find_lr(bare, x, y)
    model = _model()
    with pytest.raises(
        ValueError, match=r"`start_lr` must be < end_lr.*start_lr=1.0, end_lr=0.1"
    ):
        keras_tricks.find_lr(model, x, y, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="`mode`"):
        LRFinder(mode="cosine")
    with pytest.raises(ValueError, match="`num_steps`"):
        LRFinder(num_steps=1)
    with pytest.raises(ValueError, match="`diverge_threshold`"):
        LRFinder(diverge_threshold=0.5)
    with pytest.raises(ValueError, match="manages the fit arguments"):
        keras_tricks.find_lr(model, x, y, epochs=3)


def test_immediate_divergence_suggests_a_lower_start_lr():
    x, y = _data(n=256)
    x = x * 100.0
    model = _model(keras.optimizers.SGD(1e-3))
    before = _state(model)
    with pytest.raises(ValueError, match="lower `start_lr`"):
        keras_tricks.find_lr(
            model, x, y, batch_size=16, start_lr=10.0, end_lr=1e4, num_steps=50
        )
    _assert_same_state(before, _state(model))


def test_a_sweep_that_starts_too_high_is_a_divergence_not_a_curve():
    # From start_lr=1000 the first update wrecks the classifier: the loss
    # jumps from ~2.3 to ~15 (confidently wrong) and stays there. The
    # warm-up points cannot set the best loss, so the running test never
    # fires; without the whole-curve test the sweep would "complete" and
    # suggest LRs of 1e8.
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.SGD(momentum=0.9), "sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    before = _state(model)
    with pytest.raises(ValueError, match="diverged at the first update"):
        keras_tricks.find_lr(model, x, y, batch_size=64, start_lr=1e3, end_lr=1e8)
    _assert_same_state(before, _state(model))


def test_diverged_at_start_needs_the_whole_curve_above_the_first_loss():
    rng = np.random.default_rng(0)
    jumped = np.concatenate([[2.3], 14.0 + rng.uniform(-1, 1, 60)])
    assert diverged_at_start(jumped, 4.0)
    assert not diverged_at_start(jumped[:20], 4.0)  # too short to tell
    # Noisy losses of a trained model whose first batch was an easy one.
    noisy = np.concatenate([[0.01], rng.exponential(0.1, 60)])
    assert not diverged_at_start(noisy, 4.0)
    # One batch back near the start is enough to rule it out.
    jumped[30] = 2.0
    assert not diverged_at_start(jumped, 4.0)


def test_a_curve_without_descent_is_flagged():
    lrs = np.geomspace(10.0, 1e6, 100)
    rng = np.random.default_rng(0)
    # The loss triples within two batches and stays there (a sweep that
    # starts too high, below the 4x that stops it): no descent.
    risen = np.concatenate([[2.4, 5.0], 7.0 + rng.uniform(-1, 1, 98)])
    result = LRFinderResult(lrs, risen, num_steps=100)
    assert not result.descended
    assert "lower `start_lr`" in result._no_descent_message()
    # A normal curve: flat, a drop, then a blow-up.
    normal = np.concatenate([np.full(40, 2.3), np.linspace(2.3, 0.5, 40), np.full(20, 9.0)])
    assert LRFinderResult(np.geomspace(1e-7, 10, 100), normal, num_steps=100).descended


# --- suggestions on synthetic curves -----------------------------------------


def _synthetic(losses, lrs=None):
    losses = np.asarray(losses, dtype="float64")
    lrs = np.geomspace(1e-6, 1.0, len(losses)) if lrs is None else lrs
    return LRFinderResult(lrs, losses, smoothed_losses=losses)


def test_minimum_is_lowest_loss_over_ten():
    lrs = np.geomspace(1e-6, 1.0, 61)  # 10 points a decade
    result = _synthetic((np.log10(lrs) + 2.0) ** 2, lrs)
    assert result.suggestion("minimum") == pytest.approx(1e-3)


def test_steep_is_the_steepest_descent_against_log_lr():
    lrs = np.geomspace(1e-6, 1.0, 61)
    result = _synthetic(-np.tanh(3.0 * (np.log10(lrs) + 3.05)), lrs)
    # The steepest forward difference straddles log10 lr = -3.05: from 1e-3.1.
    assert result.suggestion("steep") == pytest.approx(10**-3.1)


def test_valley_picks_past_the_middle_of_the_longest_decrease():
    # 40 points: skip 4 at the start, 5 at the end. Flat noise, then a strict
    # decrease on indices 10..28 (19 points), then a rise.
    losses = np.empty(40)
    losses[:10] = np.linspace(0.95, 1.0, 10)  # rising: no long decrease here
    losses[10:29] = np.linspace(1.9, 0.1, 19)
    losses[29:] = np.linspace(0.2, 3.0, 11)
    result = _synthetic(losses)
    # fastai: the valley is the `length` points before its end, 28 - 19 = 9.
    start, end = 9, 28
    section = (end - start) / 3
    assert result.suggestion_index("valley") == start + int(section) + int(section / 2)


def test_valley_anchors_the_longest_decrease_at_its_end_as_fastai_does():
    # A noisy flat start whose falling lows join the longest decreasing
    # subsequence: its first element is far to the left of the real drop.
    # fastai counts the valley back from the end by the subsequence's length
    # (20 here), not from that first element.
    skipped = np.full(4, 5.0)  # num_steps=40: the first 4 points are skipped
    sawtooth = np.where(np.arange(20) % 2 == 0, 3.0 - 0.005 * np.arange(20), 3.5)
    drop = np.linspace(2.8, 0.8, 10)
    rise = np.linspace(1.0, 4.0, 6)  # the last 5 points are dropped
    result = _synthetic(np.concatenate([skipped, sawtooth, drop, rise]))
    end, length = 4 + 29, 20  # the drop's last point; 10 lows + 10 drop points
    start = end - length
    section = length / 3
    expected = start + int(section) + int(section / 2)
    assert result.suggestion_index("valley") == expected
    # Counting from the subsequence's first element (index 4) would land at 13.
    assert expected == 22


def test_valley_of_a_curve_that_never_falls_is_its_first_usable_point():
    result = _synthetic(np.linspace(1.0, 3.0, 40))
    assert result.suggestion_index("valley") == 4  # skip = 40 // 10


def test_valley_never_wraps_round_to_the_last_point():
    # The longest decrease is the first two usable points: the index comes
    # out as -1, which fastai's `lrs[idx]` reads as the last point.
    losses = np.concatenate([np.full(4, 9.0), [2.0, 1.0], np.linspace(3.0, 8.0, 34)])
    result = _synthetic(losses)
    assert result.suggestion_index("valley") == 4


def test_the_default_suggestion_is_chain():
    lrs = np.geomspace(1e-6, 1.0, 60)
    result = _synthetic(1.5 - np.tanh(np.log10(lrs) + 3) + (lrs > 0.1) * 4, lrs)
    assert result.suggestion() == result.suggestion("chain")
    assert result.suggestion("chain") != result.suggestion("valley")
    assert result.suggestion_index() == result.suggestion_index("chain")


def test_chain_takes_the_biggest_drop_and_the_thirty_percent_point():
    losses = np.concatenate(
        [
            np.full(6, 3.0),
            np.linspace(3.0, 2.8, 6)[1:],  # a small early drop
            [2.9],
            np.linspace(2.9, 0.9, 21)[1:],  # the big drop: 2.9 -> 0.9
            np.linspace(1.0, 4.0, 10),
        ]
    )
    result = _synthetic(losses)
    # The big chain runs from index 11 (2.9) to 31 (0.9); 0.7*2.9 + 0.3*0.9
    # = 2.3 is six 0.1-steps down from 2.9.
    assert result.suggestion_index("chain") == 17


def test_cyclic_range_spans_the_biggest_drop():
    losses = np.concatenate(
        [
            np.full(6, 3.0),
            np.linspace(3.0, 2.8, 6)[1:],
            [2.9],
            np.linspace(2.9, 0.9, 21)[1:],  # the big drop: indices 11 -> 31
            np.linspace(1.0, 4.0, 10),
        ]
    )
    result = _synthetic(losses)
    base_lr, max_lr = result.cyclic_range()
    assert max_lr == result.lrs[31]  # the bottom of the drop
    # A tenth of the bottom (14 steps of 1.43x above index 17) overshoots the
    # chain suggestion: base_lr is the chain suggestion.
    assert base_lr == result.suggestion("chain") == result.lrs[17]


def test_cyclic_range_of_a_steep_drop_is_a_decade():
    # A drop of two steps: the chain point is one step (1.43x) below the
    # bottom, so max_lr / 10 is the smaller one.
    losses = np.concatenate([np.full(20, 3.0), [2.0, 1.0], np.linspace(1.5, 4.0, 18)])
    result = _synthetic(losses)
    base_lr, max_lr = result.cyclic_range()
    assert max_lr == result.lrs[21]
    assert base_lr == pytest.approx(max_lr / 10)


def test_cyclic_range_needs_a_falling_curve():
    result = _synthetic(np.linspace(1.0, 3.0, 40))
    with pytest.raises(ValueError, match="never falls"):
        result.cyclic_range()


def test_suggestions_cut_at_nan_and_reject_too_few_points():
    losses = np.concatenate([np.linspace(2.0, 0.5, 30), [np.nan] * 10])
    result = _synthetic(losses)
    assert result.suggestion_index("minimum") == 29
    with pytest.raises(ValueError, match="`method`"):
        result.suggestion("best")
    short = LRFinderResult(
        [1e-3, 1e-2], [1.0, np.inf], num_steps=100, stop_reason="diverged"
    )
    with pytest.raises(ValueError, match="lower `start_lr`"):
        short.suggestion()
    assert short.suggestions() == {}


def test_repr_is_one_line():
    lrs = np.geomspace(1e-5, 1.0, 40)
    result = _synthetic((np.log10(lrs) + 2) ** 2, lrs)
    text = repr(result)
    assert "\n" not in text and text == str(result)
    assert "points=40/40" in text and f"chain={result.suggestion():.3g}" in text


def test_plot_marks_the_suggestions():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs = np.geomspace(1e-6, 1.0, 60)
    result = _synthetic(1.5 - np.tanh(np.log10(lrs) + 3) + (lrs > 0.1) * 4, lrs)
    with pytest.raises(ValueError, match="`methods`"):
        result.plot(methods=("chain", "best"))
    ax = result.plot(methods=("valley", "steep", "minimum", "chain"))
    labels = [line.get_label() for line in ax.get_lines()]
    assert ax.get_xscale() == "log"
    assert (
        sum(
            label.startswith(("valley", "steep", "minimum", "chain"))
            for label in labels
        )
        == 4
    )
    plt.close(ax.figure)


# --- the callback -------------------------------------------------------------


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


def _fastai_slide(lrs, losses, lr_diff=15, thresh=0.005, adjust_value=1.0):
    """fastai 2.8's `slide` (fastai/callback/schedule.py), transcribed."""
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (
        abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh
    ):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


@pytest.mark.parametrize("seed", range(6))
def test_slide_equals_fastai_on_the_same_curve(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 120))
    lrs = np.geomspace(1e-6, 10.0, n)
    x = np.log10(lrs)
    raw = 2.0 - np.tanh(x + rng.uniform(1, 4)) + 0.02 * rng.normal(size=n)
    raw += np.where(x > rng.uniform(-1, 1), 3.0 * (x + 1) ** 2, 0.0)
    result = LRFinderResult(lrs, raw)  # fastai smooths with beta=0.98 too
    skip, stop = n // 10, n - 5
    expected = _fastai_slide(lrs[skip:stop], result.smoothed_losses[skip:stop])
    assert result.suggestion("slide") == expected
    assert "slide" in result.suggestions()


def test_slide_on_a_short_curve_uses_a_shorter_window():
    lrs = np.geomspace(1e-4, 1.0, 12)
    result = _synthetic(np.linspace(1.0, 0.5, 12), lrs)
    # 12 points: skip 1, drop 5: 6 left, a window of 5 (fastai: IndexError).
    assert result.suggestion_index("slide") in range(1, 7)


@pytest.mark.parametrize("k", [2, 4])
def test_repeated_lrs_count_once_in_every_rule(k):
    # Under gradient accumulation each LR is recorded once per micro-batch:
    # every rule must read the curve of distinct LRs (fastai's np.unique),
    # and the skipped warm-up is 10% of the points, not of the records.
    rng = np.random.default_rng(k)
    points = 60
    lrs = np.geomspace(1e-6, 1.0, points)
    x = np.log10(lrs)
    losses = 1.5 - np.tanh(x + 3) + np.where(x > -1, 4 * (x + 1) ** 2, 0)
    losses += 0.01 * rng.normal(size=points)
    # Within a point, the smoothed records differ a little (the EMA moves).
    repeated = np.repeat(losses, k) + np.tile(np.linspace(0, -1e-3, k), points)
    once = LRFinderResult(lrs, losses, smoothed_losses=losses, num_steps=points)
    many = LRFinderResult(
        np.repeat(lrs, k), repeated, smoothed_losses=repeated, num_steps=points
    )
    for method in ("valley", "steep", "minimum", "chain", "slide"):
        assert many.suggestion(method) == once.suggestion(method), method
        index = many.suggestion_index(method)
        assert index % k == 0  # the first record of its LR
    assert many.cyclic_range() == once.cyclic_range()
    assert many.descended == once.descended
