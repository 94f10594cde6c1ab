"""The control state of a base optimizer, and what reads and scales it.

The control variables (`kt_control` = the two flags, the scale and the own
scale in one float32 vector, and the origin: its own integer variable
`kt_origin` on TensorFlow and PyTorch, two more entries of `kt_control` on
JAX, where every optimizer variable costs 1-8 us a step because Keras's JAX
trainer passes each in and out of the jitted step) and the Python side
(`_State`: the program, the lease, host mirrors of the flags); the host
reads and writes of these variables; the scale of the LR in control,
wherever it lives, and the values the next update will use.
"""

import weakref

import keras
import numpy as np
from keras import ops
from keras.src.backend import config
from keras.src.backend.common import global_state
from keras.src.backend.common.stateless_scope import in_stateless_scope

from keras_tricks._control.reach import (
    base_optimizers,
    has_lr_variable,
    momentum_attribute,
)

_HYPER_NAMES = ("momentum", "beta_1")
_STATE = "_kt_state"


class _State:
    """The Python side of a controlled base optimizer (see the docstring)."""

    def __init__(self, opt):
        dtype = opt._iterations.dtype
        if keras.backend.backend() == "jax":
            # The origin in `kt_control` too, as two exact float32 halves:
            # one optimizer variable fewer to pass through every step.
            self.control = _control_variable(
                opt,
                "kt_control",
                (6,),
                "float32",
                np.asarray([0.0, 0.0, 1.0, 1.0, 0.0, 0.0]),
            )
            self.origin = _Origin(self.control, dtype)
        else:
            self.origin = _control_variable(opt, "kt_origin", (), dtype)
            self.control = _control_variable(
                opt, "kt_control", (4,), "float32", np.asarray([0.0, 0.0, 1.0, 1.0])
            )
        # Views of `kt_control`: the LR and momentum flags, the installed
        # schedule's scale (without an LR variable), the scale of the
        # optimizer's own schedule.
        self.flags = _Part(self.control, slice(0, 2))
        self.scale = _Part(self.control, 2)
        self.own_scale = _Part(self.control, 3)
        self.program = None
        self.lease = None
        # Host mirrors of the flags (the host sets them): an eager step
        # (PyTorch without `jit_compile`) branches on them in Python.
        self.lr_on = False
        self.momentum_on = False
        self.eager = False
        # Whether the step counter is in host memory (PyTorch's eager step
        # then computes the LR on the host, `twins._host_values`); None
        # until asked.
        self.host_step = None
        self.pending_scale = None
        self.released = None


class _Part:
    """A part of a control variable, read and assigned like a variable.

    ``value`` (in the step or on the host) is the part of the variable's
    value; ``assign`` (host only) writes the whole variable with this part
    replaced.
    """

    def __init__(self, variable, index):
        self.variable = variable
        self.index = index
        self.dtype = variable.dtype

    @property
    def value(self):
        return self.variable.value[self.index]

    def __getitem__(self, i):
        return self.value[i]

    def encode(self, value):
        """``value`` as the entries of the whole variable at ``index``:
        float32 values as Python floats (a float, or a list for a slice,
        broadcast to its length as NumPy's assignment does)."""
        array = np.asarray(value, dtype=np.float32)
        if isinstance(self.index, slice):
            length = len(range(*self.index.indices(self.variable.shape[0])))
            if array.shape != (length,):
                array = np.broadcast_to(array, (length,))
        return array.tolist()

    def decode(self, entries):
        return entries

    def numpy(self):
        return self.decode(_host_array(self.variable)[self.index])

    def assign(self, value):
        """Write ``value`` into this part (one transfer)."""
        host_assign_many([(self, value)])


_HALF = 2**24


