"""The private base of the callbacks that watch one logged quantity.

It owns what `ReduceLROnPlateau`, `SmartReduceLROnPlateau` and `EarlyStopping`
share: the monitored name, the direction (``mode``, with ``"auto"`` inferred
from the metric object or the name), ``min_delta`` as an absolute or a
relative margin, the improvement test, a missing-metric warning given once,
and the hooks that let `keras_tricks.callbacks.BackupAndRestore` save and
restore the callback's decisions.
"""

import math
import numbers
import warnings

import keras
import numpy as np

from keras_tricks.callbacks import _state

_MODES = ("auto", "min", "max")
_DELTA_MODES = ("abs", "rel")
# Substrings of a metric name (without "val_") that tell its direction.
_MAX_WORDS = ("acc", "auc", "f1", "precision", "recall", "iou")
_MIN_WORDS = ("loss", "error", "mae", "mse", "crossentropy", "hinge", "mape", "msle")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {choices}. Received: {name}={value!r}"
        )


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_number(name, value, low=None, high=None, low_open=False, high_open=False):
    """A real number (NumPy scalars too, never a bool) within the bounds."""
    bad = not _is_real(value)
    if not bad:
        bad = not math.isfinite(value)
    if not bad and low is not None:
        bad = value <= low if low_open else value < low
    if not bad and high is not None:
        bad = value >= high if high_open else value > high
    if bad:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            parts.append(f"{'<' if high_open else '<='} {high}")
        expected = " and ".join(parts) if parts else "finite"
        raise ValueError(
            f"Argument `{name}` must be a number {expected}. Received: {name}={value!r}"
        )
    return float(value)


def _check_int(name, value, low=0):
    """An integer (NumPy integers too, never a bool) >= `low`; a Python int."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < low
    ):
        raise ValueError(
            f"Argument `{name}` must be an integer >= {low}. Received: {name}={value!r}"
        )
    return int(value)


def print_msg(message):
    """Report like Keras's callbacks: to stdout, or to absl logging when
    interactive logging is off (`keras.config.disable_interactive_logging`)."""
    try:
        from keras.src.utils import io_utils
    except ImportError:  # pragma: no cover - a Keras without this module
        print(message)
        return
    io_utils.print_msg(message)


def scalar_value(name, value):
    """A logged value as a Python float.

    Keras metrics may log arrays: `F1Score` gives shape `(1,)` for a binary
    problem. A value with exactly one element (any shape: `(1,)`, `(1, 1, 1)`)
    is squeezed, as Keras's and Lightning's callbacks accept it; a value with
    several elements cannot be compared and raises a ValueError naming it.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    array = np.asarray(keras.ops.convert_to_numpy(value))
    if array.size != 1:
        raise ValueError(
            f"The monitored metric `{name}` must have one value to be compared, "
            f"but it has shape {array.shape} ({array.size} values). Monitor a "
            "scalar metric (e.g. set `average=` on an F1Score over several "
            f"classes). Received: {name}={array.tolist()!r}"
        )
    return float(array.reshape(()))


def _compile_metrics(model):
    """Every metric object of a compiled model, compile containers flattened."""
    found = []
    for metric in getattr(model, "metrics", None) or []:
        nested = getattr(metric, "metrics", None)
        if isinstance(nested, (list, tuple)):
            found.extend(nested)
        else:
            found.append(metric)
    return found


def infer_direction(monitor, model=None):
    """``"min"`` or ``"max"`` for a logged quantity, or None when unknown.

    The metric object's own direction wins (Keras metrics carry one); then the
    name: ``loss`` and names with error/mae/mse/crossentropy/hinge are
    minimized, names with acc/auc/f1/precision/recall/iou maximized.
    """
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "min"
    for metric in _compile_metrics(model):
        if getattr(metric, "name", None) == name:
            direction = getattr(metric, "_direction", None)
            if direction == "up":
                return "max"
            if direction == "down":
                return "min"
    lower = name.lower()
    if "loss" in lower:
        return "min"
    if any(word in lower for word in _MAX_WORDS):
        return "max"
    if any(word in lower for word in _MIN_WORDS):
        return "min"
    return None


