"""The control core (`keras_tricks._control`) through the workflows of issue 14.

Each test is a workflow a notebook user runs: two fits in a row, a fit
interrupted by Ctrl-C, a save and reload in the middle, `initial_epoch`,
Keras's own callbacks beside ours, a `flush()` after `fit`, and the number of
traces each of them costs against plain Keras.
"""

import gc
import warnings
import weakref

import keras
import numpy as np
import pytest
from keras import ops

from keras_tricks import _control
from keras_tricks import callbacks as ktc
from keras_tricks.optimizers import GradientAccumulation, GradientCentralization

BACKEND = keras.backend.backend()
N, BATCH = 64, 16
SPE = N // BATCH


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0], "float32"))[:, None]
    return x, y


class Counting(keras.layers.Layer):
    """Identity whose `call` counts how often it is traced (or run, eagerly)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.traces = 0

    def call(self, x):
        self.traces += 1
        return x


def _model(optimizer, jit_compile="auto"):
    keras.utils.set_random_seed(1)
    counter = Counting()
    model = keras.Sequential(
        [keras.Input((4,)), counter, keras.layers.Dense(8, "relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer, "mse", jit_compile=jit_compile)
    model.counter = counter
    return model


class LRRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.lr, self.momentum = [], []

    def on_train_batch_begin(self, batch, logs=None):
        opt = self.model.optimizer
        self.lr.append(_control.current_lr(opt))
        self.momentum.append(_control.current_momentum(opt))


def _fit(model, callbacks=(), epochs=2, **kwargs):
    x, y = _data()
    rec = LRRecorder()
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[*callbacks, rec],
        **kwargs,
    )
    return history, rec


class _BadPlateau(keras.callbacks.Callback):
    """Makes every epoch a plateau for the plateau callbacks (`min_delta`)."""


def _reducer(patience=1, factor=0.5, keras_own=False):
    cls = keras.callbacks.ReduceLROnPlateau if keras_own else ktc.ReduceLROnPlateau
    return cls(monitor="loss", factor=factor, patience=patience, min_delta=1e9)


# --- 1. a reduction is run-time state, and checkpoints keep it ------------------


def test_reduction_of_an_own_schedule_survives_save_and_load(tmp_path):
    schedule = keras.optimizers.schedules.CosineDecay(0.1, 10000)
    model = _model(keras.optimizers.SGD(schedule))
    _fit(model, [_reducer(patience=1, factor=0.1)], epochs=3)
    lr = _control.current_lr(model.optimizer)
    assert lr == pytest.approx(float(schedule(3 * SPE)) * 0.01, rel=1e-5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, custom_objects={"Counting": Counting})
    # A plain Keras optimizer with the reduced schedule in its config.
    assert not getattr(type(loaded.optimizer), "_kt_controlled", False)
    assert float(ops.convert_to_numpy(loaded.optimizer.learning_rate)) == pytest.approx(
        lr, rel=1e-5
    )


def test_reduction_over_a_schedule_callback_survives_a_weights_checkpoint(tmp_path):
    """A weights-only `ModelCheckpoint` mid-schedule, resumed with
    `initial_epoch`, continues at the reduced LR."""
    path = str(tmp_path / "w.weights.h5")
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    keep = model.get_weights()
    cb = ktc.WarmupCosine(peak_lr=0.05, warmup_steps=2)
    _, ref = _fit(model, [cb, _reducer(patience=1)], epochs=4)

    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    model.set_weights(keep)
    ckpt = keras.callbacks.ModelCheckpoint(path, save_weights_only=True)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(model, [cb, _reducer(patience=1), ckpt, Stop()], epochs=4)
    resumed = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    resumed.fit(_data()[0][:BATCH], _data()[1][:BATCH], epochs=1, verbose=0)
    resumed.load_weights(path)
    _, rec = _fit(resumed, [cb, _reducer(patience=1)], epochs=4, initial_epoch=2)
    # The resumed epoch runs at the reduced LR of the interrupted run (the
    # fresh plateau callback's own counters are not in a weights file).
    np.testing.assert_allclose(rec.lr[:SPE], ref.lr[2 * SPE : 3 * SPE], rtol=1e-5)
    assert rec.lr[0] == pytest.approx(0.5 * float(cb.schedule(2 * SPE)), rel=1e-5)


def test_plain_keras_loads_a_file_saved_mid_schedule(tmp_path):
    """The controlled optimizer saves exactly Keras's variables: a plain
    optimizer loads all of them (Keras skips them all when counts differ)."""
    path = str(tmp_path / "mid.keras")
    model = _model(GradientCentralization(keras.optimizers.Adam(1e-3)))

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.save(path)

    _fit(model, [ktc.OneCycle(max_lr=0.01), _reducer(), Save()], epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.saving.load_model(path, custom_objects={"Counting": Counting})
    saved = [v for v in model.optimizer.variables if not _control._is_control(v)]
    assert len(loaded.optimizer.variables) == len(saved)
    assert int(ops.convert_to_numpy(loaded.optimizer.iterations)) == SPE


# --- 2. nothing leaks into later fits --------------------------------------------


def test_a_new_schedule_starts_at_scale_one_and_the_lr_is_handed_back():
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    _fit(model, [ktc.OneCycle(max_lr=0.05), _reducer(patience=1)], epochs=4)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.1)
    _, rec = _fit(model, [ktc.OneCycle(max_lr=0.01)], epochs=2)
    assert 0.009 < max(rec.lr) <= 0.01 * (1 + 1e-6)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.1)
    assert _control.current_momentum(model.optimizer) == pytest.approx(0.9)


# --- 3. an interrupted fit leaves nothing in control ---------------------------


@pytest.mark.parametrize("exit_kind", ["keyboard", "error", "stop_training"])
def test_an_interrupted_fit_leaves_no_schedule_in_control(exit_kind):
    model = _model(keras.optimizers.SGD(0.01, momentum=0.5))

    class Out(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                if exit_kind == "keyboard":
                    raise KeyboardInterrupt
                if exit_kind == "error":
                    raise RuntimeError("boom")
                self.model.stop_training = True

    if exit_kind == "stop_training":
        _fit(model, [ktc.OneCycle(max_lr=5.0), Out()], epochs=4)
    else:
        with pytest.raises((KeyboardInterrupt, RuntimeError)):
            _fit(model, [ktc.OneCycle(max_lr=5.0), Out()], epochs=4)
    _, rec = _fit(model, [], epochs=1)
    np.testing.assert_allclose(rec.lr, 0.01, rtol=1e-6)
    np.testing.assert_allclose(rec.momentum, 0.5, rtol=1e-6)
    x, y = _data()
    model.train_on_batch(x[:BATCH], y[:BATCH])
    assert _control.current_lr(model.optimizer) == pytest.approx(0.01)


# --- 5. flush after a scheduled fit ------------------------------------------------


def test_flush_after_a_scheduled_fit_uses_the_schedules_last_step():
    inner = keras.optimizers.SGD(0.5)
    model = _model(GradientAccumulation(inner, steps=3))
    cb = ktc.OneCycle(max_lr=0.05, cycle_momentum=False)
    _fit(model, [cb], epochs=2)  # 8 batches: 2 updates and 2 pending
    assert _control.current_lr(model.optimizer) == pytest.approx(0.5)
    weights = [np.array(ops.convert_to_numpy(v)) for v in model.trainable_weights]
    grads = [np.array(ops.convert_to_numpy(a)) for a in model.optimizer.accumulators]
    count = float(ops.convert_to_numpy(model.optimizer.window_count))
    assert count > 0
    assert model.optimizer.flush()
    last = float(cb.schedule(cb.schedule.total_steps - 1))
    for w, g, v in zip(weights, grads, model.trainable_weights, strict=True):
        step = w - np.asarray(ops.convert_to_numpy(v))
        mean_grad = g / count if np.any(g) else g
        # The weights move by last_lr * gradient (~1e-7: float32 rounding of
        # the weights is the tolerance), not by 0.5 * gradient.
        np.testing.assert_allclose(step, last * mean_grad, rtol=0.1, atol=6e-8)
        assert np.max(np.abs(step)) < 1e-4 * np.max(np.abs(0.5 * mean_grad))
    assert _control.current_lr(model.optimizer) == pytest.approx(0.5)


# --- 6. Keras's own callbacks compose ------------------------------------------


def test_keras_reduce_lr_on_plateau_scales_our_schedule():
    model = _model(keras.optimizers.SGD(0.1))
    cb = ktc.WarmupCosine(peak_lr=0.05, warmup_steps=2)
    _, ref = _fit(model, [cb], epochs=4)
    model = _model(keras.optimizers.SGD(0.1))
    _, rec = _fit(model, [cb, _reducer(patience=1, keras_own=True)], epochs=4)
    # Keras's callback takes epoch 0 as its first best, then reduces at the
    # end of every epoch: epochs 2 and 3 run at 0.5 and 0.25 of the schedule.
    scale = np.repeat([1.0, 1.0, 0.5, 0.25], SPE)
    np.testing.assert_allclose(rec.lr, np.asarray(ref.lr) * scale, rtol=1e-5)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.1)


# --- 7. initial_epoch on a fresh optimizer ------------------------------------


def test_initial_epoch_on_a_fresh_optimizer_continues_the_schedule():
    cb = ktc.OneCycle(max_lr=0.05)
    _, ref = _fit(_model(keras.optimizers.SGD(0.1, momentum=0.9)), [cb], epochs=4)
    fresh = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, rec = _fit(fresh, [cb], epochs=4, initial_epoch=2)
    assert any("fresh optimizer" in str(w.message) for w in caught)
    np.testing.assert_allclose(rec.lr, ref.lr[2 * SPE :], rtol=1e-5)
    np.testing.assert_allclose(rec.momentum, ref.momentum[2 * SPE :], rtol=1e-5)


# --- 8. callbacks are released ---------------------------------------------------


def test_the_model_holds_no_callback_after_its_fit():
    model = _model(keras.optimizers.SGD(0.1))
    refs = []
    for _ in range(3):
        stop = ktc.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
        plateau = ktc.ReduceLROnPlateau(monitor="loss")
        cycle = ktc.OneCycle(max_lr=0.01, cycle_momentum=False)
        _fit(model, [stop, plateau, cycle], epochs=2)
        assert stop.best_weights is None  # restored, then dropped
        refs += [weakref.ref(stop), weakref.ref(plateau)]
        del stop, plateau
    gc.collect()
    assert all(ref() is None for ref in refs)


# --- 9. traces -------------------------------------------------------------------


def _traces(model, runs):
    for callbacks, epochs in runs:
        _fit(model, callbacks(), epochs=epochs)
    return model.counter.traces


def _jit_modes():
    return [True, False] if BACKEND == "torch" else ["auto"]


@pytest.mark.parametrize("jit", _jit_modes())
def test_traces_equal_plain_keras(jit):
    if BACKEND == "torch" and jit is False:
        pytest.skip("eager PyTorch runs `call` every step: nothing is traced")
    plain = _traces(
        _model(keras.optimizers.SGD(0.1, momentum=0.9), jit), [(list, 2)] * 3
    )
    cb = ktc.OneCycle(max_lr=0.05)
    ours = _traces(
        _model(keras.optimizers.SGD(0.1, momentum=0.9), jit),
        [(lambda: [cb], 2), (lambda: [cb], 2), (list, 2)],
    )
    assert ours == plain
    # Reductions over a schedule (ours, smart and Keras's) trace nothing.
    plain = _traces(_model(keras.optimizers.SGD(0.1), jit), [(list, 6)])
    ours = _traces(
        _model(keras.optimizers.SGD(0.1), jit),
        [
            (
                lambda: [
                    ktc.WarmupCosine(peak_lr=0.05, warmup_steps=2),
                    _reducer(patience=1),
                    _reducer(patience=2, keras_own=True),
                ],
                6,
            )
        ],
    )
    assert ours == plain


def test_backup_and_restore_resume_traces_like_plain_keras(tmp_path):
    def run(with_ours):
        model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
        backup = ktc.BackupAndRestore(str(tmp_path / f"b{with_ours}"))

        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    raise KeyboardInterrupt

        extra = [ktc.OneCycle(max_lr=0.05), _reducer()] if with_ours else []
        with pytest.raises(KeyboardInterrupt):
            _fit(model, [backup, *extra, Stop()], epochs=4)
        _fit(model, [backup, *extra], epochs=4)
        return model.counter.traces

    assert run(True) <= run(False)


def test_momentum_cycling_reaches_the_compiled_step():
    """The update used the cycled momentum (SGD: the buffer is m*mu - g*lr)."""
    for jit in _jit_modes():
        model = _model(keras.optimizers.SGD(0.1, momentum=0.9), jit)
        cb = ktc.OneCycle(max_lr=0.05, base_momentum=0.5, max_momentum=0.6)
        _, rec = _fit(model, [cb], epochs=1)
        want = ops.convert_to_numpy(cb.schedule.momentum(np.arange(SPE)))
        np.testing.assert_allclose(rec.momentum, want, rtol=1e-5)
        assert _control.current_momentum(model.optimizer) == pytest.approx(0.9)


def test_keras_learning_rate_scheduler_composes_as_a_scale():
    """A write of `optimizer.learning_rate` while our schedule runs makes the
    LR that value at that step; the schedule keeps its shape from there."""
    cb = ktc.WarmupCosine(peak_lr=0.05, warmup_steps=2)
    _, ref = _fit(_model(keras.optimizers.SGD(0.1)), [cb], epochs=3)
    halve = keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: lr * 0.5 if epoch == 1 else lr
    )
    model = _model(keras.optimizers.SGD(0.1))
    _, rec = _fit(model, [cb, halve], epochs=3)
    np.testing.assert_allclose(rec.lr[:SPE], ref.lr[:SPE], rtol=1e-6)
    np.testing.assert_allclose(rec.lr[SPE:], 0.5 * np.asarray(ref.lr[SPE:]), rtol=1e-5)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.1)


def test_swa_lr_phase_runs_through_the_control_core():
    """`StochasticWeightAveraging(swa_lr=...)` anneals from the LR at its
    start to `swa_lr` in the compiled step, takes over from a schedule
    callback, and hands the LR back when `fit` ends."""
    from keras_tricks.callbacks.stochastic_weight_averaging import SWALRSchedule

    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    swa = ktc.StochasticWeightAveraging(start=2, swa_lr=0.01, anneal_epochs=1)
    _, rec = _fit(model, [swa], epochs=4)
    want = SWALRSchedule(0.1, 0.01, SPE, "cos")
    expected = np.concatenate(
        [np.full(2 * SPE, 0.1), ops.convert_to_numpy(want(np.arange(2 * SPE)))]
    )
    np.testing.assert_allclose(rec.lr, expected, rtol=1e-5)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.1)
    assert swa.n_averaged == 2
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(want)
    )
    assert again.get_config() == want.get_config()
    assert ktc.StochasticWeightAveraging.from_config(swa.get_config()).get_config() == (
        swa.get_config()
    )

    # Over a OneCycle callback: the schedule runs until the SWA phase.
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    cycle = ktc.OneCycle(max_lr=0.05)
    swa = ktc.StochasticWeightAveraging(start=2, swa_lr=0.01, anneal_epochs=0)
    _, rec = _fit(model, [cycle, swa], epochs=4)
    one_cycle = ops.convert_to_numpy(cycle.schedule(np.arange(2 * SPE)))
    np.testing.assert_allclose(rec.lr[: 2 * SPE], one_cycle, rtol=1e-5)
    np.testing.assert_allclose(rec.lr[2 * SPE :], 0.01, rtol=1e-5)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.1)
    assert _control.current_momentum(model.optimizer) == pytest.approx(0.9)


# --- refits: the program in place is reused, its host tables fit this fit ------


def test_a_refit_reuses_the_program_and_a_longer_fit_gets_its_own_tables():
    """The same callback in a second `fit` of the same length reuses the
    installed program (no host tables rebuilt); a longer `fit` of the same
    schedule (explicit `total_steps`) gets tables that reach its last step, so
    the logged "lr" follows the schedule to the end (the table of
    the first fit, clamped, held it at the first fit's last step on JAX), and
    traces as plain Keras does (TensorFlow: once more, for the longer table)."""
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    cb = ktc.OneCycle(max_lr=0.05, total_steps=10 * SPE)
    _fit(model, [cb], epochs=2)
    first = _control._state(model.optimizer).program
    _fit(model, [cb], epochs=2)
    assert _control._state(model.optimizer).program is first
    history, rec = _fit(model, [cb], epochs=6)
    assert _control._state(model.optimizer).program.table_size >= 6 * SPE + 1
    want = ops.convert_to_numpy(cb.schedule(np.arange(6 * SPE)))
    np.testing.assert_allclose(rec.lr, want, rtol=1e-5)
    logged = history.history["lr"]
    # Keras logs the LR after each epoch's last update: the next step's.
    ends = ops.convert_to_numpy(cb.schedule(np.arange(1, 7) * SPE))
    np.testing.assert_allclose(logged, ends, rtol=1e-5)

    plain = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    for epochs in (2, 2, 6):
        _fit(plain, [], epochs=epochs)
    if BACKEND != "torch":  # eager PyTorch: `call` runs every step
        # TensorFlow's step reads the table: the longer fit's traces once more.
        extra = 1 if BACKEND == "tensorflow" else 0
        assert model.counter.traces == plain.counter.traces + extra


def test_host_assign_gives_each_variable_its_own_value():
    """Keras's JAX trainer donates the optimizer's variables to the step: a
    value shared by two variables (or with the caller) would be deleted, or
    changed, under the other one. On JAX control's writes leave a NumPy copy
    as the variable's value, which the next step takes as an argument."""
    from keras_tricks._control.state import host_assign, host_assign_many

    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    _fit(model, [ktc.OneCycle(max_lr=0.05), _reducer()], epochs=2)
    opt = model.optimizer
    state = _control._state(opt)
    mine = np.asarray(0.07, "float32")
    host_assign_many([(opt._learning_rate, mine), (state.scale, mine)])
    lr_value = opt._learning_rate.value
    assert lr_value is not mine and lr_value is not state.control.value
    assert mine.flags.writeable  # the caller's array is left alone
    mine[...] = 5.0
    assert float(ops.convert_to_numpy(opt._learning_rate)) == pytest.approx(0.07)
    if BACKEND == "jax":
        # No transfer: the NumPy copy stands as the value, read-only.
        assert isinstance(lr_value, np.ndarray) and not lr_value.flags.writeable
    host_assign(opt._learning_rate, 0.05)
    host_assign(state.origin, 0)
    # Fits over the assigned variables: no "Array has been deleted", and the
    # steps replace the NumPy values with device arrays.
    _fit(model, [ktc.OneCycle(max_lr=0.05), _reducer()], epochs=2)
    _fit(model, [], epochs=1)
    assert np.isfinite(_control.current_lr(model.optimizer))
    if BACKEND == "jax":
        import jax

        assert all(isinstance(v.value, jax.Array) for v in opt.variables)


def test_host_reads_follow_every_write_of_a_variable():
    """Control's host reads (cached on JAX while a variable holds the same
    array) see writes by Keras, by the train step and by control itself."""
    from keras_tricks._control.state import _host_array, host_assign, host_scalar

    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    _fit(model, [ktc.OneCycle(max_lr=0.05)], epochs=1)
    opt = model.optimizer
    lr = opt._learning_rate
    assert host_scalar(lr) == pytest.approx(0.1)
    lr.assign(0.25)  # Keras's own assign, not control's
    assert host_scalar(lr) == pytest.approx(0.25)
    host_assign(lr, 0.5)
    assert host_scalar(lr) == pytest.approx(0.5)
    before = host_scalar(opt._iterations)
    _fit(model, [], epochs=1)
    assert host_scalar(opt._iterations) == before + SPE
    assert host_scalar(lr) == pytest.approx(0.5)
    state = _control._state(opt)
    state.scale.assign(0.75)
    assert host_scalar(state.scale) == pytest.approx(0.75)
    # [flags, scale, own scale] (and on JAX the origin's halves).
    np.testing.assert_allclose(_host_array(state.control)[:4], [0.0, 0.0, 0.75, 1.0])


@pytest.mark.parametrize(
    "origin", [0, 5, -7, 2**24 - 1, 2**24, 2**24 + 7, -(2**24) - 3, 2**40 + 11, -(2**47)]
)
def test_an_origin_round_trips_exactly_through_its_halves(origin):
    """JAX keeps the origin in `kt_control` as two float32 halves; each must
    be exact (float32 alone rounds 2**24 + 7 to 2**24 + 8)."""
    from keras_tricks._control.state import _Origin

    part = _Origin(keras.Variable(np.zeros((6,), "float32")), "int64")
    entries = part.encode(origin)
    assert all(float(np.float32(e)) == e for e in entries)
    assert 0 <= entries[1] < 2**24
    assert int(part.decode(np.asarray(entries, np.float32))) == origin


def test_a_schedule_starts_exactly_on_a_step_counter_past_float32s_integers():
    """The origin of a fit on an optimizer past 2**24 steps is exact in the
    compiled step: the schedule runs from its step 0, not 1 off."""
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    model.optimizer.iterations.assign(2**24 + 7)
    cb = ktc.OneCycle(max_lr=0.05)
    _, rec = _fit(model, [cb], epochs=2)
    expected = ops.convert_to_numpy(cb.schedule(np.arange(2 * SPE)))
    np.testing.assert_allclose(rec.lr, expected, rtol=1e-5)
    assert _control.iterations(model.optimizer) == 2**24 + 7 + 2 * SPE


def test_control_state_survives_copies_casts_and_mixed_writes():
    """A controlled variable can be deep-copied and pickled after `fit` (the
    JAX read cache keeps no donated array on it); the origin reads exactly
    inside a mixed-precision layer's autocast; a whole-variable write then a
    part write in one call leaves the caller's array alone."""
    import copy
    import pickle

    from keras.src.backend import AutocastScope

    from keras_tricks._control.state import host_assign, host_assign_many, host_scalar

    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    _fit(model, [ktc.OneCycle(max_lr=0.05), _reducer()], epochs=2)
    opt = model.optimizer
    # Control writes the LR, and a plain fit's steps replace (on JAX:
    # donate) the written array; nothing of control reads it after.
    host_assign(opt._learning_rate, 0.05)
    model.fit(*_data(), batch_size=BATCH, epochs=1, verbose=0)
    for variable in opt.variables:
        copied = copy.deepcopy(variable)
        np.testing.assert_array_equal(copied.numpy(), variable.numpy())
        pickle.dumps(variable)

    state = _control._state(opt)
    host_assign(state.origin, 1_000_003)
    with AutocastScope("float16"):
        assert int(ops.convert_to_numpy(state.origin.value)) == 1_000_003
    host_assign(state.origin, -7)
    with AutocastScope("bfloat16"):
        assert int(ops.convert_to_numpy(state.origin.value)) == -7
    assert host_scalar(state.origin) == -7

    mine = np.ones(state.control.shape, "float32")
    host_assign_many([(state.control, mine), (state.scale, 7.0)])
    np.testing.assert_array_equal(mine, np.ones_like(mine))
    assert host_scalar(state.scale) == 7.0


def _assert_mirrors_hold(optimizer):
    """The host's copy of each control variable (`state._mirror`, what host
    reads of the flags, scales and origin see), where there is one, equals
    its value."""
    checked = 0
    for opt in _control.base_optimizers(optimizer):
        for variable in opt.variables:
            if _control._is_control(variable):
                device = np.asarray(ops.convert_to_numpy(variable.value))
                if variable._kt_host is not None:
                    np.testing.assert_array_equal(variable._kt_host, device)
                checked += 1
    assert checked >= 1


def test_host_copies_of_the_control_state_follow_every_workflow(tmp_path):
    """Control reads its own variables from the host's copy: after every way
    into and out of `fit` that writes them, the copy equals the value."""
    model = _model(GradientCentralization(keras.optimizers.SGD(0.1, momentum=0.9)))
    opt = model.optimizer
    _fit(model, [ktc.OneCycle(max_lr=0.05), _reducer()], epochs=3)
    _assert_mirrors_hold(opt)
    # Control's own writes (the release) keep the host's copy.
    assert _control._state(_control.base_optimizers(opt)[0]).control._kt_host is not None

    class Out(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1 and self.model.optimizer.iterations > SPE * 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(model, [ktc.WarmupCosine(peak_lr=0.05), _reducer(), Out()], epochs=3)
    _assert_mirrors_hold(opt)  # still on: the guard releases at the next fit
    _fit(model, [_reducer(keras_own=True)], epochs=2)
    _assert_mirrors_hold(opt)

    backup = ktc.BackupAndRestore(str(tmp_path / "backup"))
    cb = ktc.OneCycle(max_lr=0.05)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        _fit(model, [cb, _reducer(), backup, Stop()], epochs=4)
    _fit(model, [cb, _reducer(), backup], epochs=4)
    _assert_mirrors_hold(opt)

    _control.set_lr_scale(opt, 0.5)
    with _control.last_schedule(opt):
        _assert_mirrors_hold(opt)
    _assert_mirrors_hold(opt)

    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, custom_objects={"Counting": Counting})
    _fit(loaded, [ktc.OneCycle(max_lr=0.05), _reducer()], epochs=2)
    _assert_mirrors_hold(loaded.optimizer)
    # Another optimizer's variables copied in carry its control state: the
    # control variables keep this one's.
    other = _model(GradientCentralization(keras.optimizers.SGD(0.1, momentum=0.9)))
    _fit(other, [ktc.OneCycle(max_lr=0.05), _reducer()], epochs=1)
    _control.start(other.optimizer, 12345, lr_on=True, momentum_on=True)
    base, source = (_control.base_optimizers(o.optimizer)[0] for o in (model, other))
    before = [np.array(v._kt_host) for v in base.variables if _control._is_control(v)]
    base.set_weights([np.array(ops.convert_to_numpy(v)) for v in source.variables])
    _assert_mirrors_hold(opt)
    after = [v._kt_host for v in base.variables if _control._is_control(v)]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert _control.iterations(opt) == _control.iterations(other.optimizer)
    # And the step reads what the host reads: no schedule in control now.
    _, rec = _fit(loaded, [], epochs=1)
    np.testing.assert_allclose(rec.lr, _control.current_lr(loaded.optimizer), rtol=1e-6)


def test_the_host_copy_stands_through_the_epoch_ends_of_a_fit():
    """Keras's JAX trainer removes every optimizer variable's value while an
    epoch runs and assigns them back at its end; the step only reads the
    control state, so the host's copy stands there (no device read at each
    epoch end) and still equals the value. On every backend a copy, where
    there is one, equals the value at each epoch end."""
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    base = model.optimizer
    kept = []

    class Look(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # (Keras's JAX trainer assigned its state back before this.)
            kept.append(_control._state(base).control._kt_host is not None)
            _assert_mirrors_hold(base)

    _fit(model, [Look(), ktc.OneCycle(max_lr=0.05), _reducer()], epochs=3)
    assert len(kept) == 3
    if BACKEND == "jax":
        assert all(kept)
    # The host reads at those epoch ends were right: the LR logged at each
    # epoch end is the one the step used next.
    history, rec = _fit(model, [Look(), ktc.WarmupCosine(peak_lr=0.05)], epochs=3)
    assert all(kept)
    np.testing.assert_allclose(history.history["lr"][:2], rec.lr[SPE::SPE][:2], rtol=1e-5)
    assert _control.current_lr(base) == pytest.approx(0.1)


def test_the_host_copy_follows_an_epoch_whose_first_step_never_ran():
    """Data that runs out at an epoch's first batch: Keras's JAX trainer
    assigns back its state of the epoch before, older than the plateau
    reduction made since (Keras loses that write): the host copy must
    follow the variable, not keep the lost write."""

    def batches():
        for _ in range(4):
            yield np.ones((4, 4), "float32"), np.zeros((4, 1), "float32")

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            _assert_mirrors_hold(self.model.optimizer)

        def on_epoch_end(self, epoch, logs=None):
            _assert_mirrors_hold(self.model.optimizer)

    model = _model(keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 1000)))
    reducer = ktc.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: "Your input ran out of data"
        model.fit(batches(), steps_per_epoch=2, epochs=4, callbacks=[Spy(), reducer], verbose=0)
    _assert_mirrors_hold(model.optimizer)
    state = _control._state(model.optimizer)
    device = float(np.asarray(ops.convert_to_numpy(state.control.value))[3])
    assert _control.get_lr_scale(model.optimizer) == pytest.approx(device)


