"""TrustRatio: the inner step's direction rescaled, equal to optax's chains."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_tricks.optimizers import (
    GradientAccumulation,
    GradientCentralization,
    TrustRatio,
)

optax = pytest.importorskip("optax")
jnp = pytest.importorskip("jax.numpy")

BACKEND = keras.backend.backend()


@keras.saving.register_keras_serializable(package="kt_test_trust_ratio")
def _one_dimensional(variable):
    return len(variable.shape) < 2


def _params():
    rng = np.random.default_rng(0)
    return [
        rng.normal(size=(4, 3)).astype("float32"),
        np.zeros(3, "float32"),
        rng.normal(size=(5,)).astype("float32"),
    ]


def _grads(steps):
    rng = np.random.default_rng(1)
    return [
        [rng.normal(size=p.shape).astype("float32") for p in _params()]
        for _ in range(steps)
    ]


def _optax_run(tx, grads):
    p = [jnp.asarray(w) for w in _params()]
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update([jnp.asarray(x) for x in g], state, p)
        p = optax.apply_updates(p, updates)
    return [np.asarray(w) for w in p]


def _keras_run(optimizer, grads):
    variables = [
        keras.Variable(w, name=n)
        for w, n in zip(_params(), ["kernel", "bias", "gamma"], strict=True)
    ]
    for g in grads:
        optimizer.apply([ops.convert_to_tensor(x) for x in g], variables)
    return [ops.convert_to_numpy(v) for v in variables]


def _close(got, expected, rtol=1e-5, atol=1e-6):
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_adamw_inside_equals_optax_lamb():
    grads = _grads(8)
    # Keras's Adam adds epsilon to sqrt(v) before the bias correction, optax
    # after it: a tiny epsilon makes the two the same.
    got = _keras_run(
        TrustRatio(keras.optimizers.AdamW(0.01, weight_decay=0.1, epsilon=1e-12)),
        grads,
    )
    _close(got, _optax_run(optax.lamb(0.01, weight_decay=0.1, eps=1e-12), grads))


def test_adam_inside_equals_keras_lamb_without_weight_decay_only():
    grads = _grads(8)
    got = _keras_run(TrustRatio(keras.optimizers.Adam(0.01, epsilon=1e-12)), grads)
    _close(got, _keras_run(keras.optimizers.Lamb(0.01, epsilon=1e-12), grads))
    # With weight decay Keras's Lamb decays outside the ratio (decoupled),
    # LAMB and TrustRatio(AdamW) inside it.
    decayed = _keras_run(
        TrustRatio(keras.optimizers.AdamW(0.01, weight_decay=0.5, epsilon=1e-12)),
        grads,
    )
    keras_lamb = _keras_run(
        keras.optimizers.Lamb(0.01, weight_decay=0.5, epsilon=1e-12), grads
    )
    assert np.abs(decayed[0] - keras_lamb[0]).max() > 1e-3


def test_sgd_momentum_inside_equals_optax_chain():
    grads = _grads(8)
    got = _keras_run(
        TrustRatio(keras.optimizers.SGD(0.5, momentum=0.9), trust_coefficient=1e-3),
        grads,
    )
    tx = optax.chain(
        optax.trace(0.9),
        optax.scale_by_trust_ratio(trust_coefficient=1e-3),
        optax.scale_by_learning_rate(0.5),
    )
    _close(got, _optax_run(tx, grads))


def test_a_schedule_still_changes_the_step():
    grads = _grads(8)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.5, 1, 0.7)
    got = _keras_run(
        TrustRatio(
            keras.optimizers.SGD(schedule), trust_coefficient=1e-2, epsilon=1e-3
        ),
        grads,
    )
    tx = optax.chain(
        optax.scale_by_trust_ratio(trust_coefficient=1e-2, eps=1e-3),
        optax.scale_by_learning_rate(lambda count: 0.5 * 0.7**count),
    )
    _close(got, _optax_run(tx, grads))
    constant = _keras_run(
        TrustRatio(keras.optimizers.SGD(0.5), trust_coefficient=1e-2, epsilon=1e-3),
        grads,
    )
    assert np.abs(constant[0] - got[0]).max() > 1e-2


def test_exclude_keeps_the_inner_step():
    grads = _grads(8)
    got = _keras_run(
        TrustRatio(keras.optimizers.SGD(0.5), exclude=["bias", "gamma"]), grads
    )
    plain = _keras_run(keras.optimizers.SGD(0.5), grads)
    adapted = _keras_run(TrustRatio(keras.optimizers.SGD(0.5)), grads)
    _close(got[1:], plain[1:])
    _close(got[:1], adapted[:1])
    assert np.abs(got[2] - adapted[2]).max() > 1e-2


def test_exclude_callable_keeps_the_inner_step():
    grads = _grads(8)
    by_name = _keras_run(
        TrustRatio(keras.optimizers.SGD(0.5), exclude=["bias", "gamma"]), grads
    )
    for exclude in (_one_dimensional, lambda v: v.name in ("bias", "gamma")):
        got = _keras_run(TrustRatio(keras.optimizers.SGD(0.5), exclude=exclude), grads)
        _close(got, by_name)
    # The same masks as optax: the ratio on the kernel only.
    tx = optax.chain(
        optax.masked(optax.scale_by_trust_ratio(), [True, False, False]),
        optax.scale_by_learning_rate(0.5),
    )
    _close(by_name, _optax_run(tx, grads))
    with pytest.raises(TypeError, match="`exclude` callable of TrustRatio"):
        _keras_run(TrustRatio(keras.optimizers.SGD(0.5), exclude=lambda v: None), grads)


# --- in a compiled train step ---------------------------------------------


def _data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = rng.normal(size=(16, 3)).astype("float32")
    return x, y


def _model(optimizer, jit_compile="auto"):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="head")])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


def _optax_fit(tx, weights, x, y, steps, batch_size):
    jax = pytest.importorskip("jax")

    def loss(p, xb, yb):
        return jnp.mean((xb @ p[0] + p[1] - yb) ** 2)

    grad = jax.jit(jax.grad(loss))
    p = [jnp.asarray(w) for w in weights]
    state = tx.init(p)
    for step in range(steps):
        start = (step * batch_size) % len(x)
        g = grad(p, x[start : start + batch_size], y[start : start + batch_size])
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
    return [np.asarray(w) for w in p]


def test_fit_equals_optax_lamb():
    x, y = _data()
    model = _model(
        TrustRatio(keras.optimizers.AdamW(0.05, weight_decay=0.1, epsilon=1e-12))
    )
    start = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    expected = _optax_fit(
        optax.lamb(0.05, weight_decay=0.1, eps=1e-12), start, x, y, 6, 8
    )
    _close(model.get_weights(), expected, rtol=1e-4, atol=1e-5)


def test_fit_with_jit_compile_equals_optax_chain():
    # SGD inside: torch.compile of an Adam step takes minutes on a shared CPU.
    x, y = _data()
    model = _model(
        TrustRatio(keras.optimizers.SGD(0.5, momentum=0.9), trust_coefficient=1e-2),
        jit_compile=True,
    )
    start = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    tx = optax.chain(
        optax.trace(0.9),
        optax.scale_by_trust_ratio(trust_coefficient=1e-2),
        optax.scale_by_learning_rate(0.5),
    )
    expected = _optax_fit(tx, start, x, y, 4, 8)
    _close(model.get_weights(), expected, rtol=1e-4, atol=1e-5)


def test_composes_with_accumulation_centralization_and_loss_scaling():
    x, y = _data()
    full = _model(TrustRatio(keras.optimizers.SGD(0.5)))
    full.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    # Two micro-batches of 8 average to the full-batch gradient.
    accumulated = _model(
        GradientAccumulation(TrustRatio(keras.optimizers.SGD(0.5)), steps=2)
    )
    accumulated.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _close(accumulated.get_weights(), full.get_weights(), rtol=1e-4, atol=1e-5)
    inside = _model(
        TrustRatio(GradientAccumulation(keras.optimizers.SGD(0.5), steps=2))
    )
    inside.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _close(inside.get_weights(), full.get_weights(), rtol=1e-4, atol=1e-5)
    # Centralizing first, then adapting (and the other order) still trains.
    for opt in (
        TrustRatio(GradientCentralization(keras.optimizers.SGD(0.5))),
        GradientCentralization(TrustRatio(keras.optimizers.SGD(0.5))),
    ):
        model = _model(opt)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        delta = model.get_weights()[0] - full.get_weights()[0]
        assert np.all(np.isfinite(delta))
    keras.config.set_dtype_policy("mixed_float16")
    mixed = _model(TrustRatio(keras.optimizers.SGD(0.5)))
    assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer)
    mixed.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    _close(mixed.get_weights(), full.get_weights(), rtol=1e-2, atol=1e-2)


def test_config_round_trip_and_saved_model_continues(tmp_path):
    opt = TrustRatio(
        keras.optimizers.AdamW(0.003),
        trust_coefficient=0.5,
        epsilon=1e-6,
        exclude=["bias"],
    )
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(opt)
    )
    assert isinstance(restored, TrustRatio)
    assert restored.get_config() == opt.get_config()
    x, y = _data()
    model = _model(TrustRatio(keras.optimizers.Adam(0.05), exclude="bias"))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, TrustRatio)
    assert int(loaded.optimizer.iterations) == 2
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _close(loaded.get_weights(), model.get_weights(), rtol=1e-6, atol=1e-7)


def test_exclude_callable_saving(tmp_path):
    x, y = _data()
    model = _model(TrustRatio(keras.optimizers.Adam(0.05), exclude=_one_dimensional))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.optimizer.exclude is _one_dimensional
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _close(loaded.get_weights(), model.get_weights(), rtol=1e-6, atol=1e-7)
    unregistered = TrustRatio(keras.optimizers.SGD(), exclude=lambda v: False)
    with pytest.raises(ValueError, match="`exclude` of TrustRatio is a callable"):
        unregistered.get_config()


def test_bad_arguments():
    sgd = keras.optimizers.SGD
    with pytest.raises(ValueError, match="Received: trust_coefficient=0"):
        TrustRatio(sgd(), trust_coefficient=0)
    with pytest.raises(ValueError, match="Received: epsilon=-1.0"):
        TrustRatio(sgd(), epsilon=-1.0)
    with pytest.raises(ValueError, match="Received: trust_coefficient=True"):
        TrustRatio(sgd(), trust_coefficient=True)
    with pytest.raises(ValueError, match="exclude="):
        TrustRatio(sgd(), exclude="(")
    with pytest.raises(ValueError, match="use_ema=True"):
        TrustRatio(sgd(use_ema=True))
    with pytest.raises(ValueError, match="Received: learning_rate=0.1"):
        TrustRatio(sgd(), learning_rate=0.1)
    with pytest.raises(TypeError, match="Received: optimizer='adam'"):
        TrustRatio("adam")
    assert TrustRatio(sgd(), trust_coefficient=np.float32(0.5)).trust_coefficient == 0.5


def test_schedule_callback_reaches_the_inner_learning_rate():
    from keras_tricks.callbacks import OneCycle
    from keras_tricks.schedules import OneCycle as OneCycleSchedule

    x, y = _data()
    model = _model(TrustRatio(keras.optimizers.SGD(0.5, momentum=0.9)))
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[OneCycle(max_lr=0.5, total_steps=4, cycle_momentum=False)],
    )
    schedule = OneCycleSchedule(max_lr=0.5, total_steps=4)
    direct = _model(TrustRatio(keras.optimizers.SGD(schedule, momentum=0.9)))
    direct.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    constant = _model(TrustRatio(keras.optimizers.SGD(0.5, momentum=0.9)))
    constant.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    # The callback's LR reaches the step through the wrapper.
    _close(model.get_weights(), direct.get_weights())
    assert np.abs(model.get_weights()[0] - constant.get_weights()[0]).max() > 1e-3


# --- TrustRatio(AdamW8bit) ---------------------------------------------------


def _numpy_trust_ratio_over(make_inner, grads, lr):
    """The reference composition, the ratio in NumPy.

    A shadow inner optimizer steps a copy of the weights set to the current
    weights before each step: its update is the inner step `delta` (its
    moments only see the gradients, so they match the wrapped one's); the
    weights then move by `delta * ||w|| / (||delta / lr||)` (1 if a norm is 0).
    """
    weights = [w.copy() for w in _params()]
    shadow = [
        keras.Variable(w, name=n)
        for w, n in zip(weights, ["kernel", "bias", "gamma"], strict=True)
    ]
    inner = make_inner()
    for g in grads:
        for var, w in zip(shadow, weights, strict=True):
            var.assign(w)
        inner.apply([ops.convert_to_tensor(x) for x in g], shadow)
        for i, var in enumerate(shadow):
            delta = ops.convert_to_numpy(var).astype("float64") - weights[i]
            w_norm = np.linalg.norm(weights[i])
            d_norm = np.linalg.norm(delta / lr)
            ratio = 1.0 if w_norm == 0 or d_norm == 0 else w_norm / d_norm
            weights[i] = (weights[i] + ratio * delta).astype("float32")
    return weights


def test_adamw8bit_inside_equals_the_reference_composition():
    from keras_tricks.optimizers import AdamW8bit

    grads = _grads(8)

    def inner():
        # The kernel (12 values) in 8 bits, 3 blocks of 4; bias and gamma fp32.
        return AdamW8bit(0.01, weight_decay=0.1, block_size=4, min_8bit_size=6)

    wrapped = TrustRatio(inner())
    got = _keras_run(wrapped, grads)
    assert any("uint8" in str(v.dtype) for v in wrapped.inner_optimizer.variables), (
        "the 8-bit path was not taken"
    )
    _close(got, _numpy_trust_ratio_over(inner, grads, 0.01), rtol=2e-5, atol=2e-6)
    # The fp32 path (min_8bit_size above every tensor) is optax's lamb: the
    # same placement of epsilon (PyTorch's) and the decay inside the
    # direction.
    fp32 = _keras_run(
        TrustRatio(AdamW8bit(0.01, weight_decay=0.1, min_8bit_size=10**6)), grads
    )
    _close(fp32, _optax_run(optax.lamb(0.01, weight_decay=0.1), grads))
    # 8-bit moments stay near the fp32 ones, but not equal to them.
    np.testing.assert_allclose(got[0], fp32[0], atol=5e-3)
    assert np.abs(got[0] - fp32[0]).max() > 0


def test_adamw8bit_inside_trains_in_fit_and_round_trips(tmp_path):
    from keras_tricks.optimizers import AdamW8bit

    x, y = _data()

    def make():
        return TrustRatio(
            AdamW8bit(0.05, weight_decay=0.1, block_size=4, min_8bit_size=6),
            exclude="bias",
        )

    model = _model(make())
    start = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    fp32 = _model(
        TrustRatio(
            AdamW8bit(0.05, weight_decay=0.1, min_8bit_size=10**6), exclude="bias"
        )
    )
    fp32.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert np.abs(model.get_weights()[0] - start[0]).max() > 1e-2
    np.testing.assert_allclose(model.get_weights()[0], fp32.get_weights()[0], atol=2e-2)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer.inner_optimizer, AdamW8bit)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _close(loaded.get_weights(), model.get_weights(), rtol=1e-6, atol=1e-7)
