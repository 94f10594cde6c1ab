"""The shared machinery of the schedule callbacks (`OneCycle`, `SGDR`, ...).

A schedule callback does three things, each once per `fit`, never per batch
(the mechanism is `keras_tricks._control`; read its docstring first):

1. `on_train_begin`: size the schedule from `fit`'s epochs and steps (or from
   an explicit `total_steps`), in the unit the optimizer's step counter
   counts; check that the optimizer can take it (momentum cycling needs a
   momentum); take the lease of the optimizer and install the schedule as
   its program (a retrace only when the schedule differs from the one
   already traced).
2. First `on_epoch_begin`: place the schedule on the optimizer's step axis
   (its *origin*, see below), set its scale and switch it on. These are
   run-time state: nothing retraces.
3. `on_epoch_end`: write the LR (and momentum) the next update will use into
   `logs`, from host tables. `on_train_end`: hand the LR back (a `fit` that
   raises never gets there: the next `fit` of the model releases it).

**Origin.** The schedule sees `iterations - origin`, where `origin` is the
optimizer step at which epoch 0 of this `fit` began (or would have begun):
`origin = iterations - initial_epoch * steps_per_epoch`, read at the first
epoch (after `BackupAndRestore` has restored the optimizer and the epoch).
So:

* a fresh `fit(epochs=E)` runs the whole schedule over its `E` epochs, also on
  a model that was trained before (a second `fit` call starts a new schedule,
  at scale 1, like calling fastai's `fit_one_cycle` twice);
* `fit(epochs=E, initial_epoch=e)`, and a run that `BackupAndRestore` resumes
  at epoch `e`, continue the schedule of an `E`-epoch run where it was, with
  the plateau reductions the checkpoint holds: the LR trajectory is the one of
  the uninterrupted run. When the optimizer is fresh (`iterations` is 0: a
  weights-only checkpoint, a recompile) the origin is negative, so the
  schedule still continues at epoch `e`, and a warning says that the
  optimizer's state (moments, reductions) starts afresh.
"""

import math
import warnings

import keras
import numpy as np

from keras_tricks import _control
from keras_tricks.schedules import _primitives as P

_COUNTS = ("updates", "batches")

# Largest lookup table (see `_control.Program`): 4 MiB of float32.
_MAX_TABLE = 2**20
# The backends whose train step reads the schedule from a table: PyTorch runs
# it eagerly, op by op; a TensorFlow graph runs each of a schedule's few dozen
# scalar ops through its executor (one gather is cheaper, about 10 us per
# update on a CPU). XLA fuses the scalar ops on JAX: no table there.
_TABLE_BACKENDS = ("torch", "tensorflow")


def _config_key(schedule):
    try:
        config = schedule.get_config()
    except (AttributeError, NotImplementedError):
        return None
    try:
        return (type(schedule).__name__, repr(sorted(config.items())))
    except TypeError:
        return None


def make_program(model, schedule, momentum, divisor, table_size, key):
    """The `_control.Program` for ``schedule`` in this model's train step;
    ``key`` is the schedule's `_config_key`."""
    backend = keras.backend.backend()
    if not table_size or table_size > _MAX_TABLE:
        table_size = None
    # JAX's step computes the schedule (XLA fuses it), so the table there is
    # the host's only (for logs and plateau decisions at epoch ends, each an
    # evaluation of the schedule otherwise) and is not part of the key: a fit
    # of another length traces nothing.
    device_table = backend in _TABLE_BACKENDS
    if key is not None:
        key = key + (
            momentum is not None,
            int(divisor),
            table_size if device_table else None,
            backend,
        )
    if key is not None:
        # The same schedule as the program in place (a refit): its tables
        # are this fit's already (~0.5 ms saved a fit).
        bases = _control.base_optimizers(model.optimizer)
        state = _control._state(bases[0]) if bases else None
        placed = state.program if state is not None else None
        if placed is not None and placed.key == key and placed.table_size == table_size:
            return placed
    return _control.Program(
        schedule,
        momentum=momentum,
        divisor=divisor,
        table_size=table_size,
        key=key,
        device_table=device_table,
    )


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


