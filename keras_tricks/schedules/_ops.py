"""`ops` for schedule code: `keras.ops` in the train step, NumPy on the host.

Schedules are written once, with the names of `keras.ops`, and run inside the
compiled train step. The callbacks also need a schedule's values on the host:
the LR to write into `logs`, the lookup tables that PyTorch's eager step and
TensorFlow graphs read, the schedule's peak. Evaluating 100,000 steps through
`keras.ops` costs 0.3-0.7 s on JAX and PyTorch (op-by-op dispatch and
compilation); the same code over NumPy arrays costs a few milliseconds. Inside
`host_evaluation()` the `ops` of this module resolve to NumPy float32
equivalents; everywhere else they are `keras.ops` itself (the lookup is a
Python attribute access at trace time only: nothing is added to the step).
"""

import contextlib
import contextvars

import keras
import numpy as np

_HOST = contextvars.ContextVar("keras_tricks_host_ops", default=False)


def _cast(x, dtype):
    return np.asarray(x).astype(np.dtype(str(dtype)))


def _where(condition, x1=None, x2=None):
    return np.where(condition, x1, x2)


def _convert(x, dtype=None, **kwargs):
    return np.asarray(x, dtype=None if dtype is None else np.dtype(str(dtype)))


_SPECIAL = {
    "cast": _cast,
    "where": _where,
    "convert_to_tensor": _convert,
    "convert_to_numpy": np.asarray,
    "floor_divide": np.floor_divide,
    "power": np.power,
    "mod": np.mod,
}


class _Ops:
    def __getattr__(self, name):
        if not _HOST.get():
            return getattr(keras.ops, name)
        special = _SPECIAL.get(name)
        if special is not None:
            return special
        return getattr(np, name)


ops = _Ops()


@contextlib.contextmanager
def host_evaluation():
    """Evaluate schedule code over NumPy arrays (float32, like the step)."""
    token = _HOST.set(True)
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            yield
    finally:
        _HOST.reset(token)


def host_values(fn, steps):
    """`fn(steps)` evaluated on the host, as a float32 NumPy array."""
    steps = np.asarray(steps)
    with host_evaluation():
        values = fn(steps)
    return np.asarray(values, dtype="float32").reshape(steps.shape)