class _Origin(_Part):
    """The origin (an integer step, negative on a resumed run's fresh
    optimizer) as ``kt_control[4:6]`` = ``[hi, lo]``, ``origin = hi * 2**24 +
    lo`` with ``0 <= lo < 2**24``: both halves are exact in float32 for any
    origin of magnitude below 2**48. On JAX only (see `_State`)."""

    def __init__(self, variable, dtype):
        super().__init__(variable, slice(4, 6))
        self.dtype = dtype

    @property
    def value(self):
        entries = self.variable.value
        hi = ops.cast(entries[4], self.dtype)
        lo = ops.cast(entries[5], self.dtype)
        return ops.add(ops.multiply(hi, _HALF), lo)

    def encode(self, value):
        value = int(value)
        hi = value // _HALF
        # Both exact in float32 (see the class docstring).
        return [float(hi), float(value - hi * _HALF)]

    def decode(self, entries):
        hi, lo = entries.tolist()
        return int(hi) * _HALF + int(lo)


class _ControlVariable(keras.Variable):
    """A control variable: a Keras variable whose `assign` (any writer but
    control's own, e.g. `Model.set_state_tree`, `load_weights`) drops the
    host's copy (`_mirror`): the next host read goes to the device and
    copies it again.

    Except on JAX when the variable holds no value: Keras's JAX trainer
    removes every optimizer variable's value while an epoch runs (its state
    lives in the jitted step's inputs and outputs) and assigns them back at
    the epoch's end, or when a callback reads the model; the step only reads
    the control variables, so the value assigned back (a new array: the
    step's output) is the one the host's copy holds (a read at each epoch
    end saved: ~10 us there).
    """

    def assign(self, value):
        # An epoch whose first step never ran (its data ran out, an error)
        # leaves the trainer's state of the epoch before, which it assigns
        # back again: the same array as the last assign, older than a
        # control write since then. It drops the copy.
        reattached = (
            _BACKEND == "jax"
            and not _NNX
            and self._value is None
            and value is not getattr(self, "_kt_assigned", None)
        )
        if not reattached:
            self._kt_host = None
        self._kt_assigned = value
        return super().assign(value)


def _control_variable(opt, name, shape, dtype, value=0):
    with keras.name_scope(opt.name, caller=opt):
        variable = _ControlVariable(
            np.broadcast_to(np.asarray(value, dtype=np.dtype(str(dtype))), shape).copy(),
            name=name,
            dtype=dtype,
            trainable=False,
            aggregation="only_first_replica",
            # Never cast in a mixed-precision layer: the origin's low half
            # reaches 2**24 - 1, beyond float16 and bfloat16.
            autocast=False,
        )
    variable._kt_control = True
    variable._kt_host = None
    opt._track_variable(variable)
    return variable


def _mirror(variable, array, owned=False):
    """Keep ``array`` (read-only) as the host's copy of control variable
    ``variable``'s value; ``owned``: nothing else holds ``array`` (no copy
    needed; a NumPy view of a JAX array is read-only already).

    The train step only reads the control variables and Keras's checkpoints
    leave them out (see the package docstring): control writes them
    (`_assign_wholes`, which keeps the copy), and any other write through
    Keras's `assign` drops the copy, except Keras's JAX trainer assigning
    back the step's outputs at an epoch's end (`_ControlVariable`). Host
    reads of the flags, scales and origin then cost no transfer from the
    device while the copy stands.
    """
    if not isinstance(array, np.ndarray) or (not owned and array.flags.writeable):
        # (TensorFlow's `numpy()` of a scalar is a NumPy scalar.)
        array = np.array(array)
    array.flags.writeable = False
    variable._kt_host = array


class _Lease:
    def __init__(self, owner, user_lr):
        self.owner = weakref.ref(owner) if owner is not None else (lambda: None)
        self.user_lr = user_lr


def _state(opt):
    return vars(opt).get(_STATE)


_BACKEND = keras.backend.backend()
_NNX = _BACKEND == "jax" and config.is_nnx_enabled()


