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
    run's optimizer is fresh);
  - ``kt_flags``: ``[lr_on, momentum_on]``, whether the installed program
    drives the LR and the momentum right now;
  - ``kt_scale``: the plateau scale of an installed schedule, on an optimizer
    that has no LR variable (one created with a Keras schedule);
  - ``kt_own_scale``: the plateau scale of that optimizer's *own* schedule
    (`SGD(CosineDecay(...))` + `ReduceLROnPlateau`).

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
"""

import contextlib
import math
import threading
import warnings
import weakref

import keras
import numpy as np
from keras import ops

from keras_tricks.schedules._ops import host_values

_HYPER_NAMES = ("momentum", "beta_1")
_STATE = "_kt_state"
_GUARD = "_kt_guarded"

_controlled_classes = {}
# The LR and momentum of the update being applied, per thread and optimizer:
# see `_apply`. Thread-local because tf.distribute runs one replica per thread.
_applying = threading.local()


# --------------------------------------------------------------- reaching


def base_optimizers(optimizer):
    """The optimizers that really apply updates, behind any wrappers.

    Walks through ``inner_optimizer`` (Keras's ``LossScaleOptimizer`` and this
    package's wrappers) and ``optimizers`` (multi-optimizers).
    """
    if optimizer is None:
        return []
    nested = getattr(optimizer, "optimizers", None)
    if isinstance(nested, (list, tuple)) and nested:
        found = []
        for opt in nested:
            found.extend(base_optimizers(opt))
        return found
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        return base_optimizers(inner)
    return [optimizer]


def _all_optimizers(optimizer):
    """Every optimizer on the path: wrappers first, then what they hold."""
    if optimizer is None:
        return []
    found = [optimizer]
    nested = getattr(optimizer, "optimizers", None)
    if isinstance(nested, (list, tuple)) and nested:
        for opt in nested:
            found.extend(_all_optimizers(opt))
        return found
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        found.extend(_all_optimizers(inner))
    return found


def accumulation_steps(optimizer):
    """How many batches make one real update, and who accumulates.

    Returns ``(k, "wrapper")`` when a ``GradientAccumulation`` wrapper sits
    above the base optimizer (its inner ``iterations`` already count updates),
    ``(wrapper, "varying")`` when that wrapper's ``steps`` is a callable of
    the update count (the batches per update vary: ask the wrapper's
    ``updates_after`` how many updates a number of batches makes),
    ``(k, "builtin")`` for Keras's ``gradient_accumulation_steps`` (its
    ``iterations`` count batches), and ``(1, None)`` otherwise. In both
    wrapper cases the program needs no divisor: the base optimizer's
    ``iterations`` is the wrapper's count of real updates.
    """
    opt = optimizer
    while opt is not None:
        k = getattr(opt, "accumulation_steps", None)
        if hasattr(opt, "inner_optimizer") and callable(k):
            return opt, "varying"
        if isinstance(k, int) and k > 1 and hasattr(opt, "inner_optimizer"):
            return k, "wrapper"
        inner = getattr(opt, "inner_optimizer", None)
        if inner is None:
            break
        opt = inner
    for base in base_optimizers(optimizer):
        k = getattr(base, "gradient_accumulation_steps", None)
        if k and k > 1:
            return int(k), "builtin"
    return 1, None


def momentum_attribute(optimizer):
    """The name of the attribute that plays the role of momentum, or None."""
    for name in ("beta_1", "momentum"):
        if name in vars(optimizer):
            return name
        try:
            getattr(optimizer, name)
        except AttributeError:
            continue
        return name
    return None


def has_lr_variable(optimizer):
    """True when the optimizer's LR is its own variable (created with a float)."""
    return isinstance(vars(optimizer).get("_learning_rate"), keras.Variable)


def _is_control(variable):
    return getattr(variable, "_kt_control", False)


