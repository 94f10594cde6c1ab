"""`BackupAndRestore` that also backs up the decisions of keras_tricks callbacks."""

import json
import os
import warnings

import keras
import numpy as np

from keras_tricks import _control
from keras_tricks.callbacks import _state

_STATE_FILE = "keras_tricks_state.json"
_ARRAYS_FILE = "keras_tricks_arrays.npz"


def _scales(model):
    """The scales that the weights file does not hold (see `_control`)."""
    optimizer = model.optimizer
    bases = _control.base_optimizers(optimizer)
    if not bases or _control._state(bases[0]) is None:
        return {"schedule_scale": None, "own_scale": 1.0}
    base = bases[0]
    state = _control._state(base)
    schedule = _control.schedule_scale(base) if state.lr_on else None
    return {
        "schedule_scale": schedule,
        "own_scale": float(state.own_scale.numpy()),
    }


def _restore_scales(model, payload):
    optimizer = model.optimizer
    if "format" not in payload:
        # Written by keras_tricks 0.1: one `lr_scale` on whatever drove the
        # LR (a schedule callback's schedule, or the optimizer's own).
        scale = float(payload.get("lr_scale", 1.0))
        if scale == 1.0:
            return
        bases = _control.take_control(optimizer, model)
        _control.set_pending_scale(optimizer, scale)
        for base in bases:
            if not _control.has_lr_variable(base):
                _control._state(base).own_scale.assign(scale)
        return
    bases = _control.take_control(optimizer, model)
    own = float(payload.get("own_scale", 1.0))
    for base in bases:
        _control._state(base).own_scale.assign(own)
    schedule = payload.get("schedule_scale")
    if schedule is not None:
        _control.set_pending_scale(optimizer, float(schedule))


