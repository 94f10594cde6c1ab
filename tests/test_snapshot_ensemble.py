"""SnapshotEnsemble: snapshots at the cycle ends the schedule itself defines."""

import os
import warnings

import keras
import numpy as np
import pytest

import keras_tricks
from keras_tricks import schedules
from keras_tricks.callbacks import SGDR, BackupAndRestore, CyclicLR, SnapshotEnsemble


def _restarts(schedule, total):
    """Reference: the steps where the LR jumps up (a new cycle begins)."""
    lr = np.asarray(keras.ops.convert_to_numpy(schedule(np.arange(total + 1))))
    return [int(t) for t in range(1, total + 1) if lr[t] > lr[t - 1] + 1e-9]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(first_cycle_steps=10, t_mul=1.0),
        dict(first_cycle_steps=10, t_mul=2.0),
        dict(first_cycle_steps=8, t_mul=1.5),
        dict(first_cycle_steps=7, t_mul=1.3),
        dict(first_cycle_steps=10, t_mul=2.0, warmup_steps=5),
        dict(first_cycle_steps=10, t_mul=1.0, cycle_limit=3),
        dict(first_cycle_steps=20, t_mul=0.5),
    ],
)
def test_sgdr_cycle_ends_are_the_schedule_restarts(kwargs):
    schedule = schedules.SGDR(max_lr=1.0, min_lr=0.01, **kwargs)
    total = 200
    ends = schedule.cycle_end_steps(total)
    warmup = kwargs.get("warmup_steps", 0)
    # The warmup rises too: a restart is a jump after it.
    restarts = [t for t in _restarts(schedule, total) if t > warmup]
    limit = kwargs.get("cycle_limit")
    if limit is not None:
        # The last cycle ends without a restart: the LR holds min_lr.
        assert ends[:-1] == restarts and len(ends) == limit
        lr = keras.ops.convert_to_numpy(schedule(np.arange(total)))
        assert np.allclose(lr[ends[-1] :], 0.01) and lr[ends[-1] - 1] > 0.01
    elif kwargs["t_mul"] < 1.0:
        # Cycles shrink towards one update (the LR holds min_lr from step
        # 40): finitely many ends, each restart among them.
        assert set(restarts) <= set(ends) and ends == sorted(set(ends))
        assert ends[-1] <= 40
    else:
        assert ends == restarts


def test_cyclic_cycle_ends_are_the_lr_minima():
    schedule = schedules.CyclicLR(0.01, 0.1, step_size=5, mode="triangular2")
    lr = keras.ops.convert_to_numpy(schedule(np.arange(61)))
    minima = [t for t in range(1, 61) if np.isclose(lr[t], 0.01)]
    assert schedule.cycle_end_steps(60) == minima == [10, 20, 30, 40, 50, 60]


def test_cycle_end_steps_rejects_bad_total():
    with pytest.raises(ValueError, match="total_steps"):
        schedules.SGDR(1.0, 10).cycle_end_steps(-1)