def check_momentum(opt):
    """Raise a clear error when ``opt`` has no momentum that can be cycled."""
    name = _control.momentum_attribute(opt)
    if name is None:
        raise ValueError(
            "Momentum cycling needs an optimizer with `momentum` (SGD) or "
            "`beta_1` (Adam, AdamW, Nadam, Adamax, Lamb, Lion). "
            f"Received: {type(opt).__name__}. Pass `cycle_momentum=False`."
        )
    raw = vars(opt).get(name)
    if isinstance(opt, keras.optimizers.SGD) and raw == 0:
        raise ValueError(
            "Momentum cycling needs `SGD(momentum>0)`: with momentum=0 "
            "Keras's SGD keeps no momentum buffers. Received: "
            "SGD(momentum=0). Create it with e.g. `momentum=0.9`, or pass "
            "`cycle_momentum=False`."
        )
    if isinstance(opt, keras.optimizers.RMSprop):
        # RMSprop branches on `momentum > 0` in Python, like SGD.
        raise ValueError(
            "Momentum cycling is supported for SGD and the Adam family "
            f"(`beta_1`). Received: {type(opt).__name__}. Pass "
            "`cycle_momentum=False`."
        )
    if not isinstance(raw, (int, float, np.floating, np.integer)):
        raise ValueError(
            f"Momentum cycling needs a number as the optimizer's `{name}`. "
            f"Received: {name}={raw!r}"
        )