@keras.saving.register_keras_serializable(package="keras_tricks")
class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Back up and restore the training state, callback decisions included.

    A drop-in subclass of `keras.callbacks.BackupAndRestore` (same arguments,
    same files). Keras's callback restores the weights, the optimizer state
    and the epoch, but not what other callbacks have learned: after a restart
    a plateau callback forgets its best value and its wait counter and
    decides differently from an uninterrupted run. This one also writes, next
    to Keras's `training_metadata.json`:

    * `keras_tricks_state.json`: the state (`get_state()`) of every stateful
      keras_tricks callback in the same `fit` (`ReduceLROnPlateau`,
      `SmartReduceLROnPlateau`, `EarlyStopping`) and the plateau scales that
      the weights file does not hold (see `keras_tricks._control`; the scale
      of a schedule installed on an optimizer with a float LR is in its LR
      variable, which the weights file holds);
    * `keras_tricks_arrays.npz`: arrays a callback asks to keep, i.e. the
      best weights of an `EarlyStopping(restore_best_weights=True)`.

    On resume it restores the scales at once and leaves the callback states
    on the model; each callback takes its own at its first `on_epoch_begin`,
    so the order of the callback list does not matter. A callback that
    changes its state after this one saved (it comes later in the list)
    makes it save again, so the backup always holds the decisions of the
    epoch it records. Resume with the same callbacks (a fresh model and fresh
    callback instances are fine): a callback is matched by its class, its
    monitored quantity and its rank among callbacks of that kind.

    Args:
        backup_dir: String. Directory for the backup; not to be shared.
        save_freq: `"epoch"` or an integer number of batches. Defaults to
            `"epoch"`.
        double_checkpoint: Boolean. Keep the previous backup too.
            Defaults to `False`.
        delete_checkpoint: Boolean. Delete the backup when training ends.
            Defaults to `True`.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_tricks.callbacks import BackupAndRestore, ReduceLROnPlateau

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", loss="mse")
    callbacks = [BackupAndRestore("/tmp/kt_backup"),
                 ReduceLROnPlateau(monitor="loss", patience=2)]
    model.fit(np.ones((32, 4)), np.zeros((32, 1)), epochs=5,
              callbacks=callbacks, verbose=0)
    ```
    """

    def __init__(
        self,
        backup_dir,
        save_freq="epoch",
        double_checkpoint=False,
        delete_checkpoint=True,
    ):
        super().__init__(
            backup_dir,
            save_freq=save_freq,
            double_checkpoint=double_checkpoint,
            delete_checkpoint=delete_checkpoint,
        )
        self._state_path = os.path.join(backup_dir, _STATE_FILE)
        self._arrays_path = os.path.join(backup_dir, _ARRAYS_FILE)
        self._saved_at_epoch_end = False

    def get_config(self):
        return {
            "backup_dir": self.backup_dir,
            "save_freq": self.save_freq,
            "double_checkpoint": self.double_checkpoint,
            "delete_checkpoint": self.delete_checkpoint,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def set_model(self, model):
        super().set_model(model)
        _state._set(model, _state.BACKUP, self)

    # --- restore -----------------------------------------------------------

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        payload = self._read_state()
        if payload is None:
            return
        model = self.model
        _restore_scales(model, payload)
        states = payload.get("callbacks", {})
        arrays = self._read_arrays()
        for key, values in arrays.items():
            if key in states:
                states[key]["_arrays"] = values
        _state.stash(model, states)

    def _metadata_epoch(self):
        try:
            with open(self._training_metadata_path) as f:
                return json.load(f)["epoch"]
        except (OSError, ValueError, KeyError):
            return None

    def _read_state(self):
        epoch = self._metadata_epoch()
        if epoch is None:
            return None
        for path in (self._state_path, self._state_path + ".bkp"):
            if not os.path.exists(path):
                continue
            with open(path) as f:
                payload = json.load(f)
            # After a fallback to the previous checkpoint, take the state
            # file that belongs to the restored epoch.
            if payload.get("epoch") == epoch:
                return payload
        warnings.warn(
            f"BackupAndRestore found no keras_tricks callback state for epoch "
            f"{epoch} in {self.backup_dir}; the callbacks start afresh.",
            stacklevel=2,
        )
        return None

    def _read_arrays(self):
        if not os.path.exists(self._arrays_path):
            return {}
        found = {}
        with np.load(self._arrays_path) as data:
            for name in data.files:
                key, index = name.rsplit("/", 1)
                found.setdefault(key, {})[int(index)] = data[name]
        return {key: [v[i] for i in sorted(v)] for key, v in found.items()}

    # --- save --------------------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        self._saved_at_epoch_end = False

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._saved_at_epoch_end = self.save_freq == "epoch"

    def _save_model(self):
        if self.double_checkpoint and os.path.exists(self._state_path):
            os.replace(self._state_path, self._state_path + ".bkp")
        super()._save_model()
        self._write_state()

    def _write_state(self):
        model = self.model
        callbacks = _state.active_callbacks(model, self)
        payload = {
            "format": 2,
            "epoch": self._current_epoch,
            "callbacks": _state.collect(model, self),
        }
        payload.update(_scales(model))
        tmp = self._state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f)
        os.replace(tmp, self._state_path)
        arrays = {}
        for callback in callbacks:
            getter = getattr(callback, "get_state_arrays", None)
            values = getter() if getter is not None else None
            if values is None:
                continue
            key = _state.state_key(model, callback)
            for i, value in enumerate(values):
                arrays[f"{key}/{i}"] = np.asarray(value)
        if arrays:
            tmp = self._arrays_path + ".tmp.npz"
            np.savez(tmp, **arrays)
            os.replace(tmp, self._arrays_path)
        elif os.path.exists(self._arrays_path):
            os.remove(self._arrays_path)

    def _state_changed(self, weights_changed):
        """A callback after this one in the list changed its state."""
        if not self._saved_at_epoch_end:
            return
        if weights_changed:
            # The LR variable changed after the weights were written.
            self.model.save_weights(filepath=self._weights_path, overwrite=True)
        self._write_state()
