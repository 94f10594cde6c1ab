"""The shared machinery of the schedule callbacks (`OneCycle`, `SGDR`, ...).

A schedule callback does three things, each once per `fit`, never per batch:

1. `on_train_begin`: size the schedule from `fit`'s epochs and steps (or from
   an explicit `total_steps`), in the unit the optimizer's step counter
   counts, and check that the optimizer can take it (momentum cycling needs a
   momentum).
2. First `on_epoch_begin`: place the schedule on the optimizer's step axis
   (its *origin*, see below), install it with `_control.set_schedule` (and
   `set_momentum_fn`), and rebuild the train function once. The schedule then
   runs inside the compiled step, from the optimizer's own `iterations`.
3. `on_epoch_end`: write the LR (and momentum) the next update will use into
   `logs`. `on_train_end`: hand the LR back to the optimizer.

**Origin.** The schedule sees `iterations - origin`, where `origin` is the
optimizer step at which epoch 0 of this `fit` began (or would have begun):
`origin = iterations - initial_epoch * steps_per_epoch`, read at the first
epoch (after `BackupAndRestore` has restored the optimizer and the epoch), and
never below 0. So:

* a fresh `fit(epochs=E)` runs the whole schedule over its `E` epochs, also on
  a model that was trained before (a second `fit` call starts a new schedule,
  like calling fastai's `fit_one_cycle` twice);
* `fit(epochs=E, initial_epoch=e)`, and a run that `BackupAndRestore` resumes
  at epoch `e`, continue the schedule of an `E`-epoch run where it was: the
  LR trajectory is the one of the uninterrupted run.

The only state is the optimizer's checkpointed `iterations`: the callback
adds no variable to the optimizer.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_tricks import _control
from keras_tricks.schedules import _primitives as P

_COUNTS = ("updates", "batches")


# Largest lookup table (see `_PlacedSchedule`): 4 MiB of float32.
_MAX_TABLE = 2**20
# The backends whose train step reads the schedule from a table: PyTorch runs
# it eagerly, op by op; a TensorFlow graph runs each of a schedule's few dozen
# scalar ops through its executor (one gather is cheaper, about 10 us per
# update on a CPU). XLA fuses the scalar ops on JAX: no table there.
_TABLE_BACKENDS = ("torch", "tensorflow")


class _PlacedSchedule:
    """A schedule moved to start at optimizer step `origin`.

    `divisor` turns batches into real updates under Keras's built-in
    `gradient_accumulation_steps`. The shift comes before the division so that
    an origin that is not a multiple of the divisor stays exact.

    With `table_size=n` the schedule is evaluated once, vectorized, for the
    steps `0 .. n-1` this fit can reach, and each update looks its value up
    (one gather, the step clamped to the table). PyTorch runs the train step
    eagerly, op by op, where the few dozen scalar ops of a schedule cost more
    than the update of a small model, and a TensorFlow graph pays its
    executor for each of them; XLA fuses them on JAX, which gets no table
    (see `_TABLE_BACKENDS`).
    """

    def __init__(
        self, schedule, origin, divisor, table_size=None, host_table_size=None
    ):
        self.schedule = schedule
        self.origin = int(origin)
        self.divisor = int(divisor)
        self._lr_table = self._momentum_table = None
        # Host (numpy) copies, for the values written into `logs` once per
        # epoch: evaluating the schedule eagerly costs a few dozen small
        # backend dispatches (about 4 ms on JAX, per value), a numpy lookup
        # nothing. They never feed the train step.
        self._host_lr = self._host_momentum = None
        size = max(table_size or 0, host_table_size or 0)
        if 0 < size <= _MAX_TABLE:
            steps = ops.convert_to_tensor(np.arange(size, dtype="int64"))
            self._host_lr = self._host_table(schedule, steps)
            if getattr(schedule, "has_momentum", False):
                self._host_momentum = self._host_table(schedule.momentum, steps)
            if table_size is not None and 0 < table_size <= _MAX_TABLE:
                self._lr_table = ops.convert_to_tensor(self._host_lr[:table_size])
                if self._host_momentum is not None:
                    self._momentum_table = ops.convert_to_tensor(
                        self._host_momentum[:table_size]
                    )

    @staticmethod
    def _host_table(fn, steps):
        return np.asarray(ops.convert_to_numpy(fn(steps)), dtype="float32")

    def host_values(self, iterations):
        """`(lr, momentum)` at optimizer step `iterations`, from the host tables.

        `momentum` is None for a schedule without one; the whole result is
        None when no table was built (the caller evaluates the schedule).
        """
        if self._host_lr is None:
            return None
        step = max(int(iterations) - self.origin, 0)
        if self.divisor > 1:
            step //= self.divisor
        step = min(step, self._host_lr.shape[0] - 1)
        momentum = None
        if self._host_momentum is not None:
            momentum = float(self._host_momentum[step])
        return float(self._host_lr[step]), momentum

    def _table_index(self, step):
        # The step moved and divided as in `_local_step` and clamped to the
        # tables. The tables serve PyTorch's eager step, where each Keras op
        # costs about 20 us: the backend tensor's own operators and `clip`
        # method cost 2-3 us each (`ops.clip` where a tensor has no `clip`).
        if isinstance(step, keras.Variable):
            step = step.value
        elif not hasattr(step, "dtype") or "int" not in str(step.dtype):
            # A Python number, or float steps (a plot): not the train step's
            # path, which passes the integer `iterations`.
            step = ops.cast(ops.floor(ops.convert_to_tensor(step)), "int32")
        if self.origin:
            step = step - self.origin
        if self.divisor > 1:
            step = step // self.divisor
        last = int(self._lr_table.shape[0]) - 1
        clip = getattr(step, "clip", None)
        return clip(0, last) if clip is not None else ops.clip(step, 0, last)

    @staticmethod
    def _gather(table, index):
        # A scalar step (the train step's case) is indexed, not `ops.take`n:
        # one native gather instead of a Keras op. A vector of steps (a plot,
        # a test) needs `take` on TensorFlow.
        if len(index.shape) == 0:
            return table[index]
        return ops.take(table, index)

    def _lookup(self, table, step):
        return self._gather(table, self._table_index(step))

    def _local_step(self, step):
        if self.origin:
            step = ops.maximum(ops.subtract(step, self.origin), 0)
        if self.divisor > 1:
            step = ops.floor_divide(step, self.divisor)
        return step

    def lr_and_momentum(self, step):
        """`(lr, momentum)` at `step` from one clamp of the step (tables only).

        `_control` uses it when this schedule also drives the momentum; None
        when there are no tables (the values are then computed one by one).
        """
        if self._lr_table is None or self._momentum_table is None:
            return None
        index = self._table_index(step)
        return (
            self._gather(self._lr_table, index),
            self._gather(self._momentum_table, index),
        )

    def __call__(self, step):
        if self._lr_table is not None:
            return self._lookup(self._lr_table, step)
        return self.schedule(self._local_step(step))

    def momentum(self, step):
        if self._momentum_table is not None:
            return self._lookup(self._momentum_table, step)
        return self.schedule.momentum(self._local_step(step))


def check_optional_int(name, value, gt=0):
    if value is None:
        return None
    return P.check_int(name, value, gt=gt)


def check_optional_number(name, value, **bounds):
    if value is None:
        return None
    return P.check_number(name, value, **bounds)


def check_at_most_one(**named):
    given = {k: v for k, v in named.items() if v is not None}
    if len(given) > 1:
        names = ", ".join(f"`{k}`" for k in named)
        shown = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise ValueError(f"Give at most one of {names}. Received: {shown}")
    return given


class ScheduleCallback(keras.callbacks.Callback):
    """Base class: sizes a schedule from `fit`, installs it, logs it.

    Subclasses set `_cycle_momentum` and implement `_make_schedule(total_steps,
    steps_per_epoch)`, where `total_steps` (this fit's length in schedule
    steps, or the user's `total_steps`) and `steps_per_epoch` (schedule steps
    per epoch, a float) are `None` when unknown, and `_needs()`
    (which of the two `_make_schedule` needs, for the error raised when
    `fit`'s length is unknown).
    """

    def __init__(self, total_steps=None, count="updates"):
        super().__init__()
        self.total_steps = check_optional_int("total_steps", total_steps, gt=0)
        self.count = P.check_choice("count", count, _COUNTS)
        self._cycle_momentum = False
        self._reset()

    def _reset(self):
        self._schedule = None
        self._placed = None
        self._divisor = 1
        self._unit_per_batch = 1.0
        self._iters_per_epoch = None
        self._fit_steps = None

    # -- to implement -------------------------------------------------------

    def _make_schedule(self, total_steps, steps_per_epoch):
        raise NotImplementedError

    def _needs(self):
        """What `_make_schedule` needs: a subset of {"total", "per_epoch"}."""
        return {"total"}

    def _length_hint(self):
        return "`total_steps`"

    # -- the schedule actually installed ------------------------------------

    @property
    def schedule(self):
        """The schedule sized for the current (or last) `fit`, or None.

        Its step 0 is the first update of epoch 0 of that `fit`.
        """
        return self._schedule

    def _sized(self, make):
        try:
            return make()
        except ValueError as e:
            epochs = (self.params or {}).get("epochs")
            steps = (self.params or {}).get("steps")
            raise ValueError(
                f"{type(self).__name__} could not size its schedule for this "
                f"fit (epochs={epochs}, steps per epoch={steps}, "
                f"total_steps={self.total_steps}, count={self.count!r}): {e}"
            ) from e

    def on_train_begin(self, logs=None):
        self._reset()
        optimizer = self.model.optimizer
        _control.take_control(optimizer)
        k, kind = _control.accumulation_steps(optimizer)
        # How many schedule steps one batch is, and how many optimizer
        # iterations one epoch advances.
        if kind == "builtin":
            self._divisor = k if self.count == "updates" else 1
            self._unit_per_batch = 1.0 / self._divisor
            iters_per_batch = 1.0
        elif kind == "wrapper":
            # The wrapper's inner optimizer counts real updates already.
            self._unit_per_batch = 1.0 / k
            iters_per_batch = 1.0 / k
        else:
            iters_per_batch = 1.0

        params = self.params or {}
        epochs, steps = params.get("epochs"), params.get("steps")
        if steps is not None:
            self._iters_per_epoch = steps * iters_per_batch
        total = self.total_steps
        per_epoch = None
        if steps is not None:
            per_epoch = steps * self._unit_per_batch
            if epochs:
                rounding = math.ceil if kind == "wrapper" else math.floor
                fit_steps = int(rounding(epochs * steps * self._unit_per_batch))
                self._fit_steps = max(1, fit_steps)
                if total is None:
                    total = self._fit_steps
        needs = self._needs()
        if ("total" in needs and total is None) or (
            "per_epoch" in needs and per_epoch is None
        ):
            raise ValueError(
                f"{type(self).__name__} cannot size its schedule: this fit's "
                "length is unknown (the data has no length, so "
                "`self.params['steps']` is None). Pass `steps_per_epoch` to "
                "`fit`, or give the callback its length in steps "
                f"({self._length_hint()}). Received: epochs={epochs}, "
                f"steps={steps}, total_steps={self.total_steps}"
            )
        self._schedule = self._sized(lambda: self._make_schedule(total, per_epoch))
        if self._cycle_momentum:
            if not getattr(self._schedule, "has_momentum", False):
                raise ValueError(
                    f"{type(self._schedule).__name__} has no momentum schedule."
                )
            # Fails here, with the optimizer named, when there is no momentum.
            _control.set_momentum_fn(optimizer, lambda step: self._schedule.momentum(0))
            _control.set_momentum_fn(optimizer, None)

    def on_epoch_begin(self, epoch, logs=None):
        if self._placed is not None or self._schedule is None:
            return
        optimizer = self.model.optimizer
        base = _control.base_optimizers(optimizer)[0]
        iterations = int(ops.convert_to_numpy(base._iterations))
        if self._iters_per_epoch is None:
            # Unknown epoch length: a later epoch can only be a resume of a
            # schedule that started at the optimizer's step 0.
            origin = iterations if epoch == 0 else 0
        else:
            origin = iterations - int(math.floor(epoch * self._iters_per_epoch))
        # A resumed run may have fewer iterations than batches seen (the
        # updates that a LossScaleOptimizer skipped): never before step 0.
        origin = max(origin, 0)
        table_size = None
        if keras.backend.backend() in _TABLE_BACKENDS and self._fit_steps is not None:
            # Every step this fit reaches, and the one after (logged as "lr").
            table_size = self._fit_steps + 2
        host_table_size = None
        if self._fit_steps is not None:
            host_table_size = self._fit_steps + 2
        self._placed = _PlacedSchedule(
            self._schedule,
            origin,
            self._divisor,
            table_size=table_size,
            host_table_size=host_table_size,
        )
        _control.set_schedule(optimizer, self._placed)
        if self._cycle_momentum:
            _control.set_momentum_fn(optimizer, self._placed.momentum)
        _control.refresh(self.model)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self._placed is None:
            return
        optimizer = self.model.optimizer
        base = _control.base_optimizers(optimizer)[0]
        host = self._placed.host_values(ops.convert_to_numpy(base._iterations))
        if host is None:
            logs["lr"] = _control.current_lr(optimizer)
            momentum = _control.current_momentum(optimizer)
        else:
            lr, cycled = host
            logs["lr"] = lr * _control.get_lr_scale(optimizer)
            if self._cycle_momentum and cycled is not None:
                momentum = cycled
            else:
                momentum = _control.current_momentum(optimizer)
        if momentum is not None:
            logs["momentum"] = momentum

    def on_train_end(self, logs=None):
        if self._placed is None:
            return
        optimizer = self.model.optimizer
        _control.set_schedule(optimizer, None)
        if self._cycle_momentum:
            _control.set_momentum_fn(optimizer, None)
        _control.refresh(self.model)
        self._placed = None

    def get_config(self):
        return {"total_steps": self.total_steps, "count": self.count}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