class ScheduleCallback(keras.callbacks.Callback):
    """Base class: sizes a schedule from `fit`, installs it, logs it.

    Subclasses set `_cycle_momentum` and implement `_make_schedule(total_steps,
    steps_per_epoch)`, where `total_steps` (this fit's length in schedule
    steps, or the user's `total_steps`) and `steps_per_epoch` (schedule steps
    per epoch, a float) are `None` when unknown, and `_needs()`
    (which of the two `_make_schedule` needs, for the error raised when
    `fit`'s length is unknown). A refit reuses the last fit's schedule when
    `get_config()` and the two sizes are unchanged, so `get_config()` must
    hold every argument `_make_schedule` reads.
    """

    def __init__(self, total_steps=None, count="updates"):
        super().__init__()
        self.total_steps = check_optional_int("total_steps", total_steps, gt=0)
        self.count = P.check_choice("count", count, _COUNTS)
        self._cycle_momentum = False
        # The schedule sized by the last `fit`, with what sized it (see
        # `_sized_schedule`).
        self._made = None
        self._reset()

    def _reset(self):
        self._updates_at = None
        self._varying_fit_steps = None
        self._schedule = None
        self._program = None
        self._placed = False
        self._divisor = 1
        self._unit_per_batch = 1.0
        self._iters_per_epoch = None
        self._fit_steps = None
        self._base = None
        self._momentum_name = None

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
        _control.take_control(optimizer, self.model)
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
        if kind == "varying":
            iters_per_batch = self._size_varying(k, epochs, steps)
        if steps is not None:
            self._iters_per_epoch = steps * iters_per_batch
        total = self.total_steps
        per_epoch = None
        if steps is not None:
            per_epoch = steps * self._unit_per_batch
            if epochs:
                rounding = math.ceil if kind == "wrapper" else math.floor
                fit_steps = int(rounding(epochs * steps * self._unit_per_batch))
                if self._updates_at is not None:
                    fit_steps = self._varying_fit_steps
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
        self._schedule, key = self._sized_schedule(total, per_epoch)
        momentum = None
        if self._cycle_momentum:
            if not getattr(self._schedule, "has_momentum", False):
                raise ValueError(
                    f"{type(self._schedule).__name__} has no momentum schedule."
                )
            for base in _control.base_optimizers(optimizer):
                check_momentum(base)
            momentum = self._schedule.momentum
        table_size = None
        if self._fit_steps is not None:
            # Every step this fit reaches, and the one after (logged as "lr").
            table_size = self._fit_steps + 2
        program = make_program(
            self.model, self._schedule, momentum, self._divisor, table_size, key
        )
        self._base = _control.lease(optimizer, self)[0]
        if not self._cycle_momentum:
            # For the logs (see `on_epoch_end`).
            self._momentum_name = _control.momentum_attribute(self._base)
        self._program = _control.install(self.model, program)

    def _sized_schedule(self, total, per_epoch):
        """``(schedule, its _config_key)`` for this fit: the last fit's when
        the callback's config and the sizes are the same (a refit: building
        and validating the schedule and its key costs ~50 us)."""
        config = self.get_config()
        made = self._made
        if made is not None and made[0] == (config, total, per_epoch):
            return made[1], made[2]
        schedule = self._sized(lambda: self._make_schedule(total, per_epoch))
        key = _config_key(schedule)
        self._made = ((config, total, per_epoch), schedule, key)
        return schedule, key

    def _size_varying(self, wrapper, epochs, steps):
        """Size this fit under a `GradientAccumulation` whose `steps` is a
        callable: replay it over the fit's batches from the wrapper's state
        now (its update count and its open window), every batch accepted.

        Returns the mean updates per batch (for per-epoch sizes).
        """
        if not steps or not epochs:
            return 1.0
        counts = wrapper.updates_after(epochs * steps)
        # An open window at the end counts as one more step (`flush()`), as
        # the fixed-k rounding up does.
        fit_steps = int(counts[-1]) + int(counts[-1] == counts[-2])
        self._updates_at = counts
        self._varying_fit_steps = max(1, fit_steps)
        self._unit_per_batch = self._varying_fit_steps / (epochs * steps)
        return self._unit_per_batch

    def on_epoch_begin(self, epoch, logs=None):
        if self._placed or self._program is None:
            return
        self._placed = True
        optimizer = self.model.optimizer
        iterations = _control.iterations(optimizer)
        if self._updates_at is not None:
            # Updates in the first `epoch` epochs, from the replay.
            steps = self.params["steps"]
            done = self._updates_at[min(epoch * steps, len(self._updates_at) - 1)]
            origin = iterations - int(done)
        elif self._iters_per_epoch is None:
            # Unknown epoch length: a later epoch can only be a resume of a
            # schedule that started at the optimizer's step 0.
            origin = iterations if epoch == 0 else 0
        else:
            origin = iterations - int(math.floor(epoch * self._iters_per_epoch))
        scale = _control.pending_scale(optimizer)
        if scale is None:
            if epoch == 0:
                scale = 1.0
            elif iterations == 0:
                scale = 1.0
                warnings.warn(
                    f"{type(self).__name__} resumes its schedule at epoch "
                    f"{epoch} on an optimizer whose step counter is 0 (a fresh "
                    "optimizer: a weights-only checkpoint or a recompile). The "
                    "schedule continues where the epoch puts it, but the "
                    "optimizer's state (its moments and any plateau "
                    "reduction) starts afresh.",
                    stacklevel=2,
                )
            else:
                # A resume: the checkpoint restored the scale, unless this is
                # the same process after an interrupted run of this schedule.
                scale = _control.released_scale(optimizer, self._program.key)
        _control.start(
            optimizer,
            origin,
            lr_on=True,
            momentum_on=self._cycle_momentum,
            scale=scale,
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self._placed or self._program is None:
            return
        base = self._base
        state = _control._state(base)
        lease = state.lease
        if lease is None or lease.owner() is not self:
            return
        logs["lr"], local = _control.scheduled_lr(base, state)
        if self._cycle_momentum:
            momentum = self._program.host_momentum(local)
        else:
            momentum = _control.user_momentum(base, self._momentum_name)
        if momentum is not None:
            logs["momentum"] = momentum

    def on_train_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and _control.owner(optimizer) is self:
            _control.release(optimizer, ended=True)

    def get_config(self):
        return {"total_steps": self.total_steps, "count": self.count}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
