"""Tests for keras_tricks.callbacks.BackupAndRestore: decisions survive a restart."""

import json
import os

import keras
import numpy as np
import pytest

from keras_tricks import _control
from keras_tricks.callbacks import (
    BackupAndRestore,
    EarlyStopping,
    ReduceLROnPlateau,
    SmartReduceLROnPlateau,
)

# A made-up metric per epoch, injected into the logs: the decisions of the
# callbacks depend only on it, so they can be compared run to run.
TRACE = [1.0, 0.9, 0.95, 0.97, 0.85, 0.86, 0.87, 0.88, 0.8, 0.81, 0.82, 0.83]


class _Inject(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        logs["fake_loss"] = TRACE[epoch]


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("Interrupted!")


class _LRLog(keras.callbacks.Callback):
    def __init__(self, record):
        super().__init__()
        self.record = record

    def on_epoch_begin(self, epoch, logs=None):
        self.record[epoch] = round(_control.current_lr(self.model.optimizer), 10)


def _data():
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(16, 3)).astype("float32"),
        rng.normal(size=(16, 1)).astype("float32"),
    )


def _model(schedule=False):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    lr = 0.1
    if schedule:
        lr = keras.optimizers.schedules.ExponentialDecay(0.1, 4, 0.9)
    model.compile(keras.optimizers.SGD(lr), "mse")
    return model


def _fit(model, callbacks, epochs=12):
    x, y = _data()
    return model.fit(
        x, y, batch_size=8, epochs=epochs, shuffle=False, callbacks=callbacks, verbose=0
    )


def _run(
    make_callbacks, tmp_path, interrupt_at=None, backup_first=True, schedule=False
):
    """One run, or an interrupted run and its resumption with fresh objects."""
    record = {}
    backup_dir = str(tmp_path / f"backup_{interrupt_at}_{backup_first}")

    def callbacks(extra):
        own = make_callbacks()
        backup = BackupAndRestore(backup_dir)
        listed = [_Inject(), *own, _LRLog(record)]
        listed = [backup, *listed] if backup_first else [*listed, backup]
        return own, listed + extra

    if interrupt_at is not None:
        model = _model(schedule)
        _, listed = callbacks([_Interrupt(interrupt_at)])
        with pytest.raises(RuntimeError, match="Interrupted"):
            _fit(model, listed)
        with open(os.path.join(backup_dir, "keras_tricks_state.json")) as f:
            assert json.load(f)["epoch"] == interrupt_at
    model = _model(schedule)  # a fresh model and fresh callbacks
    own, listed = callbacks([])
    history = _fit(model, listed)
    return model, own, record, history


def _same_weights(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backup_first", [True, False])
def test_reduce_lr_resumes_with_the_same_lr_trajectory(tmp_path, backup_first):
    def make():
        return [
            ReduceLROnPlateau(monitor="fake_loss", patience=2, cooldown=1, factor=0.5)
        ]

    ref_model, _, ref_lrs, _ = _run(make, tmp_path)
    model, (cb,), lrs, history = _run(
        make, tmp_path, interrupt_at=6, backup_first=backup_first
    )
    assert history.epoch[0] == 6
    assert lrs == ref_lrs
    assert len(set(ref_lrs.values())) >= 3  # it did reduce, more than once
    _same_weights(model, ref_model)
    # Without the callback state, the resumed run decides differently.
    plain_lrs = {}
    keras_model = _model()
    x, y = _data()
    for at in (6, None):
        cbs = [
            keras.callbacks.BackupAndRestore(str(tmp_path / "plain")),
            _Inject(),
            ReduceLROnPlateau(monitor="fake_loss", patience=2, cooldown=1, factor=0.5),
            _LRLog(plain_lrs),
        ]
        if at is not None:
            cbs.append(_Interrupt(at))
            with pytest.raises(RuntimeError):
                _fit(keras_model, cbs)
            keras_model = _model()
        else:
            _fit(keras_model, cbs)
    assert plain_lrs != ref_lrs


def test_reduce_lr_on_a_schedule_restores_the_scale(tmp_path):
    def make():
        return [ReduceLROnPlateau(monitor="fake_loss", patience=2, factor=0.5)]

    ref_model, _, ref_lrs, _ = _run(make, tmp_path, schedule=True)
    model, _, lrs, _ = _run(make, tmp_path, interrupt_at=5, schedule=True)
    assert lrs == ref_lrs
    assert (
        _control.get_lr_scale(model.optimizer)
        == _control.get_lr_scale(ref_model.optimizer)
        < 1.0
    )
    _same_weights(model, ref_model)


@pytest.mark.parametrize("backup_first", [True, False])
def test_early_stopping_stops_at_the_same_epoch(tmp_path, backup_first):
    def make():
        return [
            EarlyStopping(monitor="fake_loss", patience=3, restore_best_weights=True)
        ]

    ref_model, (ref,), _, ref_history = _run(make, tmp_path)
    model, (cb,), _, history = _run(
        make, tmp_path, interrupt_at=6, backup_first=backup_first
    )
    assert ref.stop_reason == cb.stop_reason == "patience"
    assert cb.stopped_epoch == ref.stopped_epoch == ref_history.epoch[-1]
    assert history.epoch[-1] == ref_history.epoch[-1]
    assert cb.best_epoch == ref.best_epoch == 4
    # The best weights (taken before the interruption) came back too.
    _same_weights(model, ref_model)


def test_smart_rule_resumes_its_window(tmp_path):
    def make():
        return [
            SmartReduceLROnPlateau(
                monitor="fake_loss",
                patience=3,
                beta=0.5,
                threshold=0.05,
                threshold_mode="rel",
            )
        ]

    _, (ref,), ref_lrs, _ = _run(make, tmp_path)
    _, (cb,), lrs, _ = _run(make, tmp_path, interrupt_at=7)
    assert ref.reductions and cb.window == ref.window
    assert lrs == ref_lrs
    assert [e for e, _ in cb.reductions] == [e for e, _ in ref.reductions]


def test_drop_in_for_keras_backup_and_restore(tmp_path):
    backup = BackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
    assert isinstance(backup, keras.callbacks.BackupAndRestore)
    model = _model()
    with pytest.raises(RuntimeError):
        _fit(model, [backup, _Interrupt(4)], epochs=10)
    history = _fit(_model(), [BackupAndRestore(str(tmp_path / "b"))], epochs=10)
    assert len(history.epoch) == 6  # resumed at epoch 4, like Keras
    assert not os.path.exists(tmp_path / "b")  # deleted at the end, like Keras
    with pytest.raises(ValueError, match="backup_dir"):
        BackupAndRestore("")


def test_serialization_round_trip(tmp_path):
    backup = BackupAndRestore(str(tmp_path), save_freq=3, double_checkpoint=True)
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(backup)
    )
    assert type(clone) is BackupAndRestore
    assert clone.get_config() == backup.get_config()
