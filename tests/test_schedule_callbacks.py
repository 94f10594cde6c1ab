"""Tests of the schedule callbacks (`keras_tricks.callbacks.OneCycle`, ...).

Each test trains a tiny linear model for a few batches and checks the LR
(and momentum) every update really used against the schedule of
`keras_tricks.schedules`, sized by hand.
"""

import keras
import numpy as np
import pytest

from keras_tricks import _control, schedules
from keras_tricks import callbacks as ktc
from keras_tricks.optimizers import GradientAccumulation

BACKEND = keras.backend.backend()
N, BATCH = 32, 8  # 4 batches per epoch
SPE = N // BATCH


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype("float32")
    return x, y


def _model(optimizer, use_bias=True, **compile_kwargs):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(1, use_bias=use_bias)]
    )
    model.compile(optimizer=optimizer, loss="mse", **compile_kwargs)
    return model


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def _values(fn, steps):
    """The schedule at each step, in one vectorized call."""
    steps = keras.ops.convert_to_tensor(np.asarray(steps, dtype="int64"))
    return keras.ops.convert_to_numpy(fn(steps)).astype("float64")


class _Recorder(keras.callbacks.Callback):
    """The LR and momentum each update is about to use, and its step."""

    def __init__(self):
        super().__init__()
        self.lr, self.momentum, self.step = [], [], []

    def on_train_batch_begin(self, batch, logs=None):
        opt = self.model.optimizer
        self.lr.append(_control.current_lr(opt))
        self.momentum.append(_control.current_momentum(opt))
        self.step.append(_control.schedule_step(opt))


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def _fit(model, cb, epochs=3, record=True, **kwargs):
    x, y = _data()
    rec = _Recorder()
    callbacks = [cb] + ([rec] if record else []) + kwargs.pop("callbacks", [])
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
        **kwargs,
    )
    return history, rec


# --- every callback follows its schedule -----------------------------------

