"""Tests for the plateau callbacks: ReduceLROnPlateau, SmartReduceLROnPlateau,
their shared monitor base and the pure plateau rule."""

import types
import warnings

import keras
import numpy as np
import pytest

from keras_tricks import _control
from keras_tricks.callbacks import (
    PlateauRule,
    ReduceLROnPlateau,
    SmartReduceLROnPlateau,
    _monitor,
)
from keras_tricks.callbacks.reduce_lr_on_plateau import (
    log_learning_rates,
    reduce_learning_rate,
)

# --- the pure rule on synthetic traces ------------------------------------


def _noisy_plateau(n, level=0.5, sigma=1e-3, seed=0):
    rng = np.random.default_rng(seed)
    return level + sigma * rng.standard_normal(n)


def _fire_epochs(rule, trace):
    return [e for e, value in enumerate(trace) if rule.update(value)]


def _reference_rule(trace, window=16, threshold=1e-3, beta=0.98, growth=1.5):
    """The pseudo-code of the notes, literally (check at the start of epoch e)."""
    p, s, avg, fired = float(window), float("inf"), 0.0, []
    for e, loss in enumerate(trace):
        if e % p == 0:
            s = abs(s) / p
            if s <= threshold:
                fired.append(e - 1)  # the LR drops after epoch e - 1
                p *= growth
            s = 0.0
        avg = beta * avg + (1 - beta) * loss
        s += loss - avg / (1 - beta ** (e + 1))
    return fired


def test_noisy_plateau_triggers_at_the_first_check():
    assert _fire_epochs(PlateauRule(), _noisy_plateau(30)) == [15]


def test_falling_noisy_curve_does_not_trigger():
    rng = np.random.default_rng(1)
    t = np.arange(80)
    trace = 2.0 * np.exp(-t / 40) + 0.02 + 1e-3 * rng.standard_normal(80)
    rule = PlateauRule()
    assert _fire_epochs(rule, trace) == []
    # The check did run, and the statistic was far above the threshold.
    assert rule.last_statistic > 10 * rule.threshold


def test_window_sequence_16_24_36():
    rule = PlateauRule()
    fired, windows = [], []
    for e in range(220):
        if rule.update(1.0):
            fired.append(e)
            windows.append(rule.window)
    assert fired == [15, 39, 75, 129, 210]
    assert np.diff([-1] + fired).tolist() == [16, 24, 36, 54, 81]
    np.testing.assert_allclose(windows, [24, 36, 54, 81, 121.5])


def test_literal_alignment_matches_the_pseudo_code():
    trace = _noisy_plateau(300, 1.0)
    fired = _fire_epochs(PlateauRule(alignment="literal"), trace)
    assert fired == _reference_rule(trace)
    # `e % P` misaligns after P grows: the check after 16 comes at 24.
    assert fired == [15, 23, 35, 53, 80, 242]
    # After a fall the EMA (beta=0.98) lags for a long time: slow to react.
    fallen = np.concatenate([np.linspace(2, 1, 10), trace[:290]])
    slow = _fire_epochs(PlateauRule(alignment="literal"), fallen)
    assert slow == _reference_rule(fallen) and slow[0] > 100


def test_literal_alignment_divides_by_the_window_not_the_epochs_summed():
    # A plateau at epoch 16 grows the window to 24; the literal check comes
    # at epoch 24 after only 8 epochs were summed, and divides by 24 (the
    # pseudo-code's `s / P`), which here decides the plateau.
    trace = np.concatenate([np.ones(16), 1.0 + 5e-4 * np.arange(1, 9)])
    beta, avg, residual = 0.98, 0.0, 0.0
    for n, value in enumerate(trace, start=1):
        avg = beta * avg + (1 - beta) * value
        if n > 16:
            residual += value - avg / (1 - beta**n)
    assert abs(residual) / 24 <= 1e-3 < abs(residual) / 8
    rule = PlateauRule(alignment="literal")
    assert _fire_epochs(rule, trace) == [15, 23]
    assert rule.last_statistic == pytest.approx(abs(residual) / 24, rel=1e-9)