class MonitorCallback(keras.callbacks.Callback):
    """Base of the callbacks that watch one logged quantity.

    Args:
        monitor: String. The key of `logs` to watch.
        mode: String. `"min"`, `"max"` or `"auto"` (inferred from the metric
            object, then from the name).
        min_delta: Float >= 0. The margin a new value must beat the best by.
        min_delta_mode: String. `"abs"`: beat `best -/+ min_delta`; `"rel"`:
            beat `best -/+ min_delta * |best|` (torch's `threshold_mode`).
        baseline: Float or None. A value to beat (EarlyStopping).
    """

    def __init__(
        self,
        monitor="val_loss",
        mode="auto",
        min_delta=0.0,
        min_delta_mode="abs",
        baseline=None,
    ):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                f"Argument `monitor` must be a non-empty string. Received: "
                f"monitor={monitor!r}"
            )
        _check_choice("mode", mode, _MODES)
        _check_choice("min_delta_mode", min_delta_mode, _DELTA_MODES)
        min_delta = _check_number("min_delta", min_delta)
        if baseline is not None:
            baseline = _check_number("baseline", baseline)
        self.monitor = monitor
        self.mode = mode
        # Keras takes the magnitude of a negative min_delta: so do we.
        self.min_delta = abs(float(min_delta))
        self.min_delta_mode = min_delta_mode
        self.baseline = baseline
        self.best = baseline
        self.monitor_op = None
        self.direction = None
        self._warned_missing = False
        self._pending_checked = False

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # --- direction and improvement --------------------------------------

    def _set_monitor_op(self):
        """Fix the direction; delayed to the first epoch end (metrics built)."""
        if self.mode != "auto":
            direction = self.mode
        else:
            direction = infer_direction(self.monitor, self._model)
        if direction is None:
            raise ValueError(
                f"{type(self).__name__} received monitor={self.monitor!r} with "
                "mode='auto', and cannot tell whether it should be minimized or "
                "maximized (neither the metric object nor its name says). Pass "
                "`mode='max'` to watch for the highest value or `mode='min'` for "
                "the lowest."
            )
        self.direction = direction
        # Kept for code written against Keras's MonitorCallback.
        self.monitor_op = keras.ops.less if direction == "min" else keras.ops.greater

    def _margin(self, reference):
        if self.min_delta_mode == "rel":
            return self.min_delta * abs(reference)
        return self.min_delta

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        if self.direction is None:
            self._set_monitor_op()
        current = float(monitor_value)
        reference = float(reference_value)
        margin = self._margin(reference)
        if self.direction == "min":
            return current < reference - margin
        return current > reference + margin

    def get_monitor_value(self, logs):
        """The monitored value, or None with a warning given once per fit."""
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            if not self._warned_missing:
                self._warned_missing = True
                warnings.warn(
                    f"{type(self).__name__} is conditioned on metric "
                    f"`{self.monitor}` which is not available. Available "
                    f"metrics are: {', '.join(logs.keys()) or '(none)'}. It does "
                    "nothing until that metric is logged (this warning is given "
                    "once per fit).",
                    stacklevel=2,
                )
            return None
        return scalar_value(self.monitor, value)

    # --- state that survives an interruption ----------------------------

    def set_model(self, model):
        super().set_model(model)
        _state.register(model, self)

    def _reset_monitor(self):
        self._warned_missing = False
        self._pending_checked = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._pending_checked:
            self._pending_checked = True
            state = _state.take_pending(self._model, self)
            if state is not None:
                arrays = state.pop("_arrays", None)
                self.set_state(state)
                if arrays is not None and hasattr(self, "set_state_arrays"):
                    self.set_state_arrays(arrays)

    def _notify_backup(self, weights_changed=False):
        _state.state_changed(self._model, self, weights_changed)

    def get_state(self):
        """The callback's decisions so far, as a JSON-serializable dict."""
        return {"best": self.best, "direction": self.direction}

    def set_state(self, state):
        """Restore what `get_state` returned (on resume)."""
        self.best = state.get("best")
        direction = state.get("direction")
        if direction is not None:
            self.direction = direction
            self.monitor_op = (
                keras.ops.less if direction == "min" else keras.ops.greater
            )
