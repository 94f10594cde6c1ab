"""RAdam, DiffGrad, Lookahead and AdamW8bit inside real training workflows.

Every test trains the probe model of `_optimizer_reference` (the gradient of
step `t` is the input `x_t`) through the compiled train step and compares the
weights after every step with the reference fed the same gradients (PyTorch's
optimizers; for AdamW8bit the NumPy reference of `_optimizer_reference`):
schedules, momentum cycling, wrappers and a save/load in the middle must all
leave that trajectory where the reference puts it.
"""

import os

import keras
import numpy as np
import pytest
from _optimizer_reference import (
    adamw_8bit_reference,
    centralized,
    fit_probe,
    gradients,
    initial_weights,
    probe_model,
    torch_trajectory,
    window_means,
)

import keras_tricks
from keras_tricks import callbacks as ktc
from keras_tricks import schedules
from keras_tricks.optimizers import (
    AdamW8bit,
    DiffGrad,
    GradientAccumulation,
    GradientCentralization,
    Lookahead,
    RAdam,
)

torch = pytest.importorskip("torch")
po = pytest.importorskip("pytorch_optimizer")

BACKEND = keras.backend.backend()
RTOL, ATOL = 2e-5, 2e-6


def _torch(make):
    def reference(grads, lr, lrs=None, beta_1s=None):
        return torch_trajectory(lambda p: make(p, lr), grads, lrs=lrs, beta_1s=beta_1s)

    return reference


OPTIMIZERS = {
    "radam": (
        lambda lr: RAdam(lr, weight_decay=0.01),
        _torch(
            lambda p, lr: torch.optim.RAdam(
                p, lr=lr, weight_decay=0.01, decoupled_weight_decay=True
            )
        ),
    ),
    "diffgrad": (
        lambda lr: DiffGrad(lr),
        _torch(lambda p, lr: po.DiffGrad(p, lr=lr)),
    ),
    "lookahead": (
        lambda lr: Lookahead(RAdam(lr), sync_period=4),
        _torch(lambda p, lr: po.Lookahead(torch.optim.RAdam(p, lr=lr), k=4, alpha=0.5)),
    ),
    # Blocks of 4 so that the probe's 12 weights take the 8-bit path.
    "adamw8bit": (
        lambda lr: AdamW8bit(lr, block_size=4, min_8bit_size=0),
        lambda grads, lr, lrs=None, beta_1s=None: adamw_8bit_reference(
            grads, lr=lr, lrs=lrs, beta_1s=beta_1s, block_size=4, min_8bit_size=0
        ),
    ),
}
NAMES = sorted(OPTIMIZERS)


def _close(name, got, expected):
    # A float32 difference in a gradient can move an 8-bit moment across a
    # code boundary a step earlier or later: looser for AdamW8bit.
    atol = 2e-5 if name == "adamw8bit" else ATOL
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=atol)


@pytest.mark.parametrize("name", NAMES)
def test_one_cycle_momentum_reaches_the_compiled_step(name):
    ours, theirs = OPTIMIZERS[name]
    grads = gradients(20)
    model = probe_model(ours(0.05))
    cb = ktc.OneCycle(max_lr=0.05, base_momentum=0.5, max_momentum=0.95)
    got = fit_probe(model, grads, callbacks=[cb])
    schedule = schedules.OneCycle(0.05, len(grads), base_momentum=0.5)
    steps = keras.ops.convert_to_tensor(np.arange(len(grads)))
    lrs = keras.ops.convert_to_numpy(schedule(steps))
    betas = keras.ops.convert_to_numpy(schedule.momentum(steps))
    expected = theirs(grads, 0.05, lrs=lrs, beta_1s=betas)
    _close(name, got, expected)
    # With beta_1 held at 0.9 the trajectory differs: the cycled value was used.
    held = theirs(grads, 0.05, lrs=lrs)
    assert np.abs(held - expected).max() > 1e-3
    # Back to the user's value after fit.
    assert model.optimizer.get_config().get("beta_1", 0.9) == pytest.approx(0.9)