def test_a_statistic_equal_to_the_threshold_is_a_plateau():
    # A perfectly flat curve has residuals of exactly 0: `<= threshold`
    # declares the plateau even with threshold=0, as the pseudo-code does.
    rule = PlateauRule(window=2, threshold=0.0, growth=1.0)
    assert _fire_epochs(rule, np.zeros(4)) == [1, 3]
    assert rule.last_statistic == 0.0


def test_relative_threshold_is_scale_free():
    trace = _noisy_plateau(30, level=0.5, sigma=1e-3)
    assert _fire_epochs(PlateauRule(), 1000 * trace) == []
    rel = PlateauRule(threshold=2e-3, threshold_mode="rel")
    assert _fire_epochs(rel, 1000 * trace) == [15]
    assert _fire_epochs(PlateauRule(threshold=2e-3, threshold_mode="rel"), trace) == [
        15
    ]


def test_cooldown_leaves_epochs_out_of_the_next_window():
    fired = _fire_epochs(PlateauRule(cooldown=3), np.ones(60))
    assert fired == [15, 15 + 3 + 24]


def test_rule_state_round_trip_gives_the_same_decisions():
    trace = np.concatenate([np.linspace(1.1, 1, 5), _noisy_plateau(100, 1.0)])
    full = _fire_epochs(PlateauRule(beta=0.5), trace)
    first = PlateauRule(beta=0.5)
    part = _fire_epochs(first, trace[:50])
    second = PlateauRule.from_config(first.get_config())
    second.set_state(first.get_state())
    part += [50 + e for e in _fire_epochs(second, trace[50:])]
    assert part == full and full


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window": 0}, "window"),
        ({"beta": 1.0}, "beta"),
        ({"growth": 0.5}, "growth"),
        ({"threshold_mode": "x"}, "threshold_mode"),
        ({"alignment": "x"}, "window_alignment"),
        ({"cooldown": -1}, "cooldown"),
    ],
)
def test_rule_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlateauRule(**kwargs)


# --- the monitor base -----------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("accuracy", "max"),
        ("val_sparse_categorical_accuracy", "max"),
        ("auc", "max"),
        ("val_f1_score", "max"),
        ("precision_at_recall", "max"),
        ("mean_iou", "max"),
        ("my_custom_error", "min"),
        ("val_mae", "min"),
        ("rmse", "min"),
        ("dice_loss", "min"),
        ("something", None),
    ],
)
def test_direction_from_the_name(name, expected):
    assert _monitor.infer_direction(name) == expected


def _classifier():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile(
        "sgd",
        "categorical_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc"), "hinge"],
    )
    return model


def test_direction_from_the_metric_objects_and_unknown_raises():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, 8), 2)
    model = _classifier()
    model.fit(x, y, epochs=1, verbose=0)
    for monitor, op in [
        ("hinge", keras.ops.less),
        ("val_accuracy", keras.ops.greater),
        ("auc", keras.ops.greater),
        ("loss", keras.ops.less),
    ]:
        cb = ReduceLROnPlateau(monitor=monitor)
        cb.set_model(model)
        cb._set_monitor_op()
        assert cb.monitor_op is op
    cb = ReduceLROnPlateau(monitor="unknown")
    cb.set_model(model)
    with pytest.raises(ValueError, match="mode='max'"):
        cb._set_monitor_op()


def test_min_delta_absolute_and_relative():
    cb = ReduceLROnPlateau(mode="max", min_delta=0.5)
    cb._set_monitor_op()
    assert cb._is_improvement(0.75, 0)
    assert cb._is_improvement(0.5, None)
    assert not cb._is_improvement(0.5, 0)
    assert not cb._is_improvement(0.2, 0.5)
    rel = ReduceLROnPlateau(mode="min", min_delta=0.1, min_delta_mode="rel")
    rel._set_monitor_op()
    assert rel._is_improvement(899.0, 1000.0)
    assert not rel._is_improvement(901.0, 1000.0)
    assert rel._is_improvement(-1.11, -1.0)  # sign-safe: |best| scales it


