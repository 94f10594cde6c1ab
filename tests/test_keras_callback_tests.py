"""Keras's own callback tests, run against keras_tricks' drop-in callbacks.

`keras/src/callbacks/{early_stopping,reduce_lr_on_plateau,backup_and_restore}_test.py`
ship inside the installed Keras wheel. Each is imported, the `callbacks` module
it reads at call time is swapped for one whose `EarlyStopping`,
`ReduceLROnPlateau` and `BackupAndRestore` are ours, and its test classes run
under pytest here: the drop-in claim checked by Keras's own tests, on every
backend. Only `test_throws_when_optimizer_has_schedule` is left out: it tests
the TypeError Keras raises over a schedule, which ours replaces by composing
with it.
"""

import importlib
import types

import pytest

from keras_tricks import callbacks as kt_callbacks

_OURS = ("EarlyStopping", "ReduceLROnPlateau", "BackupAndRestore")


def _load(name):
    try:
        return importlib.import_module(f"keras.src.callbacks.{name}")
    except ImportError:  # pragma: no cover - a Keras wheel without its tests
        pytest.skip(f"keras.src.callbacks.{name} is not in this Keras install")


_early = _load("early_stopping_test")
_plateau = _load("reduce_lr_on_plateau_test")
_backup = _load("backup_and_restore_test")


def _swapped(original):
    """A stand-in for `keras.src.callbacks` with our three classes."""
    proxy = types.ModuleType("keras_tricks_swapped_callbacks")
    proxy.__dict__.update(vars(original))
    for name in _OURS:
        setattr(proxy, name, getattr(kt_callbacks, name))
    return proxy


@pytest.fixture(autouse=True)
def _ours_in_keras_tests(monkeypatch):
    for module in (_early, _plateau, _backup):
        monkeypatch.setattr(module, "callbacks", _swapped(module.callbacks))
    yield


def test_the_swap_reaches_keras_tests():
    for module in (_early, _plateau, _backup):
        for name in _OURS:
            assert getattr(module.callbacks, name) is getattr(kt_callbacks, name)


class TestKerasEarlyStopping(_early.EarlyStoppingTest):
    pass


class TestKerasReduceLROnPlateau(_plateau.ReduceLROnPlateauTest):
    test_throws_when_optimizer_has_schedule = None  # ours composes instead


class TestKerasBackupAndRestore(_backup.BackupAndRestoreCallbackTest):
    pass