# ------------------------------------------------------------ the program


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
        peak: the schedule's largest LR (see the module docstring).
        key: a hashable that is equal for two programs that trace the same.
    """

    def __init__(
        self, schedule, momentum=None, divisor=1, table_size=None, peak=None, key=None
    ):
        self.schedule = schedule
        self.momentum_fn = momentum
        self.divisor = int(divisor)
        self.key = key
        self._lr_table = self._momentum_table = None
        self._host_lr = self._host_momentum = None
        if table_size:
            steps = np.arange(int(table_size), dtype="int64")
            self._host_lr = host_values(schedule, steps)
            self._lr_table = ops.convert_to_tensor(self._host_lr)
            if momentum is not None:
                self._host_momentum = host_values(momentum, steps)
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


# ------------------------------------------------------- control state


class _State:
    """The Python side of a controlled base optimizer (see the docstring)."""

    def __init__(self, opt):
        dtype = opt._iterations.dtype
        self.origin = _control_variable(opt, "kt_origin", (), dtype)
        self.flags = _control_variable(opt, "kt_flags", (2,), "float32")
        self.scale = _control_variable(opt, "kt_scale", (), "float32", 1.0)
        self.own_scale = _control_variable(opt, "kt_own_scale", (), "float32", 1.0)
        self.program = None
        self.lease = None
        # Host mirrors of the flags (the host sets them): an eager step
        # (PyTorch without `jit_compile`) branches on them in Python.
        self.lr_on = False
        self.momentum_on = False
        self.eager = False
        self.pending_scale = None
        self.released = None


def _control_variable(opt, name, shape, dtype, value=0):
    with keras.name_scope(opt.name, caller=opt):
        variable = keras.Variable(
            np.full(shape, value, dtype=np.dtype(str(dtype))),
            name=name,
            dtype=dtype,
            trainable=False,
            aggregation="only_first_replica",
        )
    variable._kt_control = True
    opt._track_variable(variable)
    return variable


class _Lease:
    def __init__(self, owner, user_lr):
        self.owner = weakref.ref(owner) if owner is not None else (lambda: None)
        self.user_lr = user_lr


def _state(opt):
    return vars(opt).get(_STATE)


# ------------------------------------------------ the controlled classes


def _values_in_apply(self):
    return getattr(_applying, "values", {}).get(id(self))


def _shifted(self, state):
    iterations = self._iterations
    origin = state.origin
    if state.eager:
        return iterations.value - origin.value
    return ops.subtract(iterations, origin)


def _lr_and_momentum(self):
    """The LR (and the momentum, or None) this update uses."""
    parent = type(self).__mro__[1]
    state = _state(self)
    if state is not None and state.eager and state.program is not None and state.lr_on:
        return _eager_values(self, state)
    own = parent._get_current_learning_rate(self)
    if state is None:
        return own, None
    has_var = has_lr_variable(self)
    if not has_var:
        own = ops.multiply(own, state.own_scale)
    program = state.program
    if program is None:
        return own, None
    if state.eager and not state.lr_on and not state.momentum_on:
        return own, None
    lr, momentum = program.values(_shifted(self, state))
    if has_var:
        ratio = ops.divide(self._learning_rate, program.peak)
    else:
        ratio = state.scale
    scheduled = ops.multiply(lr, ratio)
    if state.eager:
        lr = scheduled if state.lr_on else own
        if momentum is not None and not state.momentum_on:
            momentum = None
        return lr, momentum
    lr = ops.where(ops.greater(state.flags[0], 0.0), scheduled, ops.cast(own, "float32"))
    if momentum is not None:
        # The user's value where the momentum function is off.
        name = vars(self).get("_kt_momentum_attr")
        raw = vars(self).get(name, 0.0) if name else 0.0
        momentum = ops.where(ops.greater(state.flags[1], 0.0), momentum, raw)
    return lr, momentum


def _eager_values(self, state):
    """`_lr_and_momentum` for an eager step (PyTorch without `jit_compile`)
    with the schedule switched on.

    The flags are Python booleans here, so nothing is computed for a branch
    that is off, and the few scalar operations use the tensors' own operators
    (2-3 us each) instead of Keras ops (about 20 us each on PyTorch): the
    optimizer's own LR (a Keras schedule evaluated every update, if it has
    one) is not read at all.
    """
    program = state.program
    lr, momentum = program.values(_shifted(self, state))
    if has_lr_variable(self):
        lr = lr * (self._learning_rate.value / program.peak)
    else:
        lr = lr * state.scale.value
    if momentum is not None and not state.momentum_on:
        momentum = None
    return lr, momentum


def _current_learning_rate(self):
    values = _values_in_apply(self)
    if values is not None:
        return values[0]
    return _lr_and_momentum(self)[0]


def _hyper_property(name):
    def getter(self):
        state_dict = vars(self)
        state = state_dict.get(_STATE)
        if (
            state is not None
            and state.program is not None
            and state.program.has_momentum
            and state_dict.get("_kt_momentum_attr") == name
            and not state_dict.get("_kt_building", False)
            and (state.momentum_on or not state.eager)
        ):
            values = _values_in_apply(self)
            if values is None:
                values = _lr_and_momentum(self)
            if values[1] is not None:
                return values[1]
        try:
            return state_dict[name]
        except KeyError:
            raise AttributeError(name) from None

    def setter(self, value):
        vars(self)[name] = value

    return property(getter, setter)


def _lr_property():
    base = keras.optimizers.Optimizer.learning_rate

    def getter(self):
        return self._get_current_learning_rate()

    def setter(self, value):
        state = _state(self)
        if state is None or callable(value) or isinstance(value, keras.Variable):
            return base.fset(self, value)
        value = float(value)
        has_var = has_lr_variable(self)
        if not state.lr_on and has_var:
            return base.fset(self, value)
        # A schedule is in control (ours, or the optimizer's own): the write
        # rescales it so that the LR at this step becomes `value`.
        current = current_lr(self)
        if value == current:
            return None
        if not current > 0 or not math.isfinite(value) or value < 0:
            driver = "a keras_tricks schedule callback" if state.lr_on else "its schedule"
            raise ValueError(
                f"The learning rate of this optimizer is driven by {driver}, "
                "and a write of `optimizer.learning_rate` (e.g. by "
                "keras.callbacks.ReduceLROnPlateau or LearningRateScheduler) "
                "rescales it; it is at "
                f"{current} now, which cannot be rescaled to the value "
                f"written. Received: learning_rate={value}"
            )
        _rescale(self, state, value / current)

    return property(getter, setter, doc=base.__doc__)


def _apply(self, grads, trainable_variables=None):
    """`apply`, with the step's LR and momentum computed once, up front.

    Keras reads `learning_rate` once or twice per update and the momentum
    once or more per variable: each read would evaluate the schedule again
    (free after XLA's common subexpression elimination, but not on PyTorch's
    eager step or in TensorFlow graphs). `iterations` only advances at the end
    of `apply`, so one computation serves every read.
    """
    parent = type(self).__mro__[1]
    state = _state(self)
    if state is None or state.program is None:
        if state is None or has_lr_variable(self):
            return parent.apply(self, grads, trainable_variables)
    table = getattr(_applying, "values", None)
    if table is None:
        table = _applying.values = {}
    outer = table.get(id(self))
    table[id(self)] = _lr_and_momentum(self)
    try:
        return parent.apply(self, grads, trainable_variables)
    finally:
        if outer is None:
            table.pop(id(self), None)
        else:
            table[id(self)] = outer


def _save_own_variables(self, store):
    for i, variable in enumerate(v for v in self.variables if not _is_control(v)):
        store[str(i)] = variable.numpy()


def _load_own_variables(self, store):
    parent = type(self).__mro__[1]
    own = [v for v in self.variables if not _is_control(v)]
    if len(store.keys()) != len(own):
        # Keras's own message and behaviour.
        return parent.load_own_variables(self, store)
    for i, variable in enumerate(own):
        variable.assign(store[str(i)])


_LR_KEYS = (
    "initial_learning_rate",
    "end_learning_rate",
    "warmup_target",
    "values",
    "max_lr",
    "min_lr",
    "base_lr",
    "peak_lr",
    "initial_lr",
    "final_lr",
    "lr",
)


def scaled_schedule(schedule, scale):
    """A copy of ``schedule`` whose LRs are multiplied by ``scale``, or None.

    Works for Keras's schedules and this package's, whose LR-valued
    arguments are known by name; None for any other.
    """
    try:
        config = schedule.get_config()
    except (AttributeError, NotImplementedError):
        return None
    found = False
    for key in _LR_KEYS:
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            config[key] = float(value) * scale
            found = True
        elif isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) for v in value
        ):
            config[key] = [float(v) * scale for v in value]
            found = True
    if not found:
        return None
    return type(schedule).from_config(config)


def _get_config(self):
    parent = type(self).__mro__[1]
    config = parent.get_config(self)
    for name in _HYPER_NAMES:
        if name in config and name in vars(self):
            config[name] = vars(self)[name]
    state = _state(self)
    if state is not None and not has_lr_variable(self):
        own_scale = float(state.own_scale.numpy())
        if own_scale != 1.0 and isinstance(
            self._learning_rate, keras.optimizers.schedules.LearningRateSchedule
        ):
            scaled = scaled_schedule(self._learning_rate, own_scale)
            if scaled is None:
                warnings.warn(
                    f"The plateau reduction (x{own_scale:.3g}) of the schedule "
                    f"{type(self._learning_rate).__name__} cannot be written into "
                    "the optimizer's config; a model loaded from this file "
                    "starts at the unreduced schedule.",
                    stacklevel=2,
                )
            else:
                config["learning_rate"] = (
                    keras.optimizers.schedules.serialize(scaled)
                )
    return config


def _build(self, variables):
    # `build` may run inside the first traced step (TensorFlow) and branches
    # in Python on the hyperparameters (`if self.momentum != 0`): let it see
    # the user's values.
    parent = type(self).__mro__[1]
    vars(self)["_kt_building"] = True
    try:
        return parent.build(self, variables)
    finally:
        vars(self)["_kt_building"] = False


def _sgd_update_step(self, gradient, variable, learning_rate):
    """SGD's update with a momentum that may be a tensor.

    Keras's own ``SGD.update_step`` branches in Python on ``momentum != 0``,
    which a traced tensor cannot answer. The arithmetic is the same.
    """
    momentum = self.momentum
    if isinstance(momentum, (int, float)):
        return keras.optimizers.SGD.update_step(self, gradient, variable, learning_rate)
    learning_rate = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    m = self.momentums[self._get_variable_index(variable)]
    momentum = ops.cast(momentum, variable.dtype)
    step = ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate))
    self.assign(m, step)
    if self.nesterov:
        self.assign_add(variable, ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate)))
    else:
        self.assign_add(variable, m)


def _controlled_class(cls, base):
    """The twin of ``cls``: full control for a base optimizer, the saving
    filter only for a wrapper."""
    if getattr(cls, "_kt_controlled", False):
        return cls
    key = (cls, base)
    if key not in _controlled_classes:
        attrs = {
            "_kt_controlled": True,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "save_own_variables": _save_own_variables,
            "load_own_variables": _load_own_variables,
        }
        if base:
            attrs.update(
                _get_current_learning_rate=_current_learning_rate,
                learning_rate=_lr_property(),
                get_config=_get_config,
                build=_build,
                apply=_apply,
            )
            for name in _HYPER_NAMES:
                attrs[name] = _hyper_property(name)
            if issubclass(cls, keras.optimizers.SGD):
                attrs["update_step"] = _sgd_update_step
        twin = type(cls.__name__, (cls,), attrs)
        _register_like(twin, cls)
        _controlled_classes[key] = twin
    return _controlled_classes[key]


def _register_like(twin, cls):
    """Serialize ``twin`` under the registered name of ``cls`` (if any)."""
    name = keras.saving.get_registered_name(cls)
    if name == cls.__name__:
        return
    try:
        from keras.src.saving import object_registration
    except ImportError:  # pragma: no cover - a Keras without the module
        return
    object_registration.GLOBAL_CUSTOM_NAMES[twin] = name


# ------------------------------------------------------------ the verbs


def take_control(optimizer, model=None):
    """Bring every optimizer on the path under control; idempotent.

    Swaps each class for its controlled twin, creates the control variables
    of each base optimizer (once), guards ``model``'s `fit` and
    `train_on_batch` (see the module docstring) and releases a schedule that
    an earlier `fit` left installed. Returns the base optimizers.
    """
    bases = base_optimizers(optimizer)
    if not bases:
        raise ValueError(
            "The model has no optimizer. Compile the model before `fit` "
            "so that the callback can control its learning rate."
        )
    for opt in bases:
        if not isinstance(opt, keras.optimizers.Optimizer):
            raise TypeError(
                "Expected a `keras.optimizers.Optimizer` behind the model's "
                f"optimizer. Received: {type(opt).__name__}"
            )
    changed = False
    for opt in _all_optimizers(optimizer):
        if not isinstance(opt, keras.optimizers.Optimizer):
            continue
        is_base = any(opt is b for b in bases)
        twin = _controlled_class(type(opt), is_base)
        if type(opt) is not twin:
            opt.__class__ = twin
            changed = True
        if is_base and _state(opt) is None:
            vars(opt)[_STATE] = _create_state(opt, model)
            changed = True
    if model is not None:
        _guard(model)
        if changed:
            # A train function traced before holds the uncontrolled step
            # (TensorFlow keeps it; JAX would not see the new variables).
            refresh(model)
    return bases


def _create_state(opt, model):
    strategy = None
    if keras.backend.backend() == "tensorflow" and model is not None:
        strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None:
        with strategy.scope():
            return _State(opt)
    return _State(opt)


def _guard(model):
    """Wrap the model's `fit` and `train_on_batch` to release stale control."""
    if vars(model).get(_GUARD):
        return
    try:
        model_ref = weakref.ref(model)
    except TypeError:
        return

    def wrap(name):
        original = getattr(model, name)

        def guarded(*args, **kwargs):
            target = model_ref()
            if target is not None:
                _begin_fit(getattr(target, "optimizer", None))
            return original(*args, **kwargs)

        guarded.__wrapped__ = original
        guarded.__doc__ = original.__doc__
        guarded.__name__ = name
        return guarded

    try:
        object.__setattr__(model, "fit", wrap("fit"))
        object.__setattr__(model, "train_on_batch", wrap("train_on_batch"))
        object.__setattr__(model, _GUARD, True)
    except AttributeError:
        pass


