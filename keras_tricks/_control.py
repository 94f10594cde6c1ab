"""Reach the real optimizer behind a compiled model and steer its LR and momentum.

Every callback of this package that changes the learning rate or the momentum
goes through this module, so that they compose (a plateau reduction scales
whatever schedule is running) and so that each of them gets the hard parts
right once:

* **Wrappers.** ``model.optimizer`` may be the ``LossScaleOptimizer`` that
  ``compile`` adds under ``mixed_float16``, one of this package's wrappers
  (``GradientAccumulation``, ``GradientCentralization``) or anything that holds
  an ``inner_optimizer`` or a list of ``optimizers``. :func:`base_optimizers`
  walks down to the optimizers that really apply updates.
* **Inside the compiled step.** The learning rate and the momentum (SGD's
  ``momentum``, ``beta_1`` of the Adam family) are computed from the
  optimizer's own ``iterations`` inside the train step. A Python float set from
  a callback would be baked into the traced function on TensorFlow and JAX.
* **No new optimizer variables.** A ``.keras`` file or a ``BackupAndRestore``
  checkpoint must load into a freshly built copy of the user's optimizer, and
  Keras skips *all* optimizer variables when their number differs. So the
  controlled optimizer keeps exactly its own variables and its own config.

The mechanism: the optimizer instance's class is swapped for a thin subclass
that computes ``lr = base(step) * scale`` (``base`` is the installed schedule,
or the optimizer's own learning rate) and, when a momentum function is
installed, returns ``momentum(step)`` for the momentum attribute. The subclass
serializes under the original class name and with the original config. The
Python-side settings (the schedule object, the scale) are constants in the
traced train function, so whoever changes them calls :func:`refresh`, which
rebuilds the model's train function (one retrace per change, never per step).
"""

import math
import threading

import keras
from keras import ops

_SCHEDULE = "_kt_schedule"
_SCALE = "_kt_lr_scale"
_DIVISOR = "_kt_step_divisor"
_MOMENTUM_FN = "_kt_momentum_fn"
_MOMENTUM_ATTR = "_kt_momentum_attr"
_HYPER_NAMES = ("momentum", "beta_1")

_controlled_classes = {}
# The LR and momentum of the update being applied, per thread and optimizer:
# see `_apply`. Thread-local because tf.distribute runs one replica per thread.
# (MirroredStrategy's cross-replica update runs on yet another thread, which
# finds no values here and computes its own: correct, only not cached.)
_applying = threading.local()


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


def accumulation_steps(optimizer):
    """How many batches make one real update, and who accumulates.

    Returns ``(k, "wrapper")`` when a ``GradientAccumulation`` wrapper sits
    above the base optimizer (its inner ``iterations`` already count updates),
    ``(k, "builtin")`` for Keras's ``gradient_accumulation_steps`` (its
    ``iterations`` count batches), and ``(1, None)`` otherwise.
    """
    opt = optimizer
    while opt is not None:
        k = getattr(opt, "accumulation_steps", None)
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
        if _has_plain_attr(optimizer, name):
            return name
    return None


def _has_plain_attr(optimizer, name):
    if name in vars(optimizer):
        return True
    try:
        getattr(optimizer, name)
    except AttributeError:
        return False
    return True


def _raw(optimizer, name):
    """The user's value of a hyperparameter, bypassing any installed function."""
    return vars(optimizer)[name]


# --- the controlled subclass ----------------------------------------------


def _step(self):
    step = self._iterations
    divisor = vars(self).get(_DIVISOR, 1)
    if divisor > 1:
        step = ops.floor_divide(step, divisor)
    return step


def _values_in_apply(self):
    return getattr(_applying, "values", {}).get(id(self))


def _current_learning_rate(self):
    values = _values_in_apply(self)
    if values is not None and "lr" in values:
        return values["lr"]
    return _compute_learning_rate(self)


def _compute_learning_rate(self):
    parent = type(self).__mro__[1]
    schedule = vars(self).get(_SCHEDULE)
    if schedule is None:
        lr = parent._get_current_learning_rate(self)
    else:
        lr = schedule(_step(self))
    return _scaled(self, lr)


def _scaled(self, lr):
    scale = vars(self).get(_SCALE, 1.0)
    if scale != 1.0:
        lr = ops.multiply(lr, scale)
    return lr