def test_missing_metric_warns_once_naming_the_available_ones():
    cb = ReduceLROnPlateau(monitor="val_loss")
    cb.set_model(_linear(keras.optimizers.SGD(0.1)))
    cb.on_train_begin()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(3):
            cb.on_epoch_end(epoch, {"loss": 1.0, "accuracy": 0.5})
    mine = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(mine) == 1
    assert "Available metrics are: loss, accuracy" in str(mine[0].message)
    assert "`val_loss`" in str(mine[0].message)
    # Once per fit: a new fit warns again.
    cb.on_train_begin()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cb.on_epoch_end(0, {"loss": 1.0})
    mine = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(mine) == 1 and "`val_loss`" in str(mine[0].message)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"factor": 1.0}, "factor >= 1.0"),
        ({"factor": 0.0}, "factor"),
        ({"mode": "maximum"}, "mode"),
        ({"patience": -1}, "patience"),
        ({"min_lr": -1.0}, "min_lr"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"min_delta_mode": "pct"}, "min_delta_mode"),
        ({"monitor": ""}, "monitor"),
    ],
)
def test_reduce_lr_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReduceLROnPlateau(**kwargs)


def test_smart_rejects_bad_arguments():
    with pytest.raises(ValueError, match="not both"):
        SmartReduceLROnPlateau(min_delta=1e-3, threshold=1e-3)
    with pytest.raises(ValueError, match="factor"):
        SmartReduceLROnPlateau(factor=2.0)
    with pytest.raises(ValueError, match="window_alignment"):
        SmartReduceLROnPlateau(window_alignment="modulo")


# --- ReduceLROnPlateau, the behaviours Keras's own tests check -------------


def _keras_case(optimizer=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, 10), 2)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(5), keras.layers.Dense(2)]
    )
    model.compile(loss="mse", optimizer=optimizer or keras.optimizers.Adam(0.1))
    return model, x, y