def lease(optimizer, owner):
    """Record ``owner`` (a callback) as the driver of the optimizer's LR.

    Releases any earlier lease first. Returns the base optimizers.
    """
    bases = base_optimizers(optimizer)
    for opt in bases:
        state = _state(opt)
        _release_one(opt, state)
        user_lr = None
        if has_lr_variable(opt):
            user_lr = float(opt._learning_rate.numpy())
        state.lease = _Lease(owner, user_lr)
    return bases


def owner(optimizer):
    """The callback holding the lease of the first base optimizer, or None."""
    bases = base_optimizers(optimizer)
    state = _state(bases[0]) if bases else None
    if state is None or state.lease is None:
        return None
    return state.lease.owner()


def install(model, program, eager=None):
    """Make ``program`` the program of every base optimizer.

    Keeps the installed program when the keys are equal (nothing to
    retrace); otherwise installs this one and rebuilds the train function.
    Returns the program in place.
    """
    optimizer = model.optimizer
    if eager is None:
        eager = keras.backend.backend() == "torch" and not getattr(
            model, "jit_compile", False
        )
    eager = eager or bool(getattr(model, "run_eagerly", False))
    changed = False
    placed = None
    for opt in base_optimizers(optimizer):
        state = _state(opt)
        if state.program is None or program.key is None or state.program.key != program.key:
            state.program = program
            changed = True
        if state.eager != eager:
            state.eager = eager
            changed = True
        if program.has_momentum:
            vars(opt)["_kt_momentum_attr"] = momentum_attribute(opt)
        placed = state.program
    if changed:
        refresh(model)
    return placed