def _host_array(variable):
    """A variable's value as a NumPy array, by the cheapest read: the host's
    copy of a control variable (`_mirror`); the tensor's own conversion
    (PyTorch, JAX: ~1 us; a JAX array keeps the NumPy copy it made, so a
    second read of the same array is free, and Keras's `convert_to_numpy`
    costs ~20 us), or one read op and the tensor's `numpy()` for a
    tf.Variable (NumPy's conversion of the variable costs twice as much).
    Callers must not modify it (it is read-only on JAX and for control
    variables; on PyTorch it may share the variable's memory).
    """
    host = getattr(variable, "_kt_host", None)
    if host is not None:
        return host
    # The stored value itself (Keras's `value` would also cast it in an
    # autocast scope: ~5 us at an epoch end); Keras's `value` inside a
    # stateless scope (the scope's value, not kept as the host's copy), for
    # NNX and for an unset value.
    stored = not _NNX and not in_stateless_scope()
    value = variable._value if stored else None
    if value is None:
        stored = False
        value = variable.value
    if _BACKEND == "torch":
        array = value.detach().cpu().numpy()
    elif _BACKEND == "tensorflow" and callable(getattr(value, "value", None)):
        array = value.value().numpy()
    else:
        array = np.asarray(value)
    if stored and isinstance(variable, _ControlVariable):
        # PyTorch's array shares the tensor's memory; TensorFlow's is a copy;
        # JAX's is a read-only view of an immutable array.
        _mirror(variable, array, owned=_BACKEND != "torch")
        return variable._kt_host
    return array


def _distribution():
    return global_state.get_global_attribute("distribution")


def _tf_direct(variable):
    """True when control may assign the tf.Variable behind a Keras variable
    itself: a plain resource variable (no `tf.distribute` value), not inside
    a stateless scope."""
    inner = getattr(variable, "_value", None)
    return type(inner).__name__ == "ResourceVariable" and not in_stateless_scope()


def host_assign(variable, value):
    """``variable.assign(value)`` of a host value (a number or a NumPy array),
    by the cheapest transfer (see `_assign_wholes`). ``variable`` may be a
    `_Part`.

    Control assigns its variables (and an LR variable) from the host at each
    `fit`'s start and end, and at each plateau reduction.
    """
    host_assign_many([(variable, value)])


def host_assign_many(pairs):
    """Assign each ``(variable, value)`` pair (a variable may be a `_Part`:
    the parts of one variable are written together; see `_assign_wholes`).
    A whole variable's value replaces what earlier pairs wrote into it."""
    _write(pairs, only_changed=False)


_NP_DTYPES = {}


def _np_dtype(variable):
    """The NumPy dtype of a variable (Keras's standardization, cached: it
    costs ~15 us a call in a `fit`)."""
    name = variable._dtype
    dtype = _NP_DTYPES.get(name)
    if dtype is None:
        dtype = _NP_DTYPES[name] = np.dtype(keras.backend.standardize_dtype(name))
    return dtype


def _assign_wholes(pairs):
    """Assign each ``(variable, NumPy array)``; the arrays are the caller's
    own copies, of the variable's dtype.

    On JAX the array itself becomes the variable's value, read-only, and the
    next jitted step takes it as an argument (~10 us more for that step; its
    output is a JAX array again), where converting it now costs 20-90 us
    (`jnp.asarray`, Keras's `assign`) and 200 us right after a `fit`; a
    `fit`, `evaluate` or `predict` under a `keras.distribution` first gives
    such values device arrays (`settle`: Keras asks each value for its
    sharding there). On TensorFlow control assigns the tf.Variable itself
    (~35 us; Keras's `assign` ~90 us). Under `keras.distribution` or
    `tf.distribute`, in a stateless scope and for NNX variables, Keras's
    `assign`.
    """
    if not pairs:
        return
    # A NumPy array may stand as a JAX variable's value: a Keras JAX
    # variable, not NNX's, with no layout, no `keras.distribution`, not
    # inside a stateless scope.
    jax_direct = (
        _BACKEND == "jax"
        and not _NNX
        and _distribution() is None
        and not in_stateless_scope()
    )
    for variable, value in pairs:
        kept = True
        if jax_direct and getattr(variable, "_layout", None) is None:
            value.flags.writeable = False
            variable._direct_assign(value)
        elif _BACKEND == "tensorflow" and _tf_direct(variable):
            variable._value.assign(value, read_value=False)
        else:
            variable.assign(value)
            # In a stateless scope the variable itself keeps its value.
            kept = not in_stateless_scope()
        if kept and isinstance(variable, _ControlVariable):
            _mirror(variable, value, owned=True)


