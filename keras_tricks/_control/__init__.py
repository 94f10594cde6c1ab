"""The control core: how keras_tricks steers the LR and momentum of an optimizer.

Read this first if you change a callback that touches the learning rate or the
momentum. Every such callback (the schedule callbacks, both plateau callbacks,
the LR finder, `BackupAndRestore`) goes through this module, so that they
compose, survive saves and interruptions, and never cost a retrace that plain
Keras would not do. A diagram of the lifecycle is in `docs/how-it-works.md`.

**Where the decisions live.** There are two kinds of values:

* *Run-time state*, read by the compiled train step at every update, so that
  changing it never retraces. On JAX only the model's and the optimizer's own
  variables are run-time state (any other `keras.Variable` read in the step is
  baked in when it is traced), so they are optimizer variables, created by
  :func:`take_control` on each base optimizer (the optimizers behind any
  wrapper) and appended to its variable list:

  - ``kt_origin``: the optimizer step at which this fit's schedule starts
    (it sees ``(iterations - origin) // divisor``; negative when a resumed
    run's optimizer is fresh). On JAX it is ``kt_control[4:6]`` instead,
    two exact float32 halves (``origin = hi * 2**24 + lo``, `state._Origin`);
  - ``kt_control``, one float32 vector of four (six on JAX: Keras's JAX
    trainer passes every optimizer variable in and out of the jitted step,
    1-8 us each a step on a CPU, so the state shares one variable; the code
    reads its parts as ``state.flags``, ``state.scale``,
    ``state.own_scale``, ``state.origin``):

    - ``kt_flags`` = ``kt_control[0:2]``: ``[lr_on, momentum_on]``, whether
      the installed program drives the LR and the momentum right now;
    - ``kt_scale`` = ``kt_control[2]``: the plateau scale of an installed
      schedule, on an optimizer that has no LR variable (one created with a
      Keras schedule);
    - ``kt_own_scale`` = ``kt_control[3]``: the plateau scale of that
      optimizer's *own* schedule (`SGD(CosineDecay(...))` +
      `ReduceLROnPlateau`).

  On an optimizer created with a float LR (the usual case), the scale of an
  installed schedule is carried by the optimizer's **own LR variable**, which
  the schedule otherwise leaves unused: the LR is
  ``schedule(step) * learning_rate_variable / peak``, where ``peak`` is the
  schedule's largest LR, and the variable is set to ``peak`` when a new
  schedule starts. A plateau reduction multiplies the variable, exactly what
  Keras's own `ReduceLROnPlateau` does to it (so Keras's callback composes
  with our schedules), and every checkpoint saves it: a `.keras` file,
  `ModelCheckpoint` (weights or full model), Keras's `BackupAndRestore` and
  ours. A reload without keras_tricks trains at the reduced peak LR.

* *The program*, Python objects that are constants of the traced step: the
  installed schedule (with its lookup tables on PyTorch and TensorFlow), its
  momentum function and the step divisor. Installing a program whose key
  (class and config) differs from the installed one rebuilds the train
  function: one trace, at most once per `fit`. The same schedule in the next
  `fit`, any plateau reduction, a plain `fit` afterwards and a resume trace
  nothing that plain Keras would not. The program stays installed after its
  fit, switched off by ``kt_flags``.

**Host reads and writes.** The host reads and writes these variables at
`fit`'s start and end, at epoch ends and at plateau reductions (only the LR
finder reads `iterations` at every batch). The step only reads the control
variables and checkpoints leave them out: the host keeps a copy of each
(`state._mirror`, dropped by any other writer's `assign`,
`state._ControlVariable`, except Keras's JAX trainer assigning back the
values it removed for an epoch) and reads the flags, scales and origin from
it. `take_control` records an optimizer's base optimizers on it
(`reach._TAKEN`): the hooks at each epoch end do not walk the wrappers again.
On JAX control's writes leave a NumPy array as the variable's value, which
the next step takes as an argument (`state._assign_wholes`; `state.settle`
gives them device arrays before Keras needs their sharding, under a
`keras.distribution`).

**Saving.** The control variables are *not* saved: an optimizer's saved
variables must be exactly Keras's, because Keras skips loading *all* of them
when their count differs. So every optimizer on the path (the base ones, the
wrappers, a `LossScaleOptimizer`) gets a class whose `save_own_variables` and
`load_own_variables` leave the control variables out, and that serializes
under the original class name and config (no new class in the file, no
keras_tricks needed to load it). `kt_own_scale` goes into the config instead:
the optimizer's own schedule is saved scaled (for Keras's schedules and
ours), so a reload continues at the reduced LR. `kt_scale` (the rare
schedule-over-schedule case) is kept by our `BackupAndRestore`.

**Lifecycle.** :func:`take_control` (at a callback's `on_train_begin`)
releases whatever an earlier `fit` left installed, then :func:`lease` records
who drives the optimizer and the user's LR, and :func:`start` (at the first
`on_epoch_begin`, after `BackupAndRestore` has restored the optimizer and
the epoch) places the schedule and switches it on. A normal end
(`on_train_end`, also after `stop_training`) calls :func:`release`: the
program is switched off, the LR variable gets back its value from before the
schedule, the lease is dropped. Keras does not call `on_train_end` when `fit`
raises (Ctrl-C in a notebook, an OOM, any exception), so :func:`take_control`
also wraps the `fit` and `train_on_batch` of the model instance: any later
call first releases whatever an earlier `fit` left in control. A
`GradientAccumulation.flush()` after `fit` switches the schedule that ended
the fit on again for its one update (:func:`last_schedule`), so the last
window uses the schedule's last step.

**Writes to `optimizer.learning_rate`** (Keras's `ReduceLROnPlateau` and
`LearningRateScheduler`) while a schedule runs rescale it: the LR becomes the
written value at this step and the schedule keeps its shape from there. On an
optimizer with a Keras schedule, where Keras raises `TypeError`, the write
scales that schedule.

**Where the code is.** One module a concept, each importing only the ones
before it: `reach` (the optimizers behind any wrapper), `program` (the
schedule program and its host tables), `state` (the control variables and
what reads and scales them), `twins` (the controlled classes) and `lifecycle`
(take, lease, install, start, release, the guards). Callers use the names
below as `_control.<name>`.
"""