def start(optimizer, origin, lr_on=True, momentum_on=False, scale=None):
    """Place the installed program at ``origin`` and switch it on.

    ``scale`` (a float) sets the schedule's scale: the LR variable becomes
    ``peak * scale`` (or `kt_scale` does, without an LR variable); None keeps
    the current one (a resumed run, whose checkpoint restored it).
    """
    for opt in base_optimizers(optimizer):
        state = _state(opt)
        state.origin.assign(int(origin))
        if scale is not None:
            set_schedule_scale(opt, scale)
        state.flags.assign(np.asarray([float(lr_on), float(momentum_on)], "float32"))
        state.lr_on, state.momentum_on = bool(lr_on), bool(momentum_on)


def stop_momentum(optimizer):
    """Switch the momentum function off (the user's momentum is used)."""
    for opt in base_optimizers(optimizer):
        state = _state(opt)
        if state is None:
            continue
        state.flags.assign(np.asarray([float(state.lr_on), 0.0], "float32"))
        state.momentum_on = False


def release(optimizer, ended=False):
    """Hand the LR and momentum back to the optimizer; idempotent.

    Switches the program off (it stays traced), gives an LR variable back
    the user's value from before the schedule, and drops the lease.
    ``ended=True`` (a schedule's normal `on_train_end`) lets
    :func:`last_schedule` switch it on again for a `flush()` after `fit`.
    """
    for opt in base_optimizers(optimizer):
        _release_one(opt, _state(opt), ended)


