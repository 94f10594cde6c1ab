"""GradientAccumulation: k micro-batches of b samples == one batch of k*b."""

import os

import keras
import numpy as np
import pytest

from keras_tricks import _control
from keras_tricks.optimizers import GradientAccumulation, GradientCentralization

BACKEND = keras.backend.backend()


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = rng.normal(size=(n, 2)).astype("float32")
    return x, y


def _model():
    keras.utils.set_random_seed(7)
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4, activation="tanh"),
            keras.layers.Dense(2),
        ]
    )


def _fit(optimizer, x, y, batch_size, epochs=2, model=None, **kwargs):
    model = model or _model()
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, **kwargs
    )
    return model


def _rel_err(a_weights, b_weights):
    return max(
        np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)
        for a, b in zip(a_weights, b_weights, strict=True)
    )


INNERS = {
    "sgd": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adamw_clipnorm": lambda: keras.optimizers.AdamW(
        0.01, weight_decay=0.1, clipnorm=0.5
    ),
    "adamw_global_clipnorm_schedule": lambda: keras.optimizers.AdamW(
        keras.optimizers.schedules.ExponentialDecay(0.02, 2, 0.5),
        weight_decay=0.1,
        global_clipnorm=0.5,
    ),
}


def _variables():
    rng = np.random.default_rng(5)
    return [
        keras.Variable(rng.normal(size=(5, 3)).astype("float32")),
        keras.Variable(rng.normal(size=(3,)).astype("float32")),
    ]


@pytest.mark.parametrize("inner", sorted(INNERS))
def test_update_is_the_inner_update_of_the_mean_gradient(inner):
    # Large random gradients, so that clipping is active; 2 windows of 3.
    rng = np.random.default_rng(1)
    micro = [
        [
            rng.normal(size=(5, 3)).astype("float32"),
            rng.normal(size=(3,)).astype("float32"),
        ]
        for _ in range(6)
    ]
    acc_vars, big_vars = _variables(), _variables()
    acc = GradientAccumulation(INNERS[inner](), 3)
    big = INNERS[inner]()
    for i, grads in enumerate(micro):
        acc.apply([keras.ops.convert_to_tensor(g) for g in grads], acc_vars)
        if i % 3 == 2:
            window = micro[i - 2 : i + 1]
            mean = [np.mean([w[j] for w in window], axis=0) for j in range(2)]
            big.apply([keras.ops.convert_to_tensor(g) for g in mean], big_vars)
        if i == 0:
            # Nothing moves before the window is full.
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(acc_vars[0]),
                keras.ops.convert_to_numpy(_variables()[0]),
            )
    values = [keras.ops.convert_to_numpy(v) for v in acc_vars]
    expected = [keras.ops.convert_to_numpy(v) for v in big_vars]
    assert _rel_err(values, expected) < 1e-5
    assert (
        _rel_err(values, [keras.ops.convert_to_numpy(v) for v in _variables()]) > 1e-3
    )
    # Inner iterations (hence any schedule) count real updates only.
    assert int(acc.iterations) == 2
    assert int(acc.inner_optimizer.iterations) == 2
    assert int(acc.micro_steps) == 6


def test_fit_equals_big_batch():
    x, y = _data()
    acc = _fit(
        GradientAccumulation(INNERS["adamw_global_clipnorm_schedule"](), 4), x, y, 4
    )
    big = _fit(INNERS["adamw_global_clipnorm_schedule"](), x, y, batch_size=16)
    assert _rel_err(acc.get_weights(), big.get_weights()) < 1e-5
    assert int(acc.optimizer.iterations) == 4


