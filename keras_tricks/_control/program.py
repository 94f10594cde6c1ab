"""The program: what the traced step computes when a schedule is on.

A `Program` holds the schedule (and momentum function) of the local step,
the step divisor, and, on PyTorch and TensorFlow, host tables of the values
computed once with NumPy (see the package docstring).
"""

import numpy as np
from keras import ops

from keras_tricks.schedules._ops import host_values


class Program:
    """What the traced step computes when a schedule is switched on.

    Args:
        schedule: a callable of the (already shifted) local step, written with
            `keras_tricks.schedules._ops.ops` or `keras.ops`.
        momentum: None, or a callable of the local step for the momentum.
        divisor: the local step is ``(iterations - origin) // divisor``.
        table_size: when set, the values of local steps ``0..table_size-1``
            are computed once on the host and the step looks them up (one
            gather: PyTorch's eager step and TensorFlow graphs pay for each of
            a schedule's few dozen scalar ops; XLA fuses them, so JAX gets no
            table).
        device_table: False keeps the tables on the host only (for
            `host_lr`/`host_momentum`); the step computes the schedule.
        peak: the schedule's largest LR (see the module docstring).
        key: a hashable that is equal for two programs that trace the same.
    """

    def __init__(
        self,
        schedule,
        momentum=None,
        divisor=1,
        table_size=None,
        peak=None,
        key=None,
        device_table=True,
    ):
        self.schedule = schedule
        self.momentum_fn = momentum
        self.divisor = int(divisor)
        self.key = key
        self.table_size = int(table_size) if table_size else None
        self._lr_table = self._momentum_table = None
        self._host_lr = self._host_momentum = None
        if table_size:
            steps = np.arange(int(table_size), dtype="int64")
            self._host_lr = host_values(schedule, steps)
            if momentum is not None:
                self._host_momentum = host_values(momentum, steps)
            if device_table:
                self._lr_table = ops.convert_to_tensor(self._host_lr)
                if momentum is not None:
                    self._momentum_table = ops.convert_to_tensor(self._host_momentum)
        if peak is None:
            peak = _peak_of(schedule, self._host_lr)
        self.peak = float(np.float32(peak))

    @property
    def has_momentum(self):
        return self.momentum_fn is not None

    def host_lr(self, local):
        """The LR at local step ``local`` (a Python int), on the host."""
        local = max(int(local), 0)
        if self._host_lr is not None:
            return float(self._host_lr[min(local, len(self._host_lr) - 1)])
        return float(host_values(self.schedule, np.asarray([local]))[0])

    def host_momentum(self, local):
        if self.momentum_fn is None:
            return None
        local = max(int(local), 0)
        if self._host_momentum is not None:
            return float(self._host_momentum[min(local, len(self._host_momentum) - 1)])
        return float(host_values(self.momentum_fn, np.asarray([local]))[0])

    # -- in the step ------------------------------------------------------

    def _index(self, shifted):
        # `shifted` = iterations - origin, an integer tensor; the tables serve
        # PyTorch's eager step, where the tensor's own operators and `clip`
        # cost 2-3 us each against about 20 us for a Keras op.
        if self.divisor > 1:
            shifted = shifted // self.divisor
        last = int(self._lr_table.shape[0]) - 1
        clip = getattr(shifted, "clip", None)
        return clip(0, last) if clip is not None else ops.clip(shifted, 0, last)

    def _local(self, shifted):
        step = ops.maximum(shifted, 0)
        if self.divisor > 1:
            step = ops.floor_divide(step, self.divisor)
        return step

    def values(self, shifted):
        """``(lr, momentum or None)`` at ``shifted = iterations - origin``."""
        if self._lr_table is not None:
            index = self._index(shifted)
            lr = self._lr_table[index]
            momentum = None
            if self._momentum_table is not None:
                momentum = self._momentum_table[index]
            return lr, momentum
        local = self._local(shifted)
        lr = self.schedule(local)
        momentum = self.momentum_fn(local) if self.momentum_fn is not None else None
        return lr, momentum


def _peak_of(schedule, table):
    for name in ("max_lr", "peak_lr", "end_lr", "lr"):
        value = getattr(schedule, name, None)
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    inner = getattr(schedule, "schedule", None)
    if inner is not None and inner is not schedule:
        return _peak_of(inner, None)
    if table is not None and len(table):
        return float(np.max(table))
    return 1.0