def _begin_fit(optimizer):
    """A `fit` or `train_on_batch` of the model begins: nothing from an
    earlier `fit` stays in control."""
    for opt in base_optimizers(optimizer):
        state = _state(opt)
        if state is None:
            continue
        _release_one(opt, state)
        if state.released is not None:
            state.released["ended"] = False


@contextlib.contextmanager
def last_schedule(optimizer):
    """Switch on again, for the block, the schedule that ended the last `fit`.

    `GradientAccumulation.flush()` after `fit` applies the unfinished window
    with the LR (and momentum) of the schedule's last step, not the
    optimizer's own LR. Does nothing when no schedule ended the last `fit`.
    """
    entries = []
    for opt in base_optimizers(optimizer):
        state = _state(opt)
        released = state.released if state is not None else None
        if (
            state is None
            or state.lease is not None
            or state.program is None
            or not released
            or not released.get("ended")
            or released.get("ratio") is None
        ):
            continue
        lr = float(opt._learning_rate.numpy()) if has_lr_variable(opt) else None
        entries.append((opt, state, lr, float(state.scale.numpy())))
        momentum_on = bool(released.get("momentum_on"))
        state.flags.assign(np.asarray([1.0, float(momentum_on)], "float32"))
        state.lr_on, state.momentum_on = True, momentum_on
        set_schedule_scale(opt, released["ratio"])
    try:
        yield bool(entries)
    finally:
        for opt, state, lr, scale in entries:
            state.flags.assign(np.zeros((2,), "float32"))
            state.lr_on = state.momentum_on = False
            if lr is not None:
                opt._learning_rate.assign(lr)
            state.scale.assign(scale)