def _hyper_property(name):
    def getter(self):
        state = vars(self)
        fn = state.get(_MOMENTUM_FN)
        if (
            fn is not None
            and state.get(_MOMENTUM_ATTR) == name
            and not state.get("_kt_building", False)
        ):
            values = _values_in_apply(self)
            if values is not None:
                return values["momentum"]
            return fn(_step(self))
        try:
            return state[name]
        except KeyError:
            raise AttributeError(name) from None

    def setter(self, value):
        vars(self)[name] = value

    return property(getter, setter)


def _apply(self, grads, trainable_variables=None):
    """`apply`, with the step's LR and momentum computed once, up front.

    Keras reads `learning_rate` once or twice per update and the momentum
    (`beta_1`, SGD's `momentum`) once or more per variable. With a schedule
    installed each read would evaluate it again: free after XLA's common
    subexpression elimination, but on PyTorch (eager) and TensorFlow graphs
    every evaluation costs its ops. The values are computed at the top of
    `apply`, before anything in it can open a conditional branch, so every
    read inside (branches included) may use them, and forgotten on the way
    out. The step is the same for all of them: `iterations` only advances at
    the end of `apply`.
    """
    parent = type(self).__mro__[1]
    state = vars(self)
    fn = state.get(_MOMENTUM_FN)
    if state.get(_SCHEDULE) is None and fn is None:
        return parent.apply(self, grads, trainable_variables)
    # A schedule that owns the momentum function too may give both values
    # at once (`lr_and_momentum`, one lookup for the two on PyTorch).
    schedule = state.get(_SCHEDULE)
    joint = getattr(schedule, "lr_and_momentum", None)
    both = None
    if joint is not None and getattr(fn, "__self__", None) is schedule:
        both = joint(_step(self))
    if both is not None:
        values = {"lr": _scaled(self, both[0]), "momentum": both[1]}
    else:
        values = {"lr": _compute_learning_rate(self)}
        if fn is not None:
            values["momentum"] = fn(_step(self))
    table = getattr(_applying, "values", None)
    if table is None:
        table = _applying.values = {}
    outer = table.get(id(self))
    table[id(self)] = values
    try:
        return parent.apply(self, grads, trainable_variables)
    finally:
        if outer is None:
            table.pop(id(self), None)
        else:
            table[id(self)] = outer


def _get_config(self):
    parent = type(self).__mro__[1]
    config = parent.get_config(self)
    for name in _HYPER_NAMES:
        if name in config and name in vars(self):
            config[name] = vars(self)[name]
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
    if vars(self).get(_MOMENTUM_FN) is None:
        return keras.optimizers.SGD.update_step(
            self, gradient, variable, learning_rate
        )
    learning_rate = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    m = self.momentums[self._get_variable_index(variable)]
    momentum = ops.cast(self.momentum, variable.dtype)
    step = ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate))
    self.assign(m, step)
    if self.nesterov:
        self.assign_add(
            variable,
            ops.subtract(
                ops.multiply(m, momentum), ops.multiply(gradient, learning_rate)
            ),
        )
    else:
        self.assign_add(variable, m)


def _controlled_class(cls):
    if getattr(cls, "_kt_controlled", False):
        return cls
    if cls not in _controlled_classes:
        attrs = {
            "_kt_controlled": True,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "_get_current_learning_rate": _current_learning_rate,
            "get_config": _get_config,
            "build": _build,
            "apply": _apply,
        }
        for name in _HYPER_NAMES:
            attrs[name] = _hyper_property(name)
        if issubclass(cls, keras.optimizers.SGD):
            attrs["update_step"] = _sgd_update_step
        _controlled_classes[cls] = type(cls.__name__, (cls,), attrs)
    return _controlled_classes[cls]