def test_schedule_sees_updates_unlike_builtin():
    schedule = keras.optimizers.schedules.PolynomialDecay(0.1, 16, 0.0)
    ours = GradientAccumulation(keras.optimizers.SGD(schedule), 2)
    builtin = keras.optimizers.SGD(schedule, gradient_accumulation_steps=2)
    ours_vars, builtin_vars = _variables(), _variables()
    grads = [keras.ops.ones((5, 3)), keras.ops.ones((3,))]
    for _ in range(4):
        ours.apply(grads, ours_vars)
        builtin.apply(grads, builtin_vars)
    # 4 micro-batches = 2 updates: our schedule is at step 2 of 16.
    lr = float(keras.ops.convert_to_numpy(ours.learning_rate))
    np.testing.assert_allclose(lr, 0.1 * (1 - 2 / 16), rtol=1e-6)
    # Keras's built-in option shows the schedule the micro-step count (4).
    lr = float(keras.ops.convert_to_numpy(builtin.learning_rate))
    np.testing.assert_allclose(lr, 0.1 * (1 - 4 / 16), rtol=1e-6)
    assert _control.accumulation_steps(ours) == (2, "wrapper")
    assert _control.accumulation_steps(builtin) == (2, "builtin")


def test_unequal_last_batch_is_weighted_by_samples():
    # 10 samples in micro-batches of 4, 4, 2: one window of 3 = the full batch.
    x, y = _data(10)
    big = _fit(keras.optimizers.Adam(0.01), x, y, batch_size=10, epochs=3)
    weighted = GradientAccumulation(
        keras.optimizers.Adam(0.01), 3, batch_size=4, num_samples=10
    )
    acc = _fit(weighted, x, y, batch_size=4, epochs=3)
    assert _rel_err(acc.get_weights(), big.get_weights()) < 1e-5
    # Without the sample counts the last micro-batch weighs as much as the
    # others, and the result is not the big batch's.
    plain = _fit(GradientAccumulation(keras.optimizers.Adam(0.01), 3), x, y, 4, 3)
    assert _rel_err(plain.get_weights(), big.get_weights()) > 1e-4


_STRAIGHT = {}


def _straight():
    """3 epochs of 12 samples in micro-batches of 4, windows of 2: 9 micro-
    batches, 4 updates and one micro-batch left in the window."""
    if not _STRAIGHT:
        x, y = _data(12)
        model = _fit(GradientAccumulation(keras.optimizers.Adam(0.01), 2), x, y, 4, 3)
        _STRAIGHT["pending"] = int(model.optimizer.window_count)
        _STRAIGHT["weights"] = [np.array(w) for w in model.get_weights()]
        _STRAIGHT["flushed"] = model.optimizer.flush()
        _STRAIGHT["after_flush"] = model.get_weights()
        _STRAIGHT["flush_again"] = model.optimizer.flush()
    return _STRAIGHT


def test_window_carries_over_epochs_and_flush_applies_the_rest():
    run = _straight()
    assert run["pending"] == 1
    x, y = _data(12)
    x3, y3 = np.concatenate([x, x, x]), np.concatenate([y, y, y])
    # Windows straddle epochs: the same as big batches of 8 over the
    # concatenated epochs.
    big = _fit(keras.optimizers.Adam(0.01), x3[:32], y3[:32], batch_size=8, epochs=1)
    assert _rel_err(run["weights"], big.get_weights()) < 1e-5
    # flush() applies the last micro-batch as the last (short) big batch.
    assert run["flushed"] is True and run["flush_again"] is False
    big = _fit(keras.optimizers.Adam(0.01), x3, y3, batch_size=8, epochs=1)
    assert _rel_err(run["after_flush"], big.get_weights()) < 1e-5
    assert _rel_err(run["after_flush"], run["weights"]) > 1e-4


def test_skip_nonfinite():
    def run(skip):
        var = keras.Variable(np.array([1.0, 2.0], "float32"))
        opt = GradientAccumulation(keras.optimizers.SGD(1.0), 2, skip_nonfinite=skip)
        for g in ([0.5, 1.0], [np.nan, 1.0], [1.5, 3.0]):
            opt.apply([np.array(g, "float32")], [var])
        return keras.ops.convert_to_numpy(var), int(opt.iterations)

    value, updates = run(True)
    np.testing.assert_allclose(value, [1.0 - 1.0, 2.0 - 2.0], atol=1e-6)
    assert updates == 1
    value, _ = run(False)
    assert np.isnan(value).any()