def _release_one(opt, state, ended=False):
    if state is None or state.lease is None:
        return
    lease_ = state.lease
    state.released = {
        "key": state.program.key if state.program is not None else None,
        "ratio": schedule_scale(opt) if state.lr_on else None,
        "user_lr": lease_.user_lr,
        "momentum_on": state.momentum_on,
        "ended": ended,
    }
    if state.lr_on or state.momentum_on:
        state.flags.assign(np.zeros((2,), "float32"))
    state.lr_on = state.momentum_on = False
    if lease_.user_lr is not None and has_lr_variable(opt):
        opt._learning_rate.assign(lease_.user_lr)
    state.scale.assign(1.0)
    state.lease = None


def schedule_scale(opt):
    """The scale of the installed schedule on base optimizer ``opt``."""
    state = _state(opt)
    if state is None or state.program is None:
        return 1.0
    if has_lr_variable(opt):
        return float(opt._learning_rate.numpy()) / state.program.peak
    return float(state.scale.numpy())


def set_schedule_scale(opt, scale):
    state = _state(opt)
    if has_lr_variable(opt):
        opt._learning_rate.assign(float(np.float32(state.program.peak)) * float(scale))
    else:
        state.scale.assign(float(scale))


def get_lr_scale(optimizer):
    """The scale on whatever drives the LR of the first base optimizer.

    The installed schedule's scale while it is on; the scale of the
    optimizer's own schedule otherwise (1.0 for a plain LR variable, whose
    reductions are in its value).
    """
    bases = base_optimizers(optimizer)
    if not bases:
        return 1.0
    opt = bases[0]
    state = _state(opt)
    if state is None:
        return 1.0
    if state.lr_on:
        return schedule_scale(opt)
    if has_lr_variable(opt):
        return 1.0
    return float(state.own_scale.numpy())