# --- the callback -------------------------------------------------------------


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = rng.integers(0, 3, size=n)
    return x, y


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile(
        keras.optimizers.SGD(momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


class _Record(keras.callbacks.Callback):
    """The weights at the end of every epoch (the reference for snapshots)."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [np.array(w) for w in self.model.get_weights()]


def _assert_same(a, b, atol=0.0):
    assert len(a) == len(b)
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_allclose(wa, wb, atol=atol, rtol=0)


def test_snapshots_at_the_cycle_ends_of_an_sgdr_callback():
    x, y = _data()
    model = _model()
    sgdr = SGDR(max_lr=0.1, first_cycle_epochs=1, t_mul=2.0)
    snaps = SnapshotEnsemble(sgdr)
    record = _Record()
    model.fit(x, y, epochs=7, batch_size=16, verbose=0, shuffle=False,
              callbacks=[sgdr, snaps, record])
    # 4 batches per epoch: cycles of 4, 8, 16 updates end after epochs 0, 2, 6.
    assert snaps.snapshot_epochs == [0, 2, 6]
    assert snaps.snapshot_steps == sgdr.schedule.cycle_end_steps(28) == [4, 12, 28]
    for epoch, weights in zip(snaps.snapshot_epochs, snaps.snapshots, strict=True):
        _assert_same(weights, record.weights[epoch])


@keras.saving.register_keras_serializable(package="keras_tricks_tests")
def snapshot_windows(updates):
    return 1 + keras.ops.minimum(updates, 3)


def test_epoch_spans_under_a_callable_accumulation():
    # Windows of 1, 2, 3, 4 micro-batches, 4 batches an epoch: epochs end at
    # updates 2, 3, 4; cycles of 2 updates end at 2 and 4.
    x, y = _data()
    model = _model()
    model.compile(
        keras_tricks.optimizers.GradientAccumulation(
            keras.optimizers.SGD(momentum=0.9), snapshot_windows
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    sgdr = SGDR(max_lr=0.1, first_cycle_steps=2)
    snaps = SnapshotEnsemble(sgdr)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False,
              callbacks=[sgdr, snaps])
    assert snaps.snapshot_epochs == [0, 2]
    assert snaps.snapshot_steps == [2, 4]


def test_keeps_the_last_n_and_reads_a_schedule_given_to_the_optimizer():
    x, y = _data()
    model = _model()
    schedule = schedules.CyclicLR(0.001, 0.05, step_size=2)
    model.compile(
        keras.optimizers.SGD(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    snaps = SnapshotEnsemble(schedule, n=2)
    record = _Record()
    model.fit(x, y, epochs=5, batch_size=16, verbose=0, shuffle=False,
              callbacks=[snaps, record])
    # A cycle is 4 updates = 1 epoch: all 5 epochs end one; keep the last 2.
    assert snaps.snapshot_epochs == [3, 4]
    assert snaps.snapshot_steps == [16, 20]
    _assert_same(snaps.snapshots[-1], record.weights[4])


def test_cycle_ending_inside_an_epoch_warns_and_snapshots_at_its_end():
    x, y = _data()
    model = _model()
    sgdr = SGDR(max_lr=0.1, first_cycle_steps=6)
    snaps = SnapshotEnsemble(sgdr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[sgdr, snaps])
    assert sum("inside epoch" in str(w.message) for w in caught) == 1
    # Ends at 6 and 12 updates: in epoch 1 (updates 4..8) and at epoch 2's end.
    assert snaps.snapshot_epochs == [1, 2] and snaps.snapshot_steps == [6, 12]


def test_predict_and_as_model_average_the_snapshots(tmp_path):
    x, y = _data()
    model = _model()
    sgdr = SGDR(max_lr=0.1, first_cycle_epochs=1)
    snaps = SnapshotEnsemble(sgdr, n=3)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[sgdr, snaps])
    final = model.get_weights()
    # Reference: each snapshot through the model, softmax in NumPy, mean.
    probs = []
    for weights in snaps.snapshots:
        model.set_weights(weights)
        logits = model.predict(x, verbose=0).astype("float64")
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs.append(e / e.sum(1, keepdims=True))
    model.set_weights(final)
    expected = np.mean(probs, axis=0)
    got = snaps.predict(x, activation="softmax")
    np.testing.assert_allclose(got, expected, atol=1e-6)
    _assert_same(model.get_weights(), final)  # put back
    ensemble = snaps.as_model(activation="softmax")
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-5)
    path = os.path.join(tmp_path, "ensemble.keras")
    ensemble.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)


def test_two_fits_start_afresh():
    x, y = _data()
    model = _model()
    sgdr = SGDR(max_lr=0.1, first_cycle_epochs=1)
    snaps = SnapshotEnsemble(sgdr)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[sgdr, snaps])
    assert snaps.snapshot_epochs == [0, 1, 2]
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[sgdr, snaps])
    assert snaps.snapshot_epochs == [0, 1]
    assert len(snaps.snapshots) == 2


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("Interrupted!")


@pytest.mark.parametrize("backup_first", [True])
def test_backup_and_restore_resumes_with_the_snapshots(tmp_path, backup_first):
    x, y = _data()

    def run(interrupt_at=None, backup_dir=None):
        model = _model()
        sgdr = SGDR(max_lr=0.1, first_cycle_epochs=1, t_mul=2.0)
        snaps = SnapshotEnsemble(sgdr, n=2)
        own = [sgdr, snaps]
        if backup_dir is not None:
            backup = BackupAndRestore(backup_dir)
            own = [backup, *own] if backup_first else [*own, backup]
        if interrupt_at is not None:
            own.append(_Interrupt(interrupt_at))
        model.fit(x, y, epochs=7, batch_size=16, verbose=0, shuffle=False, callbacks=own)
        return snaps

    straight = run()
    backup_dir = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="Interrupted"):
        run(interrupt_at=5, backup_dir=backup_dir)
    resumed = run(backup_dir=backup_dir)
    assert resumed.snapshot_epochs == straight.snapshot_epochs == [2, 6]
    for a, b in zip(resumed.snapshots, straight.snapshots, strict=True):
        _assert_same(a, b, atol=1e-5)


def test_config_round_trip():
    sgdr = SGDR(max_lr=0.1, first_cycle_epochs=1)
    snaps = SnapshotEnsemble(sgdr, n=4, verbose=1)
    config = snaps.get_config()
    again = SnapshotEnsemble.from_config(config)
    assert again.get_config() == config
    assert isinstance(again.schedule_source, SGDR)
    on_schedule = SnapshotEnsemble(schedules.SGDR(0.1, 10), n=None)
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(on_schedule)
    )
    assert again.get_config() == on_schedule.get_config()
    assert isinstance(again.schedule_source, schedules.SGDR)


def test_errors():
    with pytest.raises(TypeError, match="schedule"):
        SnapshotEnsemble(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))
    with pytest.raises(TypeError, match="schedule"):
        SnapshotEnsemble(keras.callbacks.History())
    with pytest.raises(ValueError, match="Received: n=0"):
        SnapshotEnsemble(schedules.SGDR(0.1, 10), n=0)
    with pytest.raises(ValueError, match="Received: n=True"):
        SnapshotEnsemble(schedules.SGDR(0.1, 10), n=True)
    assert SnapshotEnsemble(schedules.SGDR(0.1, 10), n=np.int64(3)).n == 3
    snaps = SnapshotEnsemble(schedules.SGDR(0.1, 10))
    with pytest.raises(ValueError, match="no snapshot"):
        snaps.predict(np.zeros((1, 6)))


def test_public_names():
    assert keras_tricks.callbacks.SnapshotEnsemble is SnapshotEnsemble
    assert CyclicLR is keras_tricks.callbacks.CyclicLR