def test_composes_with_gradient_centralization_in_either_order():
    x, y = _data()
    big = _fit(GradientCentralization(keras.optimizers.Adam(0.01)), x, y, 16)
    for opt in (
        GradientAccumulation(GradientCentralization(keras.optimizers.Adam(0.01)), 4),
        GradientCentralization(GradientAccumulation(keras.optimizers.Adam(0.01), 4)),
    ):
        acc = _fit(opt, x, y, batch_size=4)
        assert _rel_err(acc.get_weights(), big.get_weights()) < 1e-5
        assert _control.accumulation_steps(opt) == (4, "wrapper")
        assert int(opt.iterations) == 4


def test_flush_with_apply():
    var = keras.Variable(np.array([1.0, 2.0], "float32"))
    opt = GradientAccumulation(keras.optimizers.SGD(1.0), 3)
    assert opt.flush() is False  # not built yet
    opt.apply([np.array([0.5, 1.0], "float32")], [var])
    opt.apply([np.array([1.5, 1.0], "float32")], [var])
    assert opt.flush() is True
    np.testing.assert_allclose(keras.ops.convert_to_numpy(var), [0.0, 1.0], atol=1e-6)
    assert int(opt.iterations) == 1 and int(opt.window_count) == 0


def test_mixed_float16_loss_scale_optimizer_outside():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = _data()
    opt = GradientAccumulation(keras.optimizers.Adam(0.01), 4)
    model = _fit(opt, x, y, batch_size=4)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.optimizer.inner_optimizer is opt
    assert all(a.dtype == "float32" for a in opt.accumulators)
    assert int(model.optimizer.iterations) == 4
    big = _fit(keras.optimizers.Adam(0.01), x, y, batch_size=16)
    assert _rel_err(model.get_weights(), big.get_weights()) < 2e-2
    assert _control.base_optimizers(model.optimizer) == [opt.inner_optimizer]


def test_loss_scale_optimizer_inside_is_an_error():
    lso = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())
    with pytest.raises(ValueError, match="LossScaleOptimizer cannot sit inside"):
        GradientAccumulation(lso, 2)
    with pytest.raises(ValueError, match="LossScaleOptimizer cannot sit inside"):
        GradientAccumulation(GradientCentralization(lso), 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "`steps`.*Received: steps=0"),
        ({"steps": 2.0}, "`steps`.*Received: steps=2.0"),
        ({"steps": 2, "batch_size": 4}, "both or neither"),
        ({"steps": 2, "batch_size": 0, "num_samples": 3}, "batch_size=0"),
        ({"steps": 2, "skip_nonfinite": 1}, "skip_nonfinite=1"),
        ({"steps": 2, "learning_rate": 0.1}, "set `learning_rate` on the inner"),
        ({"steps": 2, "clipnorm": 1.0}, "Received: clipnorm=1.0"),
        ({"steps": 2, "weight_decay": 0.1}, "weight_decay=0.1"),
        ({"steps": 2, "foo": 1}, "does not take"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientAccumulation(keras.optimizers.SGD(), **kwargs)


def test_not_an_optimizer():
    with pytest.raises(TypeError, match="must be a `keras.optimizers.Optimizer`"):
        GradientAccumulation("adam", 2)


def test_config_round_trip():
    opt = GradientAccumulation(
        keras.optimizers.AdamW(0.003, weight_decay=0.01),
        3,
        batch_size=8,
        num_samples=50,
        skip_nonfinite=True,
    )
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(opt)
    )
    assert isinstance(restored, GradientAccumulation)
    assert restored.get_config() == opt.get_config()
    assert isinstance(restored.inner_optimizer, keras.optimizers.AdamW)
    assert restored.inner_optimizer.weight_decay == 0.01