def test_a_part_of_the_control_vector_broadcasts_like_numpy():
    from keras_tricks._control.state import _host_array

    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    _fit(model, [ktc.OneCycle(max_lr=0.05)], epochs=1)
    state = _control._state(model.optimizer)
    shape = tuple(state.control.shape)
    state.flags.assign([1.0])
    np.testing.assert_array_equal(state.flags.numpy(), [1.0, 1.0])
    state.flags.assign(0.0)
    np.testing.assert_array_equal(state.flags.numpy(), [0.0, 0.0])
    with pytest.raises(ValueError):
        state.flags.assign([1.0, 0.0, 1.0])
    assert tuple(np.shape(_host_array(state.control))) == shape
    _assert_mirrors_hold(model.optimizer)


def test_set_weights_keeps_the_control_values_without_a_host_copy():
    """The twin's `set_weights` keeps control's values also when no host
    copy stands (on PyTorch a read of the tensor shares its memory, which
    Keras's `set_weights` then overwrites in place)."""
    model = _model(keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 1000)))
    _fit(model, [], epochs=1)
    opt = model.optimizer
    _control.take_control(opt, model)
    state = _control._state(opt)
    state.own_scale.assign(0.5)
    # Any other writer drops the host copy.
    state.control.assign(np.array(ops.convert_to_numpy(state.control.value)))
    assert state.control._kt_host is None
    weights = [np.array(ops.convert_to_numpy(v.value)) for v in opt.variables]
    for i, v in enumerate(opt.variables):
        if v is state.control:
            weights[i] = np.zeros_like(weights[i])
    opt.set_weights(weights)
    assert float(np.asarray(ops.convert_to_numpy(state.control.value))[3]) == 0.5
    assert _control.get_lr_scale(opt) == 0.5