def _lr_value(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_keras_behaviours_reduce_min_lr_cooldown():
    for kwargs, epochs, expected in [
        ({"min_delta": 100}, 2, 0.01),  # reduce on the patience-th bad epoch
        ({"min_delta": 10, "min_lr": 0.005}, 4, 0.005),  # honours min_lr
        ({"min_delta": 100, "cooldown": 2}, 4, 0.001),  # every other epoch
    ]:
        model, x, y = _keras_case()
        cb = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", **kwargs)
        history = model.fit(
            x, y, validation_data=(x, y), callbacks=[cb], epochs=epochs, verbose=0
        )
        np.testing.assert_allclose(_lr_value(model), expected, rtol=1e-6)
        # The assigned LR is the optimizer's variable, as with Keras.
        assert not _control.has_schedule(model.optimizer)
        np.testing.assert_allclose(history.history["learning_rate"][0], 0.1, rtol=1e-6)


def test_matches_keras_decisions_on_a_trace():
    trace = [1.0, 0.9, 0.91, 0.92, 0.8, 0.8, 0.81, 0.82, 0.83, 0.7, 0.7, 0.7, 0.7]
    lrs = {}
    for cls in (keras.callbacks.ReduceLROnPlateau, ReduceLROnPlateau):
        model, _, _ = _keras_case(keras.optimizers.SGD(1.0))
        cb = cls(monitor="loss", patience=2, factor=0.5, cooldown=1, min_delta=0.001)
        cb.set_model(model)
        cb.on_train_begin()
        seen = []
        for epoch, value in enumerate(trace):
            logs = {"loss": value}
            cb.on_epoch_end(epoch, logs)
            seen.append((logs["learning_rate"], _lr_value(model)))
        lrs[cls] = seen
    assert lrs[ReduceLROnPlateau] == lrs[keras.callbacks.ReduceLROnPlateau]
    assert lrs[ReduceLROnPlateau][-1][1] < 1.0


def test_verbose_message(capsys):
    model, x, y = _keras_case()
    cb = ReduceLROnPlateau(
        patience=1, factor=0.1, monitor="val_loss", min_delta=100, verbose=1
    )
    model.fit(x, y, validation_data=(x, y), callbacks=[cb], epochs=2, verbose=0)
    assert "ReduceLROnPlateau reducing learning rate to 0.01" in capsys.readouterr().out


def test_state_reset_across_fit_calls():
    model, _, _ = _keras_case()
    cb = ReduceLROnPlateau(
        patience=1, monitor="loss", min_delta=0, cooldown=2, smoothing=0.5
    )
    cb.set_model(model)
    cb.on_train_begin()
    cb.best, cb.wait, cb.cooldown_counter = 0.5, 3, 2
    cb.on_epoch_end(0, {"loss": 1.0})
    cb.on_train_begin()
    assert cb.best is None and cb.wait == 0 and cb.cooldown_counter == 0
    assert cb._ema_count == 0


def test_a_nan_epoch_is_a_bad_epoch_and_stays_out_of_the_ema():
    # A NaN is counted as one bad epoch, never as the best value, and it is
    # kept out of the EMA: a falling curve around it is never reduced.
    for trace, smoothing in (
        ([float("nan"), 1.0, 0.9, 0.8, 0.7, 0.6], 0.0),
        ([1.0, float("nan"), 0.9, 0.8, 0.7, 0.6], 0.5),
    ):
        model, _, _ = _keras_case(keras.optimizers.SGD(1.0))
        cb = ReduceLROnPlateau(monitor="loss", patience=2, smoothing=smoothing)
        cb.set_model(model)
        cb.on_train_begin()
        for epoch, value in enumerate(trace):
            cb.on_epoch_end(epoch, {"loss": value})
        assert _lr_value(model) == 1.0, trace
        assert np.isfinite(cb.best) and cb.wait == 0


def test_smoothing_ignores_a_single_spike():
    trace = [1.0, 0.9, 0.8, 0.7, 2.0, 0.6]
    raw, smooth = (
        ReduceLROnPlateau(monitor="loss"),
        ReduceLROnPlateau(monitor="loss", smoothing=0.5),
    )
    for cb in (raw, smooth):
        cb._set_monitor_op()
    decisions = {}
    for name, cb in (("raw", raw), ("smooth", smooth)):
        values = [cb._smoothed(v) for v in trace]
        decisions[name] = values
    # Bias-corrected EMA: the first smoothed value is the first raw value.
    assert decisions["smooth"][0] == 1.0
    np.testing.assert_allclose(decisions["smooth"][1], (0.5 * 1.0 + 0.9) / 1.5)
    assert max(decisions["smooth"]) < 2.0


# --- the reduced LR really reaches the compiled step ----------------------


def _linear(optimizer):
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    model.compile(optimizer, "mse")
    return model


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.begin, self.end = [], []

    def _kernel(self):
        return np.array(
            keras.ops.convert_to_numpy(self.model.layers[0].kernel), "float64"
        )

    def on_epoch_begin(self, epoch, logs=None):
        self.begin.append(self._kernel())

    def on_epoch_end(self, epoch, logs=None):
        self.end.append(self._kernel())


def _lr_used(x, y, recorder, epoch):
    """The LR of the single SGD step of `epoch`, from the weights it moved."""
    w = recorder.begin[epoch]
    grad = 2.0 * x.T.astype("float64") @ (x @ w - y) / len(x)
    delta = recorder.end[epoch] - w
    return float(-(delta.ravel() @ grad.ravel()) / (grad.ravel() @ grad.ravel()))


def _data():
    rng = np.random.RandomState(0)
    x = (0.5 * rng.randn(8, 3)).astype("float32")
    y = (0.5 * rng.randn(8, 1)).astype("float32")
    return x, y


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_reduced_lr_reaches_the_step_without_schedule(policy):
    keras.config.set_dtype_policy(policy)
    x, y = _data()
    model = _linear(keras.optimizers.SGD(0.1))
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    recorder = _Recorder()
    cb = ReduceLROnPlateau(monitor="loss", patience=1, factor=0.1, min_delta=100)
    model.fit(x, y, batch_size=8, epochs=3, callbacks=[cb, recorder], verbose=0)
    rtol = 1e-4 if policy == "float32" else 2e-2
    np.testing.assert_allclose(_lr_used(x, y, recorder, 1), 0.1, rtol=rtol)
    np.testing.assert_allclose(_lr_used(x, y, recorder, 2), 0.01, rtol=rtol)
    # Keras's way: the optimizer's own LR variable holds the new value
    # (reduced again at the end of epoch 2: patience=1 and no improvement).
    base = _control.base_optimizers(model.optimizer)[0]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(base._learning_rate), 0.001, rtol=1e-6
    )


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_reduced_lr_scales_a_schedule_in_the_step(policy):
    keras.config.set_dtype_policy(policy)
    x, y = _data()
    schedule = keras.optimizers.schedules.PolynomialDecay(0.1, decay_steps=10)
    model = _linear(keras.optimizers.SGD(schedule))
    recorder = _Recorder()
    cb = ReduceLROnPlateau(monitor="loss", patience=1, factor=0.1, min_delta=100)
    history = model.fit(
        x, y, batch_size=8, epochs=3, callbacks=[cb, recorder], verbose=0
    )  # Keras's own callback raises TypeError here.
    rtol = 1e-4 if policy == "float32" else 2e-2
    step_lr = [float(schedule(step)) for step in range(3)]
    np.testing.assert_allclose(_lr_used(x, y, recorder, 1), step_lr[1], rtol=rtol)
    np.testing.assert_allclose(_lr_used(x, y, recorder, 2), 0.1 * step_lr[2], rtol=rtol)
    assert _control.get_lr_scale(model.optimizer) == pytest.approx(0.01)
    # Logged at each epoch end, before that epoch's reduction (as Keras).
    expected = [float(schedule(1)), float(schedule(2)), 0.1 * float(schedule(3))]
    np.testing.assert_allclose(history.history["learning_rate"], expected, rtol=1e-5)