from keras_tricks._control.lifecycle import (
    install,
    last_schedule,
    lease,
    multiply_lr,
    owner,
    refresh,
    release,
    restore,
    set_lr_scale,
    set_pending_scale,
    snapshot,
    start,
    stop_momentum,
    take_control,
)
from keras_tricks._control.program import Program
from keras_tricks._control.reach import (
    _is_control,
    accumulation_steps,
    base_optimizers,
    has_lr_variable,
    momentum_attribute,
)
from keras_tricks._control.state import (
    _state,
    current_lr,
    current_momentum,
    get_lr_scale,
    has_schedule,
    is_on,
    iterations,
    origin,
    pending_scale,
    released_scale,
    schedule_scale,
    schedule_step,
    scheduled_lr,
    set_schedule_scale,
    user_momentum,
)
from keras_tricks._control.twins import scaled_schedule

__all__ = [
    "accumulation_steps",
    "base_optimizers",
    "current_lr",
    "current_momentum",
    "get_lr_scale",
    "has_lr_variable",
    "has_schedule",
    "install",
    "_is_control",
    "is_on",
    "iterations",
    "last_schedule",
    "lease",
    "momentum_attribute",
    "multiply_lr",
    "origin",
    "owner",
    "pending_scale",
    "Program",
    "refresh",
    "release",
    "released_scale",
    "restore",
    "scaled_schedule",
    "schedule_scale",
    "schedule_step",
    "scheduled_lr",
    "set_lr_scale",
    "set_pending_scale",
    "set_schedule_scale",
    "snapshot",
    "start",
    "_state",
    "stop_momentum",
    "take_control",
    "user_momentum",
]