def set_lr_scale(optimizer, scale):
    """Set the scale of whatever drives the LR (see :func:`get_lr_scale`)."""
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"The LR scale must be a positive number. Received: {scale}")
    for opt in take_control(optimizer):
        state = _state(opt)
        if state.lr_on:
            set_schedule_scale(opt, scale)
        elif not has_lr_variable(opt):
            state.own_scale.assign(scale)


def multiply_lr(optimizer, factor, min_lr=0.0, model=None):
    """Multiply the running LR by ``factor``, not below ``min_lr``.

    The LR variable (plain LR, or the scale of an installed schedule), or the
    scale of the schedule in control. Returns ``[(opt, new_lr), ...]`` for
    the base optimizers whose LR was above ``min_lr``. Nothing retraces.
    """
    floor = np.float32(min_lr)
    changed = []
    for opt in take_control(optimizer, model):
        state = _state(opt)
        old = current_lr(opt)
        if not old > floor:
            continue
        new = max(old * factor, float(min_lr))
        _rescale(opt, state, new / old)
        changed.append((opt, new))
    return changed


def _rescale(opt, state, ratio):
    """Multiply the LR in control by ``ratio`` where it lives: the LR
    variable (a plain LR, or an installed schedule's scale), `kt_scale`, or
    `kt_own_scale` (the optimizer's own Keras schedule)."""
    if has_lr_variable(opt):
        opt._learning_rate.assign(float(opt._learning_rate.numpy()) * ratio)
    elif state.lr_on:
        state.scale.assign(float(state.scale.numpy()) * ratio)
    else:
        state.own_scale.assign(float(state.own_scale.numpy()) * ratio)


def has_schedule(optimizer):
    """True when the LR of the first base optimizer depends on the step."""
    bases = base_optimizers(optimizer)
    if not bases:
        return False
    opt = bases[0]
    state = _state(opt)
    if state is not None and state.lr_on:
        return True
    return not has_lr_variable(opt)


def is_on(optimizer):
    bases = base_optimizers(optimizer)
    state = _state(bases[0]) if bases else None
    return bool(state is not None and state.lr_on)


def current_lr(optimizer, host=False):
    """The LR the next update will use, as a Python float.

    ``host=True`` (for logs) reads it from the program's host table and the
    scale while a schedule is on: evaluating the schedule eagerly costs a
    few dozen backend dispatches (milliseconds on JAX) at every epoch end.
    The host table is NumPy float32: on JAX, which evaluates the schedule in
    the step, it may differ from the step's value by ~1e-5 relative.
    """
    bases = base_optimizers(optimizer)
    opt = bases[0]
    state = _state(opt)
    if host and state is not None and state.lr_on and state.program is not None:
        shifted = int(ops.convert_to_numpy(opt._iterations)) - int(
            ops.convert_to_numpy(state.origin)
        )
        local = max(shifted, 0) // state.program.divisor
        return state.program.host_lr(local) * schedule_scale(opt)
    return float(ops.convert_to_numpy(opt.learning_rate))


def current_momentum(optimizer):
    """The momentum the next update will use, or None where there is none."""
    bases = base_optimizers(optimizer)
    name = momentum_attribute(bases[0])
    if name is None:
        return None
    value = getattr(bases[0], name)
    if callable(value):
        value = value()
    return float(ops.convert_to_numpy(value))