@pytest.mark.parametrize("name", NAMES)
def test_schedule_save_load_mid_training_continues(name, tmp_path):
    # The compiled step (PyTorch: eager; `torch.compile` was checked by hand,
    # it costs minutes) with a Keras schedule, saved after 10 steps and
    # reloaded: the 20 steps equal the reference's.
    ours, theirs = OPTIMIZERS[name]
    grads = gradients(20)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, 4, 0.5)
    model = probe_model(ours(schedule))
    first = fit_probe(model, grads[:10])
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert int(loaded.optimizer.iterations) == 10
    second = fit_probe(loaded, grads[10:])
    lrs = [float(schedule(t)) for t in range(len(grads))]
    expected = theirs(grads, 0.05, lrs=lrs)
    _close(name, np.concatenate([first, second]), expected)
    # Two fits in a row on the original give the same.
    np.testing.assert_allclose(
        fit_probe(model, grads[10:]), second, rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("name", NAMES)
def test_wrapped(name):
    ours, theirs = OPTIMIZERS[name]
    grads = gradients(16)
    ref = theirs(centralized(grads), 0.05)
    got = fit_probe(probe_model(GradientCentralization(ours(0.05))), grads)
    _close(name, got, ref)

    ref = theirs(window_means(grads, 2), 0.05)
    got = fit_probe(probe_model(GradientAccumulation(ours(0.05), steps=2)), grads)
    _close(name, got[1::2], ref)

    # Loss scaling by powers of two is exact.
    ref = theirs(grads, 0.05)
    got = fit_probe(probe_model(keras.optimizers.LossScaleOptimizer(ours(0.05))), grads)
    _close(name, got, ref)


@pytest.mark.parametrize("name", NAMES)
def test_find_lr_leaves_the_optimizer_as_it_was(name):
    ours, _ = OPTIMIZERS[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=ours(0.01), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    before = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    weights = model.get_weights()
    result = keras_tricks.find_lr(model, x, y, batch_size=16, num_steps=20)
    assert len(result.lrs) > 5
    # The control variables that `find_lr` adds are run-time state, not saved.
    after = [
        keras.ops.convert_to_numpy(v)
        for v in model.optimizer.variables
        if not getattr(v, "_kt_control", False)
    ]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_save_after_a_schedule_callback_loads(tmp_path):
    grads = gradients(8)
    model = probe_model(RAdam(0.01))
    fit_probe(model, grads, callbacks=[ktc.OneCycle(max_lr=0.01)])
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, RAdam)


class _Interrupt(keras.callbacks.Callback):
    """Raises at the end of epoch `at`, after keeping the optimizer's state."""

    def __init__(self, at):
        super().__init__()
        self.at = at
        self.state = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            self.state = _state(self.model.optimizer)
            raise RuntimeError("interrupted")


class _StateAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.state = _state(self.model.optimizer)


def _state(optimizer):
    return [
        (keras.backend.standardize_dtype(v.dtype), keras.ops.convert_to_numpy(v))
        for v in optimizer.variables
        if not getattr(v, "_kt_control", False)
    ]


@pytest.mark.parametrize("name", ["adamw8bit", "diffgrad", "radam"])
def test_backup_and_restore_resumes_the_same_trajectory(name, tmp_path):
    ours, _ = OPTIMIZERS[name]
    grads = gradients(6)
    straight = fit_probe(probe_model(ours(0.05)), grads, epochs=3)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    interrupt = _Interrupt(at=1)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit_probe(probe_model(ours(0.05)), grads, [backup, interrupt], epochs=3)
    np.testing.assert_array_equal(interrupt.state[0][1], 12)  # iterations
    start = _StateAtStart()
    resumed = fit_probe(probe_model(ours(0.05)), grads, [backup, start], epochs=3)
    # The state is back exactly (the 8-bit codes as uint8, the block absmax),
    # and the third epoch is the uninterrupted run's.
    assert len(start.state) == len(interrupt.state)
    for (dtype, value), (want_dtype, want) in zip(
        start.state, interrupt.state, strict=True
    ):
        assert dtype == want_dtype
        np.testing.assert_array_equal(value, want)
    if name == "adamw8bit":
        assert [d for d, _ in start.state].count("uint8") == 2
    np.testing.assert_array_equal(resumed, straight[12:])


def _dense_fit(optimizer, x, y):
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(4)])
    model.set_weights([initial_weights(shape=(x.shape[1], 4)), np.zeros(4, "float32")])
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model


def _dense_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 16)).astype("float32")
    y = rng.normal(size=(32, 4)).astype("float32")
    return x, y


# 8-bit kernel (64 values, blocks of 16), float32 bias.
DISTRIBUTED = {
    "adamw8bit": lambda: AdamW8bit(0.01, block_size=16, min_8bit_size=64),
    "diffgrad": lambda: DiffGrad(0.01, weight_decay=0.01),
    "radam": lambda: RAdam(0.01, weight_decay=0.01),
}


def _check_distributed(name, model, single):
    # Two replicas sum their half-batch gradients in another order than one
    # device: float32 noise, which an 8-bit moment can turn into a neighbouring
    # code (one code step of the moment, far below the 0.1 that training moved).
    atol = 2e-4 if name == "adamw8bit" else 1e-5
    for got, want in zip(model.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 8
    dtypes = [
        keras.backend.standardize_dtype(v.dtype) for v in model.optimizer.variables
    ]
    assert dtypes.count("uint8") == (2 if name == "adamw8bit" else 0)


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("name", sorted(DISTRIBUTED))
def test_mirrored_strategy_matches_single_device(name, mirrored_strategy):
    x, y = _dense_data()
    single = _dense_fit(DISTRIBUTED[name](), x, y)
    with mirrored_strategy.scope():
        model = _dense_fit(DISTRIBUTED[name](), x, y)
    _check_distributed(name, model, single)


@pytest.mark.backends("jax")
@pytest.mark.parametrize("name", sorted(DISTRIBUTED))
def test_jax_data_parallel_matches_single_device(name):
    x, y = _dense_data()
    single = _dense_fit(DISTRIBUTED[name](), x, y)
    devices = keras.distribution.list_devices("cpu")
    assert len(devices) == 2
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    try:
        model = _dense_fit(DISTRIBUTED[name](), x, y)
    finally:
        keras.distribution.set_distribution(None)
    _check_distributed(name, model, single)