def settle(variables):
    """Give each JAX variable that holds a NumPy array (a direct write: see
    `_assign_wholes`) a device array, when a `keras.distribution` is set:
    Keras then asks every value for its sharding when it builds a train,
    test or predict function. Called by the model's guarded methods."""
    if _BACKEND != "jax" or _distribution() is None:
        return
    for variable in variables:
        value = getattr(variable, "_value", None)
        if isinstance(value, np.ndarray):
            variable._direct_assign(ops.convert_to_tensor(value, dtype=variable.dtype))


def host_scalar(variable):
    """A scalar variable's (or `_Part`'s) value as a Python number.

    Control reads a few of these at every epoch end.
    """
    if isinstance(variable, _Part):
        value = variable.numpy()
        return value.item() if isinstance(value, np.generic) else value
    if _BACKEND == "torch" and not isinstance(variable, _ControlVariable):
        # The tensor's `item()`: ~0.2 us, against ~1.4 us through NumPy
        # (PyTorch's eager step reads two of these an update on a CPU).
        return variable.value.item()
    return _host_array(variable).item()


def set_values(pairs):
    """`host_assign_many`, skipping the variables that hold their values
    already.

    A read costs a few us (none for a control variable: the host's copy);
    an assign 35-90 us. Control sets its variables at each `fit`'s start
    and end, most often to the value they hold.
    """
    _write(pairs, only_changed=True)


def _write(pairs, only_changed):
    """`host_assign_many` (``only_changed=False``) and `set_values`.

    The parts of a variable are written into a Python list of its entries
    (cheaper than NumPy for a few scalars), which becomes one array."""
    wholes = {}
    for target, value in pairs:
        if isinstance(target, _Part):
            variable = target.variable
            entry = wholes.get(id(variable))
            if entry is None:
                entry = wholes[id(variable)] = [variable, _host_array(variable), False]
            entries = entry[1]
            if not isinstance(entries, list):
                entries = entry[1] = entries.tolist()
            wanted = target.encode(value)
            index = target.index
            if not only_changed or entries[index] != wanted:
                entries[index] = wanted
                entry[2] = True
            continue
        variable = target
        entry = wholes.get(id(variable))
        # A copy: a later part of this call writes into it.
        wanted = np.array(value, dtype=_np_dtype(variable))
        if only_changed and entry is None:
            current = _host_array(variable)
            if current.shape == wanted.shape and current.tolist() == wanted.tolist():
                wholes[id(variable)] = [variable, current, False]
                continue
        wholes[id(variable)] = [variable, wanted, True]
    changed = []
    for variable, whole, was_changed in wholes.values():
        if was_changed:
            if isinstance(whole, list):
                whole = np.array(whole, dtype=_np_dtype(variable))
            changed.append((variable, whole))
    _assign_wholes(changed)


def schedule_scale(opt):
    """The scale of the installed schedule on base optimizer ``opt``."""
    state = _state(opt)
    if state is None or state.program is None:
        return 1.0
    if has_lr_variable(opt):
        return float(host_scalar(opt._learning_rate)) / state.program.peak
    return float(host_scalar(state.scale))