CASES = {
    "one_cycle": (
        lambda: ktc.OneCycle(max_lr=0.05),
        lambda total: schedules.OneCycle(0.05, total),
    ),
    "sgdr_epochs": (
        lambda: ktc.SGDR(max_lr=0.05, first_cycle_epochs=1, t_mul=2.0, min_lr=1e-3),
        lambda total: schedules.SGDR(0.05, SPE, t_mul=2.0, min_lr=1e-3),
    ),
    "sgdr_fraction": (
        lambda: ktc.SGDR(max_lr=0.05, first_cycle_fraction=0.5, warmup_steps=2),
        lambda total: schedules.SGDR(0.05, (total - 2) // 2, warmup_steps=2),
    ),
    "warmup_cosine": (
        lambda: ktc.WarmupCosine(peak_lr=0.05, warmup_epochs=1, final_lr=1e-3),
        lambda total: schedules.WarmupCosine(
            0.05, total, warmup_steps=SPE, final_lr=1e-3
        ),
    ),
    "cyclic": (
        lambda: ktc.CyclicLR(1e-3, 0.05, step_size_epochs=0.75, mode="triangular2"),
        lambda total: schedules.CyclicLR(1e-3, 0.05, 3, mode="triangular2"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lr_follows_schedule_and_logs(case):
    make_cb, make_schedule = CASES[case]
    epochs = 3
    model = _model(keras.optimizers.SGD(0.5, momentum=0.9))
    history, rec = _fit(model, make_cb(), epochs=epochs)
    expected = make_schedule(epochs * SPE)
    steps = np.arange(epochs * SPE)
    np.testing.assert_allclose(rec.lr, _values(expected, steps), rtol=1e-5)
    np.testing.assert_array_equal(rec.step, steps)
    # logs["lr"]: the LR of the next update, i.e. of step (epoch + 1) * SPE.
    ends = (np.arange(epochs) + 1) * SPE
    np.testing.assert_allclose(
        history.history["lr"], _values(expected, ends), rtol=1e-5
    )
    if expected.has_momentum:
        np.testing.assert_allclose(
            rec.momentum, _values(expected.momentum, steps), rtol=1e-5
        )
        np.testing.assert_allclose(
            history.history["momentum"], _values(expected.momentum, ends), rtol=1e-5
        )
    else:
        np.testing.assert_allclose(history.history["momentum"], 0.9)
    # After fit the optimizer's own LR and momentum are back.
    assert _control.current_lr(model.optimizer) == pytest.approx(0.5)
    assert _control.current_momentum(model.optimizer) == pytest.approx(0.9)


# --- the compiled step used the cycled momentum ------------------------------


def _hand_sgd(w, x, y, lrs, moms, steps_per_epoch, batch):
    m = np.zeros_like(w)
    for t, (lr, mom) in enumerate(zip(lrs, moms, strict=True)):
        i = t % steps_per_epoch
        xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        g = 2.0 / batch * xb.T @ (xb @ w - yb)
        m = mom * m - lr * g
        w = w + m
    return w


def _hand_adam(w, x, y, lrs, betas, steps_per_epoch, batch, beta_2=0.999, eps=1e-7):
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (lr, b1) in enumerate(zip(lrs, betas, strict=True)):
        i = t % steps_per_epoch
        xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        g = 2.0 / batch * xb.T @ (xb @ w - yb)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - beta_2)
        alpha = lr * np.sqrt(1 - beta_2 ** (t + 1)) / (1 - b1 ** (t + 1))
        w = w - alpha * m / (np.sqrt(v) + eps)
    return w


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_momentum_cycling_reaches_the_compiled_step(name):
    if name == "sgd":
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    else:
        optimizer = keras.optimizers.Adam(0.1)
    model = _model(optimizer, use_bias=False)
    w0 = _weights(model)[0].astype("float64")
    epochs = 2
    cb = ktc.OneCycle(max_lr=0.05, base_momentum=0.5, max_momentum=0.95)
    _fit(model, cb, epochs=epochs, record=False)
    schedule = schedules.OneCycle(0.05, epochs * SPE, base_momentum=0.5)
    steps = np.arange(epochs * SPE)
    lrs, moms = _values(schedule, steps), _values(schedule.momentum, steps)
    x, y = _data()
    hand = _hand_sgd if name == "sgd" else _hand_adam
    expected = hand(w0, x.astype("float64"), y.astype("float64"), lrs, moms, SPE, BATCH)
    np.testing.assert_allclose(_weights(model)[0], expected, rtol=1e-4, atol=1e-6)
    # The same run with the momentum held at its user value differs: the
    # comparison above really sees the cycling.
    held = hand(w0, x, y, lrs, np.full_like(moms, 0.9), SPE, BATCH)
    assert np.abs(held - expected).max() > 1e-3


@pytest.mark.parametrize(
    "optimizer", ["AdamW", "Nadam", "Adamax", "Lamb"], ids=lambda s: s
)
def test_beta_1_cycles_for_adam_family(optimizer):
    model = _model(getattr(keras.optimizers, optimizer)(1e-2))
    history, rec = _fit(model, ktc.OneCycle(max_lr=0.01), epochs=1)
    schedule = schedules.OneCycle(0.01, SPE)
    np.testing.assert_allclose(
        rec.momentum, _values(schedule.momentum, np.arange(SPE)), rtol=1e-5
    )
    assert model.optimizer.get_config()["beta_1"] == pytest.approx(0.9)


def test_momentum_cycling_needs_a_momentum():
    model = _model(keras.optimizers.SGD(0.1))  # momentum=0
    with pytest.raises(ValueError, match="momentum>0"):
        _fit(model, ktc.OneCycle(max_lr=0.05), epochs=1, record=False)
    model = _model(keras.optimizers.SGD(0.1))
    history, _ = _fit(model, ktc.OneCycle(max_lr=0.05, cycle_momentum=False), epochs=1)
    assert history.history["momentum"] == [0.0]


# --- compiled execution modes ------------------------------------------------


@pytest.mark.backends("tensorflow", "jax")
def test_steps_per_execution_and_jit_compile():
    def run(**compile_kwargs):
        keras.utils.set_random_seed(1)
        model = _model(keras.optimizers.Adam(1e-3), **compile_kwargs)
        history, _ = _fit(model, ktc.OneCycle(max_lr=0.05), record=False)
        return history.history["lr"], _weights(model)

    lr_ref, w_ref = run()
    lr, w = run(steps_per_execution=3, jit_compile=True)
    np.testing.assert_allclose(lr, lr_ref, rtol=1e-6)
    for a, b in zip(w, w_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_with_its_own_schedule():
    own = keras.optimizers.schedules.ExponentialDecay(
        0.2, decay_steps=1, decay_rate=0.5
    )
    model = _model(keras.optimizers.SGD(own, momentum=0.9))
    history, rec = _fit(model, ktc.WarmupCosine(peak_lr=0.05, warmup_steps=2))
    expected = schedules.WarmupCosine(0.05, 3 * SPE, warmup_steps=2)
    np.testing.assert_allclose(rec.lr, _values(expected, np.arange(3 * SPE)), rtol=1e-5)
    # Handed back: the optimizer's own schedule at its own step.
    assert _control.current_lr(model.optimizer) == pytest.approx(
        float(own(3 * SPE)), rel=1e-5
    )


def test_mixed_float16_loss_scale_optimizer():
    keras.config.set_dtype_policy("mixed_float16")
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history, rec = _fit(model, ktc.OneCycle(max_lr=0.05))
    schedule = schedules.OneCycle(0.05, 3 * SPE)
    # The LR follows the inner optimizer's step (a skipped update does not
    # advance it).
    np.testing.assert_allclose(rec.lr, _values(schedule, rec.step), rtol=1e-5)
    np.testing.assert_allclose(
        rec.momentum, _values(schedule.momentum, rec.step), rtol=1e-5
    )
    assert rec.step[-1] >= 3 * SPE - 3


# --- gradient accumulation -----------------------------------------------------


@pytest.mark.parametrize("count", ["updates", "batches"])
def test_keras_gradient_accumulation(count):
    k, epochs = 2, 3
    model = _model(
        keras.optimizers.SGD(0.1, momentum=0.9, gradient_accumulation_steps=k)
    )
    history, rec = _fit(model, ktc.OneCycle(max_lr=0.05, count=count), epochs=epochs)
    batches = np.arange(epochs * SPE)
    if count == "updates":
        schedule = schedules.OneCycle(0.05, epochs * SPE // k)
        expected_steps = batches // k
    else:
        schedule = schedules.OneCycle(0.05, epochs * SPE)
        expected_steps = batches
    np.testing.assert_allclose(rec.lr, _values(schedule, expected_steps), rtol=1e-5)
    # The last real update (batch 11 under k=2) uses the schedule's last step.
    assert rec.lr[-1] == pytest.approx(float(schedule(schedule.total_steps - 1)))


def test_gradient_accumulation_wrapper_counts_updates():
    k, epochs = 3, 3  # 12 batches: 4 updates, windows cross epochs
    inner = keras.optimizers.SGD(0.1, momentum=0.9)
    model = _model(GradientAccumulation(inner, steps=k))
    history, rec = _fit(model, ktc.OneCycle(max_lr=0.05), epochs=epochs)
    schedule = schedules.OneCycle(0.05, -(-epochs * SPE // k))
    np.testing.assert_allclose(
        rec.lr, _values(schedule, np.arange(epochs * SPE) // k), rtol=1e-5
    )
    assert int(inner.iterations) == epochs * SPE // k


@keras.saving.register_keras_serializable(package="keras_tricks_tests")
def windows_1_2_3_4(updates):
    return 1 + keras.ops.minimum(updates, 3)


@pytest.mark.parametrize("jit_compile", [False, True] if BACKEND == "torch" else [True])
def test_gradient_accumulation_callable_steps_one_cycle_counts_updates(jit_compile):
    # Windows of 1, 2, 3, 4 micro-batches: 12 batches complete 4 updates
    # (after batches 1, 3, 6, 10) and leave 2 in the window: the schedule is
    # sized to 5 steps (the open window is one more step, as for an int k).
    inner = keras.optimizers.SGD(0.1, momentum=0.9)
    model = _model(
        GradientAccumulation(inner, steps=windows_1_2_3_4), jit_compile=jit_compile
    )
    cb = ktc.OneCycle(max_lr=0.05)
    history, rec = _fit(model, cb, epochs=3)
    updates_before = [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4]
    assert cb.schedule.total_steps == 5
    schedule = schedules.OneCycle(0.05, 5)
    np.testing.assert_allclose(rec.lr, _values(schedule, updates_before), rtol=1e-5)
    assert rec.step == updates_before
    assert int(inner.iterations) == 4
    # The LR logged at each epoch end is the next update's.
    np.testing.assert_allclose(
        history.history["lr"], _values(schedule, [2, 3, 4]), rtol=1e-5
    )


# --- several fits, resume, save/load -----------------------------------------------


def test_second_fit_starts_a_new_schedule_and_initial_epoch_continues():
    model = _model(keras.optimizers.Adam(1e-3))
    cb = ktc.OneCycle(max_lr=0.05)
    _, first = _fit(model, cb, epochs=2)
    _, second = _fit(model, cb, epochs=2)
    np.testing.assert_allclose(second.lr, first.lr, rtol=1e-6)
    np.testing.assert_allclose(second.momentum, first.momentum, rtol=1e-6)

    # fit(epochs=4, initial_epoch=2) continues a 4-epoch schedule.
    model = _model(keras.optimizers.Adam(1e-3))
    _fit(model, cb, epochs=2, record=False)
    _, cont = _fit(model, cb, epochs=4, initial_epoch=2)
    full = schedules.OneCycle(0.05, 4 * SPE)
    np.testing.assert_allclose(
        cont.lr, _values(full, np.arange(2 * SPE, 4 * SPE)), rtol=1e-5
    )


def _resume_run(tmp_path, make_cb, optimizer_fn, epochs=4, stop=1):
    keras.utils.set_random_seed(7)
    ref = _model(optimizer_fn())
    init = ref.get_weights()
    ref_hist, ref_rec = _fit(ref, make_cb(), epochs=epochs)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = _model(optimizer_fn())
    model.set_weights(init)
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(model, make_cb(), epochs=epochs, callbacks=[backup, _Interrupt(stop)])
    resumed = _model(optimizer_fn())  # fresh model and optimizer
    hist, rec = _fit(resumed, make_cb(), epochs=epochs, callbacks=[backup])
    return ref, ref_hist, ref_rec, resumed, hist, rec


def test_backup_and_restore_resumes_the_same_trajectory(tmp_path):
    epochs, stop = 4, 1
    ref, ref_hist, ref_rec, resumed, hist, rec = _resume_run(
        tmp_path,
        lambda: ktc.OneCycle(max_lr=0.05),
        lambda: keras.optimizers.Adam(1e-3),
        epochs,
        stop,
    )
    done = (stop + 1) * SPE
    np.testing.assert_array_equal(rec.step, np.arange(done, epochs * SPE))
    np.testing.assert_allclose(rec.lr, ref_rec.lr[done:], rtol=1e-6)
    np.testing.assert_allclose(rec.momentum, ref_rec.momentum[done:], rtol=1e-6)
    np.testing.assert_allclose(hist.history["lr"], ref_hist.history["lr"][stop + 1 :])
    for a, b in zip(_weights(resumed), _weights(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_backup_and_restore_under_accumulation(tmp_path):
    epochs, stop, k = 4, 1, 3  # windows cross epoch boundaries
    ref, _, ref_rec, resumed, _, rec = _resume_run(
        tmp_path,
        lambda: ktc.SGDR(max_lr=0.05, first_cycle_epochs=1),
        lambda: keras.optimizers.SGD(0.1, momentum=0.9, gradient_accumulation_steps=k),
        epochs,
        stop,
    )
    np.testing.assert_allclose(rec.lr, ref_rec.lr[(stop + 1) * SPE :], rtol=1e-6)
    for a, b in zip(_weights(resumed), _weights(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _SaveAndStop(keras.callbacks.Callback):
    def __init__(self, path, epoch):
        super().__init__()
        self.path, self.epoch = path, epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.save(self.path)
            self.model.stop_training = True


def test_save_and_load_keras_file_mid_and_after_training(tmp_path):
    epochs, stop = 4, 1
    keras.utils.set_random_seed(3)
    ref = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    init = ref.get_weights()
    _, ref_rec = _fit(ref, ktc.OneCycle(max_lr=0.05), epochs=epochs)

    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    model.set_weights(init)
    path = str(tmp_path / "mid.keras")
    _fit(
        model,
        ktc.OneCycle(max_lr=0.05),
        epochs=epochs,
        callbacks=[_SaveAndStop(path, stop)],
    )
    loaded = keras.saving.load_model(path)
    # Saved mid-training, with the schedule installed: the file holds the
    # user's optimizer, config and variables unchanged.
    assert isinstance(loaded.optimizer, keras.optimizers.SGD)
    assert not getattr(type(loaded.optimizer), "_kt_controlled", False)
    assert loaded.optimizer.get_config()["momentum"] == pytest.approx(0.9)
    # Saved mid-schedule, the LR variable holds the schedule's peak times
    # its plateau scale (see `_control`): a plain reload keeps it.
    assert loaded.optimizer.get_config()["learning_rate"] == pytest.approx(0.05)
    assert int(loaded.optimizer.iterations) == (stop + 1) * SPE
    _, rec = _fit(
        loaded, ktc.OneCycle(max_lr=0.05), epochs=epochs, initial_epoch=stop + 1
    )
    np.testing.assert_allclose(rec.lr, ref_rec.lr[(stop + 1) * SPE :], rtol=1e-6)
    for a, b in zip(_weights(loaded), _weights(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # After training: the model saves and loads like any other.
    path = str(tmp_path / "after.keras")
    loaded.save(path)
    again = keras.saving.load_model(path)
    assert not getattr(type(again.optimizer), "_kt_controlled", False)
    assert int(again.optimizer.iterations) == epochs * SPE
    for a, b in zip(_weights(again), _weights(loaded), strict=True):
        np.testing.assert_array_equal(a, b)


# --- distribution --------------------------------------------------------------


def _distributed_matches_single(scope_fn):
    keras.utils.set_random_seed(11)
    single = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    init = single.get_weights()
    hist_ref, _ = _fit(single, ktc.OneCycle(max_lr=0.05), record=False)
    with scope_fn():
        model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
        model.set_weights(init)
    hist, _ = _fit(model, ktc.OneCycle(max_lr=0.05), record=False)
    np.testing.assert_allclose(hist.history["lr"], hist_ref.history["lr"], rtol=1e-6)
    np.testing.assert_allclose(
        hist.history["momentum"], hist_ref.history["momentum"], rtol=1e-6
    )
    for a, b in zip(_weights(model), _weights(single), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.backends("tensorflow")
def test_tf_mirrored_strategy(mirrored_strategy):
    _distributed_matches_single(mirrored_strategy.scope)


@pytest.mark.backends("jax")
def test_jax_data_parallel():
    import contextlib

    devices = keras.distribution.list_devices("cpu")
    assert len(devices) == 2

    @contextlib.contextmanager
    def data_parallel():
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        yield

    try:
        _distributed_matches_single(data_parallel)
    finally:
        keras.distribution.set_distribution(None)


# --- errors and configuration ------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ktc.OneCycle(max_lr=0.0), "`max_lr` must be > 0"),
        (lambda: ktc.OneCycle(max_lr=0.1, total_steps=0), "`total_steps` must be > 0"),
        (lambda: ktc.OneCycle(max_lr=0.1, pct_start=1.5), "`pct_start` must be < 1"),
        (lambda: ktc.OneCycle(max_lr=0.1, count="epochs"), "`count` must be one of"),
        (lambda: ktc.SGDR(max_lr=0.1), "first cycle"),
        (
            lambda: ktc.SGDR(max_lr=0.1, first_cycle_steps=10, first_cycle_epochs=1),
            "at most one",
        ),
        (
            lambda: ktc.SGDR(max_lr=0.1, first_cycle_fraction=1.5),
            "`first_cycle_fraction` must be <= 1",
        ),
        (lambda: ktc.SGDR(max_lr=0.1, first_cycle_epochs=-1), "`first_cycle_epochs`"),
        (lambda: ktc.SGDR(max_lr=1.0, first_cycle_steps=5, min_lr=2.0), "`min_lr`"),
        (
            lambda: ktc.WarmupCosine(peak_lr=0.1, total_steps=100, warmup_steps=500),
            "warmup_steps=500, total_steps=100",
        ),
        (lambda: ktc.WarmupCosine(peak_lr=0.1, warmup_ratio=1.0), "`warmup_ratio`"),
        (
            lambda: ktc.WarmupCosine(peak_lr=0.1, warmup_ratio=0.1, warmup_steps=3),
            "at most one",
        ),
        (lambda: ktc.WarmupCosine(peak_lr=-1.0), "`peak_lr` must be > 0"),
        (lambda: ktc.CyclicLR(0.1, 0.01, step_size=10), "`base_lr` must be <="),
        (lambda: ktc.CyclicLR(0.01, 0.1), "half a cycle"),
        (lambda: ktc.CyclicLR(0.01, 0.1, step_size=2.5), "`step_size` must be an"),
        (lambda: ktc.CyclicLR(0.01, 0.1, step_size=5, mode="sine"), "`mode`"),
    ],
)
def test_bad_arguments_raise_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _generator():
    x, y = _data()
    for i in range(SPE):
        yield x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH]


def test_unknown_fit_length_raises_unless_total_steps_given():
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    with pytest.raises(ValueError, match="fit's length is unknown"):
        model.fit(_generator(), epochs=1, verbose=0, callbacks=[ktc.OneCycle(0.05)])
    with pytest.raises(ValueError, match="fit's length is unknown"):
        model.fit(
            _generator(),
            epochs=1,
            verbose=0,
            callbacks=[ktc.SGDR(0.05, first_cycle_epochs=1)],
        )
    rec = _Recorder()
    model.fit(
        _generator(),
        epochs=1,
        verbose=0,
        callbacks=[ktc.OneCycle(0.05, total_steps=SPE), rec],
    )
    schedule = schedules.OneCycle(0.05, SPE)
    # Keras calls the batch hook once more before it sees the data end.
    np.testing.assert_allclose(
        rec.lr[:SPE], _values(schedule, np.arange(SPE)), rtol=1e-5
    )


@pytest.mark.parametrize("k_decay", [0.5, 2.0])
def test_warmup_cosine_k_decay_is_timm_and_the_schedule(k_decay):
    # 3 epochs of 4 updates, a warmup of 2 from 0, then timm's k-decayed
    # cosine over the 10 updates after it:
    # lr = min + (max - min) / 2 * (1 + cos(pi * t**k / T**k)).
    epochs, warmup, peak, floor = 3, 2, 0.05, 1e-3
    cb = ktc.WarmupCosine(peak, warmup_steps=warmup, final_lr=floor, k_decay=k_decay)
    model = _model(keras.optimizers.SGD(0.5, momentum=0.9))
    _, rec = _fit(model, cb, epochs=epochs)
    total = epochs * SPE
    t = np.arange(total) - warmup
    span = total - warmup
    timm = floor + 0.5 * (peak - floor) * (
        1 + np.cos(np.pi * np.maximum(t, 0) ** k_decay / span**k_decay)
    )
    expected = np.where(t < 0, peak * np.arange(total) / warmup, timm)
    np.testing.assert_allclose(rec.lr, expected, rtol=1e-5)
    schedule = schedules.WarmupCosine(
        peak, total, warmup_steps=warmup, final_lr=floor, k_decay=k_decay
    )
    np.testing.assert_allclose(rec.lr, _values(schedule, np.arange(total)), rtol=1e-5)
    assert cb.schedule.get_config() == schedule.get_config()
    assert cb.get_config()["k_decay"] == k_decay
    with pytest.raises(ValueError, match="`k_decay` must be > 0.*Received: k_decay=0"):
        ktc.WarmupCosine(peak, k_decay=0)
    with pytest.raises(ValueError, match="`k_decay` must be a number"):
        ktc.WarmupCosine(peak, k_decay="2")
    assert ktc.WarmupCosine(peak, k_decay=np.float32(2.0)).k_decay == 2.0


def test_sized_schedule_error_names_the_fit():
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    with pytest.raises(ValueError, match="could not size its schedule.*warmup_epochs"):
        _fit(model, ktc.WarmupCosine(peak_lr=0.1, warmup_epochs=5), epochs=2)


ALL = [
    ktc.OneCycle(max_lr=0.3, total_steps=100, pct_start=0.25, three_phase=True),
    ktc.OneCycle(max_lr=0.3, cycle_momentum=False, count="batches"),
    ktc.SGDR(max_lr=0.1, first_cycle_epochs=2, t_mul=2.0, m_mul=0.5, cycle_limit=3),
    ktc.SGDR(max_lr=0.1, first_cycle_fraction=0.25, total_steps=80, warmup_steps=4),
    ktc.WarmupCosine(peak_lr=1e-3, warmup_ratio=0.1, final_lr=1e-5),
    ktc.WarmupCosine(peak_lr=1e-3, total_steps=50, warmup_steps=5),
    ktc.WarmupCosine(peak_lr=1e-3, warmup_epochs=1, k_decay=2.0),
    ktc.CyclicLR(1e-4, 1e-2, step_size=20, mode="exp_range", gamma=0.99),
    ktc.CyclicLR(1e-4, 1e-2, step_size_epochs=2, cycle_momentum=False),
]


@pytest.mark.parametrize("cb", ALL, ids=lambda cb: type(cb).__name__)
def test_get_config_round_trip(cb):
    config = cb.get_config()
    again = type(cb)(**config)
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cb)
    )
    assert type(restored) is type(cb)
    assert restored.get_config() == config


def test_callbacks_do_not_take_the_schedules_registered_names():
    # The schedules keep "keras_tricks>OneCycle" etc.; the callbacks register
    # under other names so that neither replaces the other.
    for name in ("OneCycle", "SGDR", "WarmupCosine", "CyclicLR"):
        assert keras.saving.get_registered_object(f"keras_tricks>{name}") is getattr(
            schedules, name
        )
        assert keras.saving.get_registered_object(
            f"keras_tricks>{name}Callback"
        ) is getattr(ktc, name)


def test_no_batch_hooks():
    # Per-batch hooks force a state sync on JAX: the callbacks define none.
    for cls in (ktc.OneCycle, ktc.SGDR, ktc.WarmupCosine, ktc.CyclicLR):
        for hook in ("on_train_batch_begin", "on_train_batch_end", "on_batch_end"):
            assert getattr(cls, hook) is getattr(keras.callbacks.Callback, hook)


def _program_values(program, shifted):
    out = [program.values(keras.ops.convert_to_tensor(np.int32(v))) for v in shifted]
    lr = [float(keras.ops.convert_to_numpy(a)) for a, _ in out]
    mom = [float(keras.ops.convert_to_numpy(b)) for _, b in out]
    return np.array(lr), np.array(mom)


def test_lookup_table_equals_the_schedule():
    # The PyTorch/TensorFlow path looks the values up in a table made once
    # on the host (NumPy); JAX evaluates the schedule in the step.
    schedule = schedules.OneCycle(0.05, 20)
    direct = _control.Program(schedule, schedule.momentum, divisor=2)
    table = _control.Program(schedule, schedule.momentum, divisor=2, table_size=22)
    shifted = np.arange(-6, 54)  # before the origin, inside, past the table
    lr_d, mom_d = _program_values(direct, shifted)
    lr_t, mom_t = _program_values(table, shifted)
    np.testing.assert_allclose(lr_t, lr_d, rtol=1e-5)
    np.testing.assert_allclose(mom_t, mom_d, rtol=1e-6)
    np.testing.assert_allclose(
        _program_values(direct, [0, 1, 2, 40])[0],
        _values(schedule, [0, 0, 1, 20]),
        rtol=1e-6,
    )
    # The host values (logs) are the table's.
    assert table.host_lr(3) == pytest.approx(lr_t[6 + 6], rel=1e-6)
    assert direct.peak == table.peak == pytest.approx(0.05)


def test_first_cycle_fraction_ends_the_last_cycle_at_the_last_update():
    # 1/7 of 100 updates with t_mul=2 rounded to 14 ended the cycles at 14,
    # 42 and 98: the last two updates ran at max_lr. Three cycles of 100/7,
    # 200/7 and 400/7 end at update 100.
    cb = ktc.SGDR(max_lr=0.1, first_cycle_fraction=1 / 7, t_mul=2.0)
    schedule = cb._make_schedule(100, None)
    lrs = _values(schedule, np.arange(101))
    assert lrs[98] < 1e-3 and lrs[99] < 1e-4
    assert lrs[100] == pytest.approx(0.1)  # the restart after the training
    restarts = [k for k in range(1, 101) if lrs[k] > lrs[k - 1]]
    assert restarts == [15, 43, 100]  # ceil(100/7), ceil(300/7), 100
    # In a fit: 0.3 of 28 updates is 3 cycles (not 8.4-step cycles that
    # restart at update 24), each 28/3 updates long.
    model = _model(keras.optimizers.SGD(0.5))
    cb = ktc.SGDR(max_lr=0.05, first_cycle_fraction=0.3, min_lr=1e-3)
    _, rec = _fit(model, cb, epochs=7)
    expected = _values(schedules.SGDR(0.05, 28 / 3, min_lr=1e-3), np.arange(28))
    np.testing.assert_allclose(rec.lr, expected, rtol=1e-5)
    lr = np.asarray(rec.lr)
    assert list(np.flatnonzero(np.diff(lr) > 0) + 1) == [10, 19]  # no restart at 24
    assert lr[-1] < 3e-3
