"""Tests for keras_tricks._control: steering LR and momentum inside the step."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_tricks import _control


def _data():
    rng = np.random.RandomState(0)
    x = rng.randn(8, 3).astype("float32")
    y = rng.randn(8, 1).astype("float32")
    return x, y


def _model(optimizer, jit_compile="auto"):
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(1, kernel_initializer="ones", use_bias=False),
        ]
    )
    model.compile(optimizer, "mse", jit_compile=jit_compile)
    return model


def _reference(x, y, steps, lr_fn, mom_fn, kind):
    """Full-batch MSE training of a bias-free Dense(1), in numpy."""
    w = np.ones((3, 1), "float64")
    buf = np.zeros_like(w)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in range(steps):
        g = 2 * x.T @ (x @ w - y) / len(x)
        lr, mom = lr_fn(t), mom_fn(t)
        if kind == "sgd":
            buf = mom * buf - lr * g
            w = w + buf
        else:
            m = mom * m + (1 - mom) * g
            v = 0.999 * v + 0.001 * g * g
            alpha = lr * np.sqrt(1 - 0.999 ** (t + 1)) / (1 - mom ** (t + 1))
            w = w - alpha * m / (np.sqrt(v) + 1e-7)
    return w


def _piecewise():
    return keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.05, 0.01])


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_schedule_and_momentum_reach_the_compiled_step(kind, jit_compile):
    x, y = _data()
    opt = (
        keras.optimizers.SGD(0.1, momentum=0.9)
        if kind == "sgd"
        else keras.optimizers.Adam(0.1)
    )
    if keras.backend.backend() == "torch" and jit_compile:
        pytest.skip("jit_compile on torch uses torch.compile; covered eagerly")
    model = _model(opt, jit_compile=jit_compile)
    _control.set_schedule(model.optimizer, _piecewise())
    _control.set_momentum_fn(
        model.optimizer, lambda s: 0.5 + 0.1 * ops.cast(s, "float32")
    )
    _control.refresh(model)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
    expected = _reference(
        x, y, 3, lambda t: 0.05 if t <= 1 else 0.01, lambda t: 0.5 + 0.1 * t, kind
    )
    got = ops.convert_to_numpy(model.layers[0].kernel)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)
    # Without the momentum function the result would differ: the trick is live.
    plain = _reference(x, y, 3, lambda t: 0.05 if t <= 1 else 0.01, lambda t: 0.9, kind)
    assert np.abs(plain - expected).max() > 1e-3
    assert _control.current_lr(model.optimizer) == pytest.approx(0.01)
    assert _control.current_momentum(model.optimizer) == pytest.approx(0.8)


def test_controlled_optimizer_keeps_class_name_config_and_variables(tmp_path):
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    n_vars = len(model.optimizer.variables)
    _control.set_schedule(model.optimizer, _piecewise())
    _control.set_momentum_fn(model.optimizer, lambda s: ops.cast(0.7, "float32"))
    _control.refresh(model)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    opt = model.optimizer
    assert isinstance(opt, keras.optimizers.SGD)
    assert type(opt).__name__ == "SGD"
    assert len(opt.variables) == n_vars
    config = opt.get_config()
    assert config["momentum"] == 0.9
    assert config["learning_rate"] == pytest.approx(0.1)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    # Reloaded as the user's class (torch dispatches SGD to a backend
    # subclass), not as the controlled twin.
    assert isinstance(reloaded.optimizer, keras.optimizers.SGD)
    assert not getattr(type(reloaded.optimizer), "_kt_controlled", False)
    assert int(ops.convert_to_numpy(reloaded.optimizer.iterations)) == 4
    for a, b in zip(reloaded.optimizer.variables, opt.variables):
        np.testing.assert_allclose(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), rtol=1e-6
        )


def test_scale_multiplies_float_lr_and_schedule():
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.1))
    _control.set_lr_scale(model.optimizer, 0.5)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.05)
    assert not _control.has_schedule(model.optimizer)
    _control.set_schedule(model.optimizer, _piecewise())
    assert _control.has_schedule(model.optimizer)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.025)
    _control.refresh(model)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    expected = _reference(
        x, y, 2, lambda t: 0.5 * (0.05 if t <= 1 else 0.01), lambda t: 0.0, "sgd"
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.layers[0].kernel), expected, rtol=2e-5
    )
    with pytest.raises(ValueError, match="positive"):
        _control.set_lr_scale(model.optimizer, 0.0)


def test_reaches_through_loss_scale_optimizer():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    bases = _control.base_optimizers(model.optimizer)
    assert len(bases) == 1 and isinstance(bases[0], keras.optimizers.SGD)
    _control.set_schedule(model.optimizer, _piecewise())
    _control.refresh(model)
    model.fit(x, y, batch_size=8, epochs=8, verbose=0)
    # Dynamic loss scaling skips the first overflowing steps; the schedule
    # follows the inner optimizer's real updates.
    updates = int(ops.convert_to_numpy(bases[0].iterations))
    assert updates >= 2
    assert _control.current_lr(model.optimizer) == pytest.approx(0.01)


def test_sgd_without_momentum_cannot_cycle_momentum():
    model = _model(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=r"SGD\(momentum>0\)"):
        _control.set_momentum_fn(model.optimizer, lambda s: 0.9)


def test_optimizer_without_momentum_gets_clear_error():
    model = _model(keras.optimizers.Adagrad(0.1))
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        _control.set_momentum_fn(model.optimizer, lambda s: 0.9)


def test_builtin_gradient_accumulation_is_detected():
    opt = keras.optimizers.SGD(0.1, gradient_accumulation_steps=4)
    assert _control.accumulation_steps(opt) == (4, "builtin")
    assert _control.accumulation_steps(keras.optimizers.SGD(0.1)) == (1, None)


def test_step_divisor_feeds_updates_to_the_schedule():
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
    sched = keras.optimizers.schedules.PiecewiseConstantDecay([0], [0.05, 0.01])
    _control.set_schedule(model.optimizer, sched, step_divisor=2)
    _control.refresh(model)
    # 2 micro-batches of 4 = one real update, made with the LR of update 0.
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    expected = _reference(x, y, 1, lambda t: 0.05, lambda t: 0.0, "sgd")
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.layers[0].kernel), expected, rtol=2e-5
    )


def test_no_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="Compile the model"):
        _control.take_control(None)


@pytest.mark.parametrize("accumulate", [None, 2])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_schedule_and_momentum_are_evaluated_once_per_update(kind, accumulate):
    # Keras reads the momentum (`beta_1` three times a variable on PyTorch's
    # Adam) and the LR several times per update; `_control` evaluates each
    # once, at the top of `apply`. Eager PyTorch calls the functions every
    # update, TensorFlow and JAX once per trace: the counts must match.
    calls = {"lr": 0, "momentum": 0}

    class Counting(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            calls["lr"] += 1
            return ops.add(ops.multiply(ops.cast(step, "float32"), 0.0), 0.01)

    def momentum(step):
        calls["momentum"] += 1
        return ops.add(ops.multiply(ops.cast(step, "float32"), 0.0), 0.9)

    # With Keras's `gradient_accumulation_steps` the reads happen inside a
    # conditional branch of `apply` (`ops.cond`).
    opt = (
        keras.optimizers.SGD(0.1, momentum=0.5, gradient_accumulation_steps=accumulate)
        if kind == "sgd"
        else keras.optimizers.Adam(
            0.1, beta_1=0.5, gradient_accumulation_steps=accumulate
        )
    )
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)]
    )
    model.compile(opt, "mse")
    x, y = _data()
    _control.set_schedule(model.optimizer, Counting())
    _control.set_momentum_fn(model.optimizer, momentum)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert calls["lr"] >= 1
    assert calls["momentum"] == calls["lr"]
    if keras.backend.backend() == "torch":
        assert calls["lr"] == 2  # two calls of `apply`, eagerly
    # Outside `apply` the values are computed on demand.
    before = calls["momentum"]
    name = _control.momentum_attribute(model.optimizer)
    assert float(ops.convert_to_numpy(getattr(model.optimizer, name))) == (
        pytest.approx(0.9)
    )
    assert calls["momentum"] == before + 1