def scheduled_lr(opt, state):
    """``(lr, local step)`` of the schedule installed on base optimizer
    ``opt`` (whose `_State` is ``state``), from the host: the program's host
    table at ``(iterations - origin) // divisor`` times the scale. One read
    of ``iterations`` and, with an LR variable, of that variable."""
    program = state.program
    shifted = int(host_scalar(opt._iterations)) - int(host_scalar(state.origin))
    if has_lr_variable(opt):
        scale = float(host_scalar(opt._learning_rate)) / program.peak
    else:
        scale = float(host_scalar(state.scale))
    local = max(shifted, 0) // program.divisor
    return program.host_lr(local) * scale, local


def set_schedule_scale(opt, scale):
    set_values([schedule_scale_target(opt, scale)])


def schedule_scale_target(opt, scale):
    """The ``(variable or part, value)`` that gives the installed schedule of
    ``opt`` the scale ``scale`` (for `set_values`)."""
    state = _state(opt)
    if has_lr_variable(opt):
        return opt._learning_rate, float(np.float32(state.program.peak)) * float(scale)
    return state.scale, float(scale)


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
    return float(host_scalar(state.own_scale))


def _rescale(opt, state, ratio):
    """Multiply the LR in control by ``ratio`` where it lives: the LR
    variable (a plain LR, or an installed schedule's scale), `kt_scale`, or
    `kt_own_scale` (the optimizer's own Keras schedule)."""
    if has_lr_variable(opt):
        host_assign(opt._learning_rate, float(host_scalar(opt._learning_rate)) * ratio)
    elif state.lr_on:
        state.scale.assign(float(host_scalar(state.scale)) * ratio)
    else:
        state.own_scale.assign(float(host_scalar(state.own_scale)) * ratio)


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
    opt = base_optimizers(optimizer)[0]
    state = _state(opt)
    on = state is not None and state.lr_on
    if host and on and state.program is not None:
        return scheduled_lr(opt, state)[0]
    if not on and has_lr_variable(opt):
        # The LR variable is the LR (Keras's `learning_rate` returns it).
        return float(_host_array(opt._learning_rate))
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
    return _as_float(value)


_ASK = object()


def user_momentum(opt, name=_ASK):
    """The user's momentum (`beta_1` or SGD's `momentum`) of ``opt``, or None.

    ``name``: ``momentum_attribute(opt)``, when the caller knows it."""
    if name is _ASK:
        name = momentum_attribute(opt)
    if name is None:
        return None
    value = vars(opt).get(name, None)
    if value is None:
        value = getattr(opt, name)
    if callable(value):
        value = value()
    return _as_float(value)


def _as_float(value):
    if isinstance(value, (int, float, np.number)):
        return float(value)
    return float(ops.convert_to_numpy(value))


def iterations(optimizer):
    """``iterations`` of the first base optimizer, as a Python int."""
    opt = base_optimizers(optimizer)[0]
    return int(host_scalar(opt._iterations))


def origin(optimizer):
    opt = base_optimizers(optimizer)[0]
    state = _state(opt)
    return int(host_scalar(state.origin)) if state is not None else 0


def schedule_step(optimizer):
    """``iterations`` of the first base optimizer divided by the installed
    program's step divisor (micro-batches to updates under Keras's
    ``gradient_accumulation_steps``), as a Python int."""
    opt = base_optimizers(optimizer)[0]
    state = _state(opt)
    step = int(host_scalar(opt._iterations))
    if state is not None and state.program is not None and state.program.divisor > 1:
        step //= state.program.divisor
    return step


def pending_scale(optimizer):
    """A scale restored by `BackupAndRestore` for the next schedule, or None."""
    bases = base_optimizers(optimizer)
    state = _state(bases[0]) if bases else None
    if state is None:
        return None
    value, state.pending_scale = state.pending_scale, None
    return value


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
        if float(host_scalar(opt._learning_rate)) != float(np.float32(user_lr)):
            return None
    if released.get("key") != key or released.get("ratio") is None:
        # Another schedule ran before: this one starts unreduced.
        return 1.0
    return released.get("ratio")