def test_saved_model_continues_identically(tmp_path):
    # 12 samples, windows of 2 micro-batches of 4: after one epoch a window is
    # half full, so the accumulators must survive the save.
    x, y = _data(12)

    def opt():
        return GradientAccumulation(keras.optimizers.Adam(0.01), 2)

    straight = _straight()["weights"]
    first = _fit(opt(), x, y, batch_size=4, epochs=1)
    assert int(first.optimizer.window_count) == 1
    path = os.path.join(tmp_path, "m.keras")
    first.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, GradientAccumulation)
    assert int(loaded.optimizer.window_count) == 1
    loaded.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert _rel_err(loaded.get_weights(), straight) < 1e-6


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_exactly(tmp_path):
    x, y = _data(12)

    def opt():
        return GradientAccumulation(keras.optimizers.Adam(0.01), 2)

    straight = _straight()["weights"]
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = _model()
    model.compile(optimizer=opt(), loss="mse")
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(
            x,
            y,
            batch_size=4,
            epochs=3,
            shuffle=False,
            verbose=0,
            callbacks=[backup, _Interrupt()],
        )
    resumed = _model()
    resumed.compile(optimizer=opt(), loss="mse")
    resumed.fit(
        x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=[backup]
    )
    assert _rel_err(resumed.get_weights(), straight) < 1e-6


@pytest.mark.backends("tensorflow")
def test_mirrored_strategy_matches_single_device(mirrored_strategy):
    x, y = _data()
    single = _fit(GradientAccumulation(keras.optimizers.Adam(0.01), 4), x, y, 8)
    with mirrored_strategy.scope():
        model = _model()
        model.compile(
            optimizer=GradientAccumulation(keras.optimizers.Adam(0.01), 4), loss="mse"
        )
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert _rel_err(model.get_weights(), single.get_weights()) < 1e-5
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2


@pytest.mark.backends("jax")
def test_jax_data_parallel_matches_single_device():
    x, y = _data()
    single = _fit(GradientAccumulation(keras.optimizers.Adam(0.01), 4), x, y, 8)
    devices = keras.distribution.list_devices("cpu")
    assert len(devices) == 2
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    try:
        model = _fit(GradientAccumulation(keras.optimizers.Adam(0.01), 4), x, y, 8)
        weights = model.get_weights()
    finally:
        keras.distribution.set_distribution(None)
    assert _rel_err(weights, single.get_weights()) < 1e-5


@pytest.mark.parametrize("use_grad_mean", [True, False])
def test_use_grad_mean_equals_optax_multisteps(use_grad_mean):
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(3, 2)).astype("float32") for _ in range(7)]
    w0 = rng.normal(size=(3, 2)).astype("float32")
    lr, k = 0.1, 3

    reference = optax.MultiSteps(
        optax.sgd(lr), every_k_schedule=k, use_grad_mean=use_grad_mean
    )
    params = jnp.asarray(w0)
    state = reference.init(params)
    expected = []
    for g in grads:
        updates, state = reference.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        expected.append(np.asarray(params))

    variable = keras.Variable(w0)
    optimizer = GradientAccumulation(
        keras.optimizers.SGD(lr), steps=k, use_grad_mean=use_grad_mean
    )
    optimizer.build([variable])
    for g, want in zip(grads, expected, strict=True):
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
        got = keras.ops.convert_to_numpy(variable.value)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    config = optimizer.get_config()
    assert config["use_grad_mean"] is use_grad_mean
    assert GradientAccumulation.from_config(config).use_grad_mean is use_grad_mean
    with pytest.raises(ValueError, match="use_grad_mean=1"):
        GradientAccumulation(keras.optimizers.SGD(), steps=2, use_grad_mean=1)


# --- a callable `steps` (optax `every_k_schedule`) ----------------------------


@keras.saving.register_keras_serializable(package="keras_tricks_tests")
def growing_windows(updates):
    """1, 2, 3, 4, 4, ... micro-batches for updates 0, 1, 2, 3, 4, ..."""
    return 1 + keras.ops.minimum(updates, 3)


def _growing_windows_schedule():
    # The same k as a Keras schedule object, which PyTorch cannot evaluate
    # over a vector of steps (the host replay falls back to one at a time).
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [0, 1, 2], [1, 2, 3, 4]
    )