def iterations(optimizer):
    """``iterations`` of the first base optimizer, as a Python int."""
    opt = base_optimizers(optimizer)[0]
    return int(ops.convert_to_numpy(opt._iterations))


def origin(optimizer):
    opt = base_optimizers(optimizer)[0]
    state = _state(opt)
    return int(ops.convert_to_numpy(state.origin)) if state is not None else 0


def refresh(model):
    """Rebuild the model's train function (a new program is traced at the
    next step). Cheap before the first trace, one retrace afterwards."""
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)


def snapshot(optimizer):
    """Everything :func:`restore` needs to undo what happens next: the
    control variables, the LR variables and the Python state."""
    saved = []
    for opt in base_optimizers(optimizer):
        state = _state(opt)
        entry = {"opt": opt}
        if has_lr_variable(opt):
            entry["lr"] = float(opt._learning_rate.numpy())
        if state is not None:
            entry.update(
                origin=int(ops.convert_to_numpy(state.origin)),
                scale=float(state.scale.numpy()),
                own_scale=float(state.own_scale.numpy()),
                lr_on=state.lr_on,
                momentum_on=state.momentum_on,
                lease=state.lease,
            )
        saved.append(entry)
    return saved


def restore(saved):
    """Put back what :func:`snapshot` recorded (the program stays installed,
    switched as it was: nothing retraces)."""
    for entry in saved:
        opt = entry["opt"]
        state = _state(opt)
        if "lr" in entry:
            opt._learning_rate.assign(entry["lr"])
        if state is None or "origin" not in entry:
            continue
        state.origin.assign(entry["origin"])
        state.scale.assign(entry["scale"])
        state.own_scale.assign(entry["own_scale"])
        state.flags.assign(
            np.asarray([float(entry["lr_on"]), float(entry["momentum_on"])], "float32")
        )
        state.lr_on, state.momentum_on = entry["lr_on"], entry["momentum_on"]
        state.lease = entry["lease"]


def pending_scale(optimizer):
    """A scale restored by `BackupAndRestore` for the next schedule, or None."""
    bases = base_optimizers(optimizer)
    state = _state(bases[0]) if bases else None
    if state is None:
        return None
    value, state.pending_scale = state.pending_scale, None
    return value


def set_pending_scale(optimizer, scale):
    for opt in take_control(optimizer):
        _state(opt).pending_scale = float(scale)


def released_scale(optimizer, key):
    """The scale a schedule with program ``key`` had when it was released in
    this process (an interrupted run resumed with `initial_epoch`), or None."""
    bases = base_optimizers(optimizer)
    state = _state(bases[0]) if bases else None
    if state is None or state.released is None or key is None:
        return None
    released = state.released
    user_lr = released.get("user_lr")
    opt = bases[0]
    if user_lr is not None and has_lr_variable(opt):
        # A checkpoint restored since the release (Keras's BackupAndRestore)
        # changed the LR variable: it holds the scale, not the release.
        if float(opt._learning_rate.numpy()) != float(np.float32(user_lr)):
            return None
    if released.get("key") != key or released.get("ratio") is None:
        # Another schedule ran before: this one starts unreduced.
        return 1.0
    return released.get("ratio")


def user_momentum(opt):
    """The user's momentum (`beta_1` or SGD's `momentum`) of ``opt``, or None."""
    name = momentum_attribute(opt)
    if name is None:
        return None
    value = vars(opt).get(name, None)
    if value is None:
        value = getattr(opt, name)
    if callable(value):
        value = value()
    return float(ops.convert_to_numpy(value))


def schedule_step(optimizer):
    """``iterations`` of the first base optimizer divided by the installed
    program's step divisor (micro-batches to updates under Keras's
    ``gradient_accumulation_steps``), as a Python int."""
    opt = base_optimizers(optimizer)[0]
    state = _state(opt)
    step = int(ops.convert_to_numpy(opt._iterations))
    if state is not None and state.program is not None and state.program.divisor > 1:
        step //= state.program.divisor
    return step
