"""LARS: step by step equal to `optax.lars`, on every backend."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_tricks.optimizers import LARS

optax = pytest.importorskip("optax")
jnp = pytest.importorskip("jax.numpy")
jax = pytest.importorskip("jax")

BACKEND = keras.backend.backend()


@keras.saving.register_keras_serializable(package="kt_test_lars")
def _one_dimensional(variable):
    """Biases and normalization parameters: what LARS usually leaves out."""
    return len(variable.shape) < 2


def _params():
    rng = np.random.default_rng(0)
    return [
        rng.normal(size=(4, 3)).astype("float32"),
        np.zeros(3, "float32"),  # a fresh bias: trust ratio falls back to 1
        rng.normal(size=(5,)).astype("float32"),
    ]


def _grads(steps):
    rng = np.random.default_rng(1)
    return [
        [rng.normal(size=p.shape).astype("float32") for p in _params()]
        for _ in range(steps)
    ]


def _optax_run(tx, params, grads):
    p = [jnp.asarray(w) for w in params]
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update([jnp.asarray(x) for x in g], state, p)
        p = optax.apply_updates(p, updates)
    return [np.asarray(w) for w in p]


def _keras_run(optimizer, params, grads):
    variables = [
        keras.Variable(w, name=n)
        for w, n in zip(params, ["kernel", "bias", "gamma"], strict=True)
    ]
    for g in grads:
        optimizer.apply([ops.convert_to_tensor(x) for x in g], variables)
    return [ops.convert_to_numpy(v) for v in variables]


SETTINGS = [
    {},
    {"weight_decay": 1e-2},
    {"nesterov": True},
    {"momentum": 0.0},
    {
        "weight_decay": 5e-3,
        "nesterov": True,
        "trust_coefficient": 2e-2,
        "epsilon": 1e-3,
    },
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s) or "default")
def test_equals_optax_lars_step_by_step(settings):
    params, grads = _params(), _grads(10)
    optax_settings = dict(settings)
    if "epsilon" in optax_settings:
        optax_settings["eps"] = optax_settings.pop("epsilon")
    expected = _optax_run(optax.lars(0.5, **optax_settings), params, grads)
    got = _keras_run(LARS(0.5, **settings), params, grads)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The trust ratio really acts: plain momentum SGD ends elsewhere.
    plain = _optax_run(
        optax.sgd(
            0.5,
            momentum=settings.get("momentum", 0.9) or None,
            nesterov=settings.get("nesterov", False),
        ),
        params,
        grads,
    )
    assert np.abs(plain[0] - got[0]).max() > 1e-2


def test_exclude_equals_optax_with_both_masks():
    params, grads = _params(), _grads(8)
    mask = [True, False, False]  # kernel adapted and decayed; bias, gamma not
    expected = _optax_run(
        optax.lars(
            0.5, weight_decay=1e-2, weight_decay_mask=mask, trust_ratio_mask=mask
        ),
        params,
        grads,
    )
    got = _keras_run(
        LARS(0.5, weight_decay=1e-2, exclude=["bias", "^gam"]), params, grads
    )
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    unmasked = _optax_run(optax.lars(0.5, weight_decay=1e-2), params, grads)
    assert np.abs(unmasked[2] - got[2]).max() > 1e-2


def test_exclude_callable_equals_optax_with_both_masks():
    params, grads = _params(), _grads(8)
    mask = [True, False, False]
    expected = _optax_run(
        optax.lars(
            0.5, weight_decay=1e-2, weight_decay_mask=mask, trust_ratio_mask=mask
        ),
        params,
        grads,
    )
    for exclude in (_one_dimensional, lambda v: len(v.shape) < 2):
        got = _keras_run(LARS(0.5, weight_decay=1e-2, exclude=exclude), params, grads)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The callable really decides: excluding nothing is plain optax.lars.
    got = _keras_run(
        LARS(0.5, weight_decay=1e-2, exclude=lambda v: False), params, grads
    )
    unmasked = _optax_run(optax.lars(0.5, weight_decay=1e-2), params, grads)
    for a, b in zip(got, unmasked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_exclude_callable_must_return_a_bool():
    params, grads = _params(), _grads(1)
    with pytest.raises(TypeError, match="`exclude` callable of LARS must return"):
        _keras_run(LARS(0.5, exclude=lambda v: ops.ones(())), params, grads)


def test_keras_exclude_from_weight_decay_excludes_decay_only():
    params, grads = _params(), _grads(10)
    mask = [True, True, False]
    expected = _optax_run(
        optax.lars(0.5, weight_decay=1e-1, weight_decay_mask=mask), params, grads
    )
    opt = LARS(0.5, weight_decay=1e-1)
    opt.exclude_from_weight_decay(var_names=["gamma"])
    got = _keras_run(opt, params, grads)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- in a compiled train step ---------------------------------------------


def _data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = rng.normal(size=(16, 3)).astype("float32")
    return x, y


def _model(optimizer, jit_compile="auto"):
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, bias_initializer="zeros", name="head"),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


def _optax_fit(tx, weights, x, y, steps, batch_size):
    """Full-data MSE training of the same Dense layer, with optax."""

    def loss(p, xb, yb):
        return jnp.mean((xb @ p[0] + p[1] - yb) ** 2)

    grad = jax.jit(jax.grad(loss))
    p = [jnp.asarray(w) for w in weights]
    state = tx.init(p)
    n = len(x)
    for step in range(steps):
        start = (step * batch_size) % n
        g = grad(p, x[start : start + batch_size], y[start : start + batch_size])
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
    return [np.asarray(w) for w in p]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_equals_optax(jit_compile):
    x, y = _data()
    model = _model(
        LARS(2.0, weight_decay=1e-3, nesterov=True, exclude="bias"), jit_compile
    )
    start = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    mask = [True, False]
    tx = optax.lars(
        2.0,
        weight_decay=1e-3,
        nesterov=True,
        weight_decay_mask=mask,
        trust_ratio_mask=mask,
    )
    expected = _optax_fit(tx, start, x, y, steps=6, batch_size=8)
    for a, b in zip(model.get_weights(), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _MomentumFromStep(LARS):
    """LARS whose momentum is computed from the step, as a control core does."""

    @property
    def momentum(self):
        return ops.where(ops.less(self.iterations, 2), 0.9, 0.3)

    @momentum.setter
    def momentum(self, value):
        pass


def test_momentum_computed_in_the_compiled_step_is_used():
    x, y = _data()
    model = _model(_MomentumFromStep(1.0))
    start = model.get_weights()
    model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)
    # optax's trace with a momentum that changes: chain by hand.
    weights = [jnp.asarray(w) for w in start]
    trace = [jnp.zeros_like(w) for w in weights]
    ratio_tx = optax.scale_by_trust_ratio(trust_coefficient=1e-3)

    def loss(p):
        return jnp.mean((x @ p[0] + p[1] - y) ** 2)

    for step in range(4):
        g = jax.grad(loss)(weights)
        u, _ = ratio_tx.update(g, ratio_tx.init(weights), weights)
        mom = 0.9 if step < 2 else 0.3
        trace = [mom * t - 1.0 * ui for t, ui in zip(trace, u, strict=True)]
        weights = [w + t for w, t in zip(weights, trace, strict=True)]
    for a, b in zip(model.get_weights(), weights, strict=True):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)


def test_one_cycle_momentum_cycling_reaches_lars():
    from keras_tricks.callbacks import OneCycle

    x, y = _data()
    model = _model(LARS(1.0))
    callback = OneCycle(max_lr=1.0, total_steps=4, base_momentum=0.5, max_momentum=0.9)
    history = model.fit(
        x, y, batch_size=16, epochs=4, shuffle=False, verbose=0, callbacks=[callback]
    )
    momenta = history.history["momentum"]
    assert max(momenta) - min(momenta) > 0.1


def test_schedule_callback_drives_lars():
    from keras_tricks.callbacks import OneCycle
    from keras_tricks.schedules import OneCycle as OneCycleSchedule

    x, y = _data()
    model = _model(LARS(1.0))
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[OneCycle(max_lr=3.0, total_steps=4, cycle_momentum=False)],
    )
    direct = _model(LARS(OneCycleSchedule(max_lr=3.0, total_steps=4)))
    direct.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), direct.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    constant = _model(LARS(1.0))
    constant.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert np.abs(constant.get_weights()[0] - model.get_weights()[0]).max() > 1e-4


def test_config_round_trip_and_saved_model_continues(tmp_path):
    opt = LARS(
        0.3,
        momentum=0.8,
        weight_decay=1e-4,
        trust_coefficient=2e-3,
        epsilon=1e-9,
        nesterov=True,
        exclude=["bias"],
        clipnorm=1.0,
    )
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(opt)
    )
    assert isinstance(restored, LARS)
    assert restored.get_config() == opt.get_config()
    x, y = _data()
    model = _model(LARS(2.0, weight_decay=1e-3, exclude="bias"))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, LARS)
    assert loaded.optimizer.exclude == ["bias"]
    assert int(loaded.optimizer.iterations) == 2
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_registered_exclude_callable_round_trips_through_keras_file(tmp_path):
    opt = LARS(0.3, weight_decay=1e-4, exclude=_one_dimensional)
    config = opt.get_config()
    assert config["exclude"]["config"] == "kt_test_lars>_one_dimensional"
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(opt)
    )
    assert restored.exclude is _one_dimensional
    x, y = _data()
    model = _model(LARS(2.0, weight_decay=1e-3, exclude=_one_dimensional))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.optimizer.exclude is _one_dimensional
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _local_exclude(variable):
    return "bias" in variable.path


@pytest.mark.parametrize("exclude", [lambda v: True, _local_exclude])
def test_unregistered_exclude_callable_cannot_be_saved(tmp_path, exclude):
    opt = LARS(0.3, exclude=exclude)
    message = r"`exclude` of LARS is a callable .* not registered.*register_keras"
    with pytest.raises(ValueError, match=message):
        opt.get_config()
    x, y = _data()
    model = _model(LARS(2.0, exclude=exclude))
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    with pytest.raises(ValueError, match=message):
        model.save(os.path.join(tmp_path, "m.keras"))


def test_numpy_scalars_are_accepted():
    opt = LARS(
        np.float32(0.1),
        momentum=np.float64(0.9),
        weight_decay=np.float32(1e-4),
        trust_coefficient=np.float32(1e-3),
        epsilon=np.int64(0),
    )
    assert opt.momentum == pytest.approx(0.9)
    assert isinstance(opt.get_config()["weight_decay"], float)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"momentum": 1.0}, r"`momentum` of LARS must be a number in \[0.0, 1.0\)"),
        ({"momentum": True}, "Received: momentum=True"),
        ({"weight_decay": -1.0}, "Received: weight_decay=-1.0"),
        (
            {"trust_coefficient": 0.0},
            "`trust_coefficient` of LARS must be a number > 0",
        ),
        ({"epsilon": float("nan")}, "Received: epsilon=nan"),
        ({"nesterov": 1}, "Received: nesterov=1"),
        ({"exclude": "("}, "Received: exclude="),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LARS(**kwargs)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise RuntimeError("interrupted")


def test_plateau_callback_and_backup_and_restore(tmp_path):
    from keras_tricks.callbacks import BackupAndRestore, ReduceLROnPlateau

    x, y = _data()

    def plateau():
        # Never "improves": halves the LR after every epoch but the first.
        return ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)

    def fit(model, callbacks, epochs=3):
        return model.fit(
            x,
            y,
            batch_size=8,
            epochs=epochs,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )

    straight = _model(LARS(2.0, weight_decay=1e-3))
    history = fit(straight, [plateau()])
    np.testing.assert_allclose(history.history["learning_rate"], [2.0, 2.0, 1.0])
    constant = _model(LARS(2.0, weight_decay=1e-3))
    fit(constant, [])
    assert np.abs(constant.get_weights()[0] - straight.get_weights()[0]).max() > 1e-4

    backup_dir = str(tmp_path / "backup")
    first = _model(LARS(2.0, weight_decay=1e-3))
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(first, [BackupAndRestore(backup_dir), plateau(), _Interrupt()])
    resumed = _model(LARS(2.0, weight_decay=1e-3))
    fit(resumed, [BackupAndRestore(backup_dir), plateau()])
    for a, b in zip(resumed.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