@pytest.mark.parametrize("use_grad_mean", [True, False])
@pytest.mark.parametrize("kind", ["function", "schedule"])
def test_callable_steps_equals_optax_multisteps(kind, use_grad_mean):
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=(3, 2)).astype("float32") for _ in range(15)]
    w0 = rng.normal(size=(3, 2)).astype("float32")
    reference = optax.MultiSteps(
        optax.adam(0.1),
        every_k_schedule=lambda step: 1 + jnp.minimum(step, 3),
        use_grad_mean=use_grad_mean,
    )
    params = jnp.asarray(w0)
    state = reference.init(params)
    expected = []
    for g in grads:
        updates, state = reference.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        expected.append(np.asarray(params))

    steps = growing_windows if kind == "function" else _growing_windows_schedule()
    variable = keras.Variable(w0)
    optimizer = GradientAccumulation(
        keras.optimizers.Adam(0.1, epsilon=1e-8),
        steps=steps,
        use_grad_mean=use_grad_mean,
    )
    optimizer.build([variable])
    # Windows of 1, 2, 3, 4, 4 micro-batches: updates complete after
    # micro-batches 1, 3, 6, 10 and 14.
    np.testing.assert_array_equal(
        optimizer.updates_after(15),
        [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5],
    )
    for g, want in zip(grads, expected, strict=True):
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
        got = keras.ops.convert_to_numpy(variable.value)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert int(optimizer.iterations) == int(state.gradient_step) == 5
    assert int(optimizer.window_count) == int(state.mini_step) == 1
    # The replay continues from the optimizer's state (update 5, 1 in the
    # window of 4).
    np.testing.assert_array_equal(optimizer.updates_after(5), [0, 0, 0, 1, 1, 1])


def test_callable_steps_config_round_trip_and_errors():
    for steps in (growing_windows, _growing_windows_schedule()):
        opt = GradientAccumulation(keras.optimizers.SGD(0.1), steps=steps)
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(opt)
        )
        assert restored.get_config() == opt.get_config()
        assert type(restored.steps) is type(steps) or restored.steps is steps
        assert _control.accumulation_steps(restored) == (restored, "varying")

    def unregistered(updates):
        return 2

    class NoConfig:
        def __call__(self, updates):
            return 2

        def get_config(self):
            raise NotImplementedError

    for bad, match in (
        (unregistered, "registered with .*Received: steps=<function"),
        (lambda updates: 2, "registered with .*Received: steps=<function"),
        (NoConfig(), "must be serializable: its `get_config`.*Received: steps="),
        (np.float32(2.0), r"int >= 1 or a serializable callable.*steps=np.float32"),
    ):
        with pytest.raises(ValueError, match=f"(?s)`steps`.*{match}"):
            GradientAccumulation(keras.optimizers.SGD(), steps=bad)
    # A NumPy integer is an int.
    assert GradientAccumulation(keras.optimizers.SGD(), np.int64(3)).steps == 3


def test_callable_steps_in_fit_continues_after_save_and_load(tmp_path):
    # 16 samples in micro-batches of 4: 4 micro-batches an epoch; windows of
    # 1, 2, 3, 4, 4 cross the epochs.
    x, y = _data(16)

    def opt():
        return GradientAccumulation(keras.optimizers.Adam(0.01), growing_windows)

    straight = _fit(opt(), x, y, batch_size=4, epochs=3)
    assert int(straight.optimizer.iterations) == 4  # after 1, 3, 6, 10
    assert int(straight.optimizer.window_count) == 2
    first = _fit(opt(), x, y, batch_size=4, epochs=1)
    path = os.path.join(tmp_path, "m.keras")
    first.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.optimizer.steps is growing_windows
    loaded.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert int(loaded.optimizer.iterations) == 4
    assert _rel_err(loaded.get_weights(), straight.get_weights()) < 1e-6


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch only")
def test_torch_window_test_is_a_plain_if_not_ops_cond(monkeypatch):
    # Keras's `ops.cond` on PyTorch bumps a global name counter that
    # `torch.compile` guards on: a jit-compiled fit recompiled every step.
    # The window test must not go through it (and still apply each window).
    def no_cond(*args, **kwargs):
        raise AssertionError("ops.cond called in the PyTorch train step")

    monkeypatch.setattr(keras.ops, "cond", no_cond)
    x, y = _data()
    model = _model()
    before = [np.array(w) for w in model.get_weights()]
    optimizer = GradientAccumulation(keras.optimizers.SGD(0.1), steps=2)
    _fit(optimizer, x, y, batch_size=8, epochs=1, model=model)
    assert int(optimizer.inner_optimizer.iterations.numpy()) == 2
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