def test_min_lr_bounds_a_scaled_schedule():
    model = _linear(
        keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5))
    )
    model.optimizer.build(model.trainable_variables)
    reduce_learning_rate(model, 0.1, 0.05)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.05)
    assert reduce_learning_rate(model, 0.1, 0.05) == []


def test_several_base_optimizers_are_reduced():
    sgd, adam = (
        keras.optimizers.SGD(0.2, name="sgd"),
        keras.optimizers.Adam(0.01, name="adam"),
    )
    multi = types.SimpleNamespace(optimizers=[sgd, adam], name="multi")
    model = types.SimpleNamespace(optimizer=multi, train_function=None)
    changed = reduce_learning_rate(model, 0.5, 0.0)
    assert [opt.name for opt, _ in changed] == ["sgd", "adam"]
    np.testing.assert_allclose(
        [_lr_value(types.SimpleNamespace(optimizer=o)) for o in (sgd, adam)],
        [0.1, 0.005],
        rtol=1e-6,
    )
    logs = {}
    log_learning_rates(model, logs)
    assert set(logs) == {"learning_rate_sgd", "learning_rate_adam"}
    # With a schedule on one of them, each is reduced where its LR lives:
    # the schedule's scale, the other's variable.
    sgd2 = keras.optimizers.SGD(
        keras.optimizers.schedules.ExponentialDecay(0.2, 10, 0.9)
    )
    model.optimizer = types.SimpleNamespace(optimizers=[sgd2, adam])
    reduce_learning_rate(model, 0.5, 0.0)
    assert _control.get_lr_scale(sgd2) == 0.5
    assert _control.current_lr(adam) == pytest.approx(0.0025)


# --- SmartReduceLROnPlateau -----------------------------------------------


