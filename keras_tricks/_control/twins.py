"""The controlled classes: each optimizer's twin, which serializes as the original.

`take_control` swaps an optimizer's class for its twin: for a base optimizer
the twin computes the step's LR and momentum from the program and the control
state (once per `apply`) and turns writes of `learning_rate` into rescales;
for every optimizer on the path it leaves the control variables out of the
saved variables, under the original class name and config.
"""

import inspect
import math
import threading
import warnings

import keras
import numpy as np
from keras import ops

from keras_tricks._control.reach import _is_control, has_lr_variable
from keras_tricks._control.state import (
    _HYPER_NAMES,
    _STATE,
    _host_array,
    _rescale,
    _state,
    current_lr,
    host_assign_many,
    host_scalar,
    scheduled_lr,
)

_BACKEND = keras.backend.backend()
_controlled_classes = {}
# The LR and momentum of the update being applied, per thread and optimizer:
# see `_apply`. Thread-local because tf.distribute runs one replica per thread.
_applying = threading.local()


def _values_in_apply(self):
    return getattr(_applying, "values", {}).get(id(self))


def _shifted(self, state):
    iterations = self._iterations
    # `state.origin` is a variable, or on JAX the part of `kt_control` that
    # holds it: its value is the origin as an integer tensor.
    origin = state.origin.value
    if state.eager:
        return iterations.value - origin
    return ops.subtract(iterations, origin)


def _lr_and_momentum(self, in_apply=False):
    """The LR (and the momentum, or None) this update uses.

    ``in_apply``: for `_apply`, which may take Python floats (see
    `_host_values`).
    """
    parent = type(self).__mro__[1]
    state = _state(self)
    if state is not None and state.eager and state.program is not None and state.lr_on:
        if in_apply and _host_step(self, state):
            return _host_values(self, state)
        return _eager_values(self, state)
    own = parent._get_current_learning_rate(self)
    if state is None:
        return own, None
    has_var = has_lr_variable(self)
    if not has_var:
        own = ops.multiply(own, state.own_scale.value)
    program = state.program
    if program is None:
        return own, None
    if state.eager and not state.lr_on and not state.momentum_on:
        return own, None
    lr, momentum = program.values(_shifted(self, state))
    if state.eager:
        # Only the momentum function is on (`_eager_values` serves an eager
        # step whose LR is on): the user's LR, the function's momentum.
        return own, momentum
    if has_var:
        ratio = ops.divide(self._learning_rate, program.peak)
    else:
        ratio = state.scale.value
    scheduled = ops.multiply(lr, ratio)
    lr = ops.where(ops.greater(state.flags.value[0], 0.0), scheduled, ops.cast(own, "float32"))
    if momentum is not None:
        # The user's value where the momentum function is off.
        name = vars(self).get("_kt_momentum_attr")
        raw = vars(self).get(name, 0.0) if name else 0.0
        momentum = ops.where(ops.greater(state.flags.value[1], 0.0), momentum, raw)
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


def _host_step(self, state):
    """True when this eager step may compute its LR on the host: the
    program has host tables and the optimizer's step counter is in host
    memory (reading it costs ~1 us; on a GPU it would wait for the device)."""
    if state.program._host_lr is None:
        return False
    on_host = state.host_step
    if on_host is None:
        # PyTorch only (an eager TensorFlow or JAX step, `run_eagerly=True`,
        # keeps the tensor path).
        device = getattr(self._iterations.value, "device", None)
        on_host = _BACKEND == "torch" and getattr(device, "type", None) == "cpu"
        state.host_step = on_host
    return on_host


def _host_values(self, state):
    """`_eager_values` as Python floats, from the program's host tables (the
    numbers the device tables hold): PyTorch's eager update then passes them
    on as numbers (`alpha=-lr`, `momentum != 0`), where the tensor path costs
    ~30 us more an update on a CPU (a few tensor ops, each ~3 us, and the
    conversions Keras's update makes of a tensor LR and momentum)."""
    lr, local = scheduled_lr(self, state)
    momentum = state.program.host_momentum(local) if state.momentum_on else None
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
    table[id(self)] = _lr_and_momentum(self, in_apply=True)
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


def _variables_property(base):
    def getter(self):
        listed = base.fget(self)
        # The order, cached (Keras's JAX trainer asks 3 times an epoch) for
        # as many variables with the control variables where they were:
        # control variables are never removed, but Keras's LR setter removes
        # the LR variable (a schedule replacing a float LR), and a build may
        # then add as many as it removed.
        count = len(listed)
        cached = vars(self).get("_kt_order")
        if (
            cached is None
            or cached[0] != count
            or not all(_is_control(listed[i]) for i in cached[1])
        ):
            control = [i for i, v in enumerate(listed) if _is_control(v)]
            order = None
            if control != list(range(count - len(control), count)):
                taken = set(control)
                order = [i for i in range(count) if i not in taken] + control
            cached = vars(self)["_kt_order"] = (count, tuple(control), order)
        order = cached[2]
        return listed if order is None else [listed[i] for i in order]

    doc = (
        "The optimizer's variables: Keras's in Keras's order, then the "
        "control variables (`keras_tricks._control`), whether control was "
        "taken before the optimizer was built or after."
    )
    return property(getter, doc=doc)


def _set_weights(self, weights):
    """Keras's `set_weights`; the control variables keep control's values.

    ``weights``: one array for each of `variables` (as another controlled
    optimizer lists them: its control values, meaningless here, are
    skipped), or one for each of Keras's own variables (as a plain Keras
    optimizer lists them). Only control writes its variables (see the
    package docstring, **Host reads and writes**).
    """
    parent = type(self).__mro__[1]
    if not self.built:
        # Keras's own error.
        return parent.set_weights(self, weights)
    listed = self.variables
    own = [v for v in listed if not _is_control(v)]
    weights = list(weights)
    if len(weights) == len(listed):
        weights = [w for v, w in zip(listed, weights) if not _is_control(v)]
    elif len(weights) != len(own):
        raise ValueError(
            f"`set_weights` of optimizer {self.name!r} expects {len(listed)} "
            f"arrays (one for each of `optimizer.variables`) or {len(own)} "
            "(one for each of Keras's own variables, as a plain Keras "
            f"optimizer lists them). Received: {len(weights)} arrays."
        )
    # Copies: on PyTorch a read may share the tensor's memory.
    kept = [(v, np.array(_host_array(v))) for v in listed if _is_control(v)]
    given = dict(zip(map(id, own), weights))
    given.update((id(v), value) for v, value in kept)
    parent.set_weights(self, [given[id(v)] for v in self._variables])
    host_assign_many(kept)


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
        own_scale = float(host_scalar(state.own_scale))
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
                set_weights=_set_weights,
                _get_current_learning_rate=_current_learning_rate,
                learning_rate=_lr_property(),
                get_config=_get_config,
                build=_build,
                apply=_apply,
            )
            listed = inspect.getattr_static(cls, "variables", None)
            if isinstance(listed, property):
                attrs["variables"] = _variables_property(listed)
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