def test_a_read_inside_a_stateless_scope_is_not_kept_as_the_host_copy():
    """Inside a stateless scope a variable reads the scope's value: a host
    read there must not become the host's copy of the variable."""
    from keras.src.backend.common.stateless_scope import StatelessScope

    from keras_tricks._control.state import host_scalar

    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    _fit(model, [ktc.OneCycle(max_lr=0.05)], epochs=1)
    state = _control._state(model.optimizer)
    state.control._kt_host = None
    other = np.asarray(ops.convert_to_numpy(state.control.value)).copy()
    other[2] = 0.25
    with StatelessScope(state_mapping=[(state.control, ops.convert_to_tensor(other))]):
        assert host_scalar(state.scale) == pytest.approx(0.25)
    assert host_scalar(state.scale) == pytest.approx(1.0)
    _assert_mirrors_hold(model.optimizer)


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's eager step")
def test_eager_updates_from_host_tables_equal_the_compiled_steps(monkeypatch):
    """PyTorch's eager step on a CPU takes its LR and momentum from the
    program's host tables as numbers (`twins._host_values`); the tensor path
    (a GPU's) and the compiled step must train the same weights."""
    from keras_tricks._control import twins

    calls = []
    original = twins._host_values

    def counting(opt, state):
        calls.append(1)
        return original(opt, state)

    monkeypatch.setattr(twins, "_host_values", counting)

    class TensorPath(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            _control._state(self.model.optimizer).host_step = False

    def run(jit_compile, extra=(), refit=True):
        model = _model(keras.optimizers.SGD(0.1, momentum=0.9), jit_compile=jit_compile)
        cbs = [ktc.OneCycle(max_lr=0.05), _reducer(), *extra]
        _fit(model, cbs, epochs=3)
        if refit:
            _fit(model, [ktc.WarmupCosine(peak_lr=0.02, warmup_steps=2)], epochs=2)
        return [np.array(ops.convert_to_numpy(v)) for v in model.trainable_weights]

    host = run(False)
    assert len(calls) == 5 * SPE
    del calls[:]
    tensor = run(False, [TensorPath()])
    assert not calls
    for a, b in zip(host, tensor, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    host = run(False, refit=False)
    compiled = run(True, refit=False)
    for a, b in zip(host, compiled, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_schedules_run_in_an_eager_step_of_every_backend():
    """`run_eagerly=True` (TensorFlow, JAX) and PyTorch's eager step train
    with the schedule the compiled step uses."""
    def run(eager):
        model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
        model.compile(model.optimizer, "mse", run_eagerly=eager)
        history, rec = _fit(model, [ktc.OneCycle(max_lr=0.05), _reducer()], epochs=3)
        weights = [np.array(ops.convert_to_numpy(v)) for v in model.trainable_weights]
        return history.history["lr"], rec.lr, rec.momentum, weights

    eager, compiled = run(True), run(False)
    for a, b in zip(eager[:3], compiled[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    for a, b in zip(eager[3], compiled[3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_keras_write_of_the_control_state_reaches_host_reads():
    """`Model.set_state_tree` (a state-tree checkpoint restored) writes every
    optimizer variable, control's too: the host's copy must not hide it."""
    schedule = keras.optimizers.schedules.CosineDecay(0.1, 1000)
    model = _model(keras.optimizers.SGD(schedule))
    _fit(model, [_reducer(patience=1)], epochs=1)
    opt = model.optimizer
    _control.set_lr_scale(opt, 0.5)
    saved = model.get_state_tree(value_format="numpy_array")
    _control.set_lr_scale(opt, 1.0)
    model.set_state_tree(saved)
    assert _control.get_lr_scale(opt) == pytest.approx(0.5)
    _control.multiply_lr(opt, 0.5)
    assert _control.get_lr_scale(opt) == pytest.approx(0.25)
    _assert_mirrors_hold(opt)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX variables holding NumPy arrays")
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict", "test_on_batch"])
def test_numpy_values_left_by_control_meet_a_later_distribution(method):
    """Control's writes on JAX leave NumPy arrays as values (the next step
    takes them); under a `keras.distribution` Keras asks every value for its
    sharding, so the model's methods first give them device arrays."""
    import jax

    def values_are_device_arrays(model):
        return all(isinstance(v.value, jax.Array) for v in model.optimizer.variables)

    model = _model(keras.optimizers.SGD(0.05, momentum=0.9))
    cb = ktc.WarmupCosine(peak_lr=0.1, total_steps=10 * SPE)
    _fit(model, [cb, _reducer(factor=0.5)], epochs=2)
    assert not values_are_device_arrays(model)  # the release's writes
    x, y = _data()
    # One device: the distribution of a model built outside it (two would
    # fail for plain Keras too).
    distribution = keras.distribution.DataParallel(devices=jax.devices()[:1])
    with distribution.scope():
        if method == "predict":
            model.predict(x, verbose=0)
        elif method == "test_on_batch":
            model.test_on_batch(x, y)
        else:
            getattr(model, method)(x, y, verbose=0)
    assert values_are_device_arrays(model)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.05)
    _assert_mirrors_hold(model.optimizer)


def _weights(opt):
    return [np.array(ops.convert_to_numpy(v.value)) for v in opt.variables]


def _keras_weights(opt):
    return [w for v, w in zip(opt.variables, _weights(opt)) if not _control._is_control(v)]


def test_optimizer_weights_pair_by_role_whenever_control_was_taken():
    """Control taken before the optimizer is built (TensorFlow's `fit`: it
    builds in the first traced step, after `on_train_begin`) or after it
    lists the same
    variables in the same order, Keras's first and control's last, so that
    `set_weights` between optimizers pairs each value with its variable:
    between two controlled ones, from a plain Keras optimizer (Keras's
    variables only) and into one (a plain `set_weights` zips Keras's)."""
    models = [_model(keras.optimizers.SGD(0.1, momentum=0.9)) for _ in range(3)]
    before, after, plain = (m.optimizer for m in models)
    _control.take_control(before, models[0])
    for opt, model in zip((before, after, plain), models):
        opt.build(model.trainable_variables)
    _control.take_control(after, models[1])

    def names(opt):
        # (Layer names differ from model to model.)
        return [(v.name.split("_")[-1], tuple(v.shape)) for v in opt.variables]

    assert names(before) == names(after)
    assert all(_control._is_control(v) for v in before.variables[-1:])
    rng = np.random.default_rng(0)
    for v in before.variables:
        if not _control._is_control(v) and "float" in str(v.dtype):
            v.assign(rng.normal(size=v.shape).astype("float32"))
    source = _keras_weights(before)

    after.set_weights(_weights(before))
    for got, want in zip(_keras_weights(after), source, strict=True):
        np.testing.assert_array_equal(got, want)

    plain.set_weights(_weights(before))
    for got, want in zip(_weights(plain), source, strict=True):
        np.testing.assert_array_equal(got, want)

    fresh = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    fresh.optimizer.build(fresh.trainable_variables)
    _control.take_control(fresh.optimizer, fresh)
    kept = [np.array(w) for v, w in zip(fresh.optimizer.variables, _weights(fresh.optimizer))
            if _control._is_control(v)]
    fresh.optimizer.set_weights(_weights(plain))
    for got, want in zip(_keras_weights(fresh.optimizer), source, strict=True):
        np.testing.assert_array_equal(got, want)
    control = [w for v, w in zip(fresh.optimizer.variables, _weights(fresh.optimizer))
               if _control._is_control(v)]
    for got, want in zip(control, kept, strict=True):
        np.testing.assert_array_equal(got, want)
    # Into the optimizer whose control came first (in the middle of the
    # variables Keras keeps).
    for v in before.variables:
        if not _control._is_control(v) and "float" in str(v.dtype):
            v.assign(np.zeros(v.shape, "float32"))
    before.set_weights(_weights(plain))
    for got, want in zip(_keras_weights(before), source, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="set_weights"):
        fresh.optimizer.set_weights(_weights(plain)[:-1])


def test_the_variable_order_follows_a_removed_lr_variable():
    """Keras's LR setter removes the LR variable when a schedule replaces a
    float LR; a build may then add as many variables as it removed: the
    control variables must still come last."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.LayerNormalization(center=False)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    opt = model.optimizer
    _control.take_control(opt, model)
    count = len(opt.variables)
    opt.learning_rate = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    opt.build(model.trainable_variables)
    assert len(opt.variables) == count
    control = [_control._is_control(v) for v in opt.variables]
    assert control == sorted(control)
    assert control[-1]