def test_smart_callback_follows_the_rule_on_synthetic_logs():
    model = _linear(keras.optimizers.SGD(0.4))
    cb = SmartReduceLROnPlateau(patience=4)
    cb.set_model(model)
    cb.on_train_begin()
    trace = _noisy_plateau(36, 1.0)
    lrs = []
    for epoch, value in enumerate(trace):
        logs = {"loss": value}
        cb.on_epoch_end(epoch, logs)
        lrs.append(_lr_value(model))
    expected = _fire_epochs(PlateauRule(window=4), trace)
    assert [e for e, _ in cb.reductions] == expected and expected
    assert lrs[-1] == pytest.approx(0.4 * 0.5 ** len(expected))


def test_smart_accepts_keras_arguments_and_respects_min_lr():
    cb = SmartReduceLROnPlateau(
        monitor="val_loss",
        factor=0.1,
        patience=2,
        verbose=0,
        mode="min",
        min_delta=1e-2,
        cooldown=0,
        min_lr=0.05,
    )
    assert cb.threshold == 1e-2 and cb.window == 2
    model = _linear(keras.optimizers.SGD(0.1))
    cb.set_model(model)
    cb.on_train_begin()
    for epoch in range(12):
        cb.on_epoch_end(epoch, {"val_loss": 1.0})
    assert _lr_value(model) == pytest.approx(0.05)
    assert len(cb.reductions) == 1  # later plateaus find the LR at min_lr


def test_smart_on_real_training_digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x[:512] / 16.0).astype("float32")
    y = y[:512].copy()
    # 40% noisy labels: the training loss of a linear model reaches its floor
    # within a few epochs and then only wobbles (a real plateau).
    rng = np.random.default_rng(0)
    flip = rng.random(len(y)) < 0.4
    y[flip] = rng.integers(0, 10, flip.sum())
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    kwargs = {"patience": 4, "beta": 0.5, "threshold": 0.03, "threshold_mode": "rel"}
    cb = SmartReduceLROnPlateau(**kwargs)
    history = model.fit(x, y, batch_size=64, epochs=20, callbacks=[cb], verbose=0)
    losses = history.history["loss"]
    lrs = history.history["learning_rate"]
    # The callback decided exactly as the pure rule does on the same losses.
    rule = PlateauRule(window=4, beta=0.5, threshold=0.03, threshold_mode="rel")
    expected = _fire_epochs(rule, losses)
    assert [e for e, _ in cb.reductions] == expected
    assert expected, "the training loss flattened: the rule must have fired"
    # ...only once the loss had flattened, and each time the LR halved.
    assert expected[0] >= 7
    for epoch in expected:
        if epoch + 1 < len(lrs):
            assert lrs[epoch + 1] == pytest.approx(0.5 * lrs[epoch])
    assert lrs[-1] < lrs[0]


def test_smart_serialization_round_trip():
    cb = SmartReduceLROnPlateau(
        patience=8,
        threshold=0.01,
        threshold_mode="rel",
        beta=0.9,
        growth=2.0,
        window_alignment="literal",
    )
    config = keras.saving.serialize_keras_object(cb)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is SmartReduceLROnPlateau
    assert clone.get_config() == cb.get_config()


def test_reduce_lr_serialization_round_trip():
    cb = ReduceLROnPlateau(
        monitor="loss",
        factor=0.5,
        patience=3,
        cooldown=1,
        min_lr=1e-5,
        min_delta_mode="rel",
        smoothing=0.3,
    )
    config = keras.saving.serialize_keras_object(cb)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is ReduceLROnPlateau
    assert clone.get_config() == cb.get_config()


def test_smart_state_reset_across_fit_calls():
    model = _linear(keras.optimizers.SGD(0.4))
    cb = SmartReduceLROnPlateau(patience=4)
    cb.set_model(model)
    cb.on_train_begin()
    for epoch in range(8):
        cb.on_epoch_end(epoch, {"loss": 1.0})
    assert cb.reductions and cb.window == 6 and cb.rule.epochs == 8
    cb.on_train_begin()
    assert cb.reductions == [] and cb.window == 4 and cb.rule.epochs == 0
    assert cb.rule.residual_sum == 0.0 and cb.rule.avg == 0.0