def take_control(optimizer):
    """Swap each base optimizer's class for its controlled twin; idempotent.

    Returns the list of base optimizers.
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
        opt.__class__ = _controlled_class(type(opt))
    return bases


def set_schedule(optimizer, schedule, step_divisor=1):
    """Make ``schedule(step)`` the base LR of every base optimizer.

    ``schedule=None`` hands the LR back to the optimizer's own value.
    ``step_divisor=k`` feeds the schedule ``iterations // k`` (real updates
    under Keras's ``gradient_accumulation_steps=k``).
    """
    for opt in take_control(optimizer):
        vars(opt)[_SCHEDULE] = schedule
        vars(opt)[_DIVISOR] = int(step_divisor)


def set_momentum_fn(optimizer, fn, step_divisor=None):
    """Make ``fn(step)`` the momentum (``beta_1`` or SGD ``momentum``).

    Raises a clear error when an optimizer has no momentum to cycle.
    ``fn=None`` restores the user's value.
    """
    bases = take_control(optimizer)
    for opt in bases:
        if fn is None:
            vars(opt)[_MOMENTUM_FN] = None
            continue
        name = momentum_attribute(opt)
        if name is None:
            raise ValueError(
                "Momentum cycling needs an optimizer with `momentum` (SGD, "
                "RMSprop) or `beta_1` (Adam, AdamW, Nadam, Adamax, Lamb, Lion). "
                f"Received: {type(opt).__name__}. Pass `cycle_momentum=False`."
            )
        if isinstance(opt, keras.optimizers.SGD) and _raw(opt, "momentum") == 0:
            raise ValueError(
                "Momentum cycling needs `SGD(momentum>0)`: with momentum=0 "
                "Keras's SGD keeps no momentum buffers. Received: "
                "SGD(momentum=0). Create it with e.g. `momentum=0.9`, or pass "
                "`cycle_momentum=False`."
            )
        if not isinstance(opt, keras.optimizers.SGD) and name == "momentum":
            # RMSprop branches on `momentum > 0` in Python, like SGD.
            raise ValueError(
                "Momentum cycling is supported for SGD and the Adam family "
                f"(`beta_1`). Received: {type(opt).__name__}. Pass "
                "`cycle_momentum=False`."
            )
        vars(opt)[_MOMENTUM_FN] = fn
        vars(opt)[_MOMENTUM_ATTR] = name
        if step_divisor is not None:
            vars(opt)[_DIVISOR] = int(step_divisor)


def get_lr_scale(optimizer):
    bases = base_optimizers(optimizer)
    if not bases:
        return 1.0
    return float(vars(bases[0]).get(_SCALE, 1.0))


def set_lr_scale(optimizer, scale):
    """Multiply the running LR (schedule or constant) by ``scale``."""
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"The LR scale must be a positive number. Received: {scale}")
    for opt in take_control(optimizer):
        vars(opt)[_SCALE] = scale


def has_schedule(optimizer):
    """True when the LR of the first base optimizer depends on the step."""
    bases = base_optimizers(optimizer)
    if not bases:
        return False
    opt = bases[0]
    if vars(opt).get(_SCHEDULE) is not None:
        return True
    return not isinstance(opt._learning_rate, keras.Variable)


def current_lr(optimizer):
    """The LR the next update will use, as a Python float."""
    bases = base_optimizers(optimizer)
    return float(ops.convert_to_numpy(bases[0].learning_rate))


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


def refresh(model):
    """Rebuild the model's train function so it sees the new settings.

    The schedule object and the scale are Python constants inside the traced
    step; a new train function traces them again. Cheap before the first
    trace, one retrace afterwards.
    """
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)


def save_state(optimizer):
    """Everything this module set on the base optimizers, to put back later.

    Returns an opaque value for :func:`restore_state`: each base optimizer's
    class (controlled or not) and its installed schedule, scale, step divisor
    and momentum function. Variables are not included: save those yourself.
    """
    return [
        (
            opt,
            type(opt),
            {k: v for k, v in vars(opt).items() if k.startswith("_kt_")},
        )
        for opt in base_optimizers(optimizer)
    ]


def restore_state(saved):
    """Undo every change made through this module since :func:`save_state`."""
    for opt, cls, settings in saved:
        for key in [k for k in vars(opt) if k.startswith("_kt_")]:
            if key not in settings:
                del vars(opt)[key]
        vars(opt).update(settings)
        opt.__class__ = cls


def schedule_step(optimizer):
    """The step an installed schedule is fed next, as a Python int.

    ``iterations`` of the first base optimizer (micro-batches under Keras's
    ``gradient_accumulation_steps``), divided by the installed step divisor.
    """
    bases = base_optimizers(optimizer)
    opt = bases[0]
    step = int(ops.convert_to_numpy(opt._iterations))
    divisor = vars(opt).get(_DIVISOR, 1)
    return step // divisor if divisor > 1 else step
