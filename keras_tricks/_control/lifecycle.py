"""The lifecycle of control: take, lease, install, start, release, and the guards.

See the package docstring (**Lifecycle**): `take_control` at a callback's
`on_train_begin`, `lease` and `install`, `start` at the first
`on_epoch_begin`, `release` at `on_train_end`, and the guard on the model's
`fit` and `train_on_batch` that releases what a `fit` that raised left in
control. Also the verbs that take control to change the LR's scale.
"""

import contextlib
import math
import weakref

import keras
import numpy as np

from keras_tricks._control.reach import (
    _TAKEN,
    _all_optimizers,
    _Taken,
    base_optimizers,
    has_lr_variable,
    momentum_attribute,
)
from keras_tricks._control.state import (
    _STATE,
    _Lease,
    _rescale,
    _State,
    _state,
    current_lr,
    host_assign,
    host_assign_many,
    host_scalar,
    schedule_scale,
    schedule_scale_target,
    set_schedule_scale,
    set_values,
    settle,
)
from keras_tricks._control.twins import _controlled_class

_GUARD = "_kt_guarded"


def take_control(optimizer, model=None):
    """Bring every optimizer on the path under control; idempotent.

    Swaps each class for its controlled twin, creates the control variables
    of each base optimizer (once), guards ``model``'s `fit` and
    `train_on_batch` (see the module docstring) and releases a schedule that
    an earlier `fit` left installed. Returns the base optimizers.
    """
    taken = getattr(optimizer, "__dict__", {}).get(_TAKEN)
    if taken is not None:
        # Under control already (the optimizers behind a wrapper do not
        # change): only the model may be new.
        if model is not None:
            _guard(model)
        return list(taken.bases)
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
    vars(optimizer)[_TAKEN] = _Taken(bases)
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
    """Wrap the model's `fit` and `train_on_batch` to release stale control,
    and these and `evaluate`, `predict`, `test_on_batch` and
    `predict_on_batch` to `settle` the optimizer's values under a
    `keras.distribution` (JAX)."""
    if vars(model).get(_GUARD):
        return
    try:
        model_ref = weakref.ref(model)
    except TypeError:
        return

    def wrap(name, begin):
        original = getattr(model, name)

        def guarded(*args, **kwargs):
            target = model_ref()
            if target is not None:
                optimizer = getattr(target, "optimizer", None)
                if begin:
                    _begin_fit(optimizer)
                for opt in base_optimizers(optimizer):
                    settle(opt.variables)
            return original(*args, **kwargs)

        guarded.__wrapped__ = original
        guarded.__doc__ = original.__doc__
        guarded.__name__ = name
        return guarded

    try:
        for name in ("fit", "train_on_batch"):
            object.__setattr__(model, name, wrap(name, begin=True))
        for name in ("evaluate", "predict", "test_on_batch", "predict_on_batch"):
            object.__setattr__(model, name, wrap(name, begin=False))
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
            user_lr = float(host_scalar(opt._learning_rate))
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
        placed = state.program
        if placed is None or program.key is None or placed.key != program.key:
            state.program = program
            changed = True
        elif placed.table_size != program.table_size:
            # The same trace (equal keys) with host tables of another length
            # (JAX's: the step computes the schedule, the table length is not
            # in the key): this program's tables, nothing to retrace.
            state.program = program
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
        pairs = [(state.origin, int(origin))]
        if scale is not None:
            pairs.append(schedule_scale_target(opt, scale))
        pairs.append((state.flags, [float(lr_on), float(momentum_on)]))
        # One call for every value that changes.
        set_values(pairs)
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
        lr = float(host_scalar(opt._learning_rate)) if has_lr_variable(opt) else None
        entries.append((opt, state, lr, float(host_scalar(state.scale))))
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
                host_assign(opt._learning_rate, lr)
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
    pairs = [(state.flags, [0.0, 0.0]), (state.scale, 1.0)]
    if lease_.user_lr is not None and has_lr_variable(opt):
        pairs.append((opt._learning_rate, lease_.user_lr))
    set_values(pairs)
    state.lr_on = state.momentum_on = False
    state.lease = None


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
            entry["lr"] = float(host_scalar(opt._learning_rate))
        if state is not None:
            entry.update(
                origin=int(host_scalar(state.origin)),
                scale=float(host_scalar(state.scale)),
                own_scale=float(host_scalar(state.own_scale)),
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
        pairs = []
        if state is not None and "origin" in entry:
            pairs += [
                (state.origin, entry["origin"]),
                (state.flags, [float(entry["lr_on"]), float(entry["momentum_on"])]),
                (state.scale, entry["scale"]),
                (state.own_scale, entry["own_scale"]),
            ]
        # The control state first, as `start` and `release` send it (one
        # compiled transfer serves all three on JAX).
        if "lr" in entry:
            pairs.append((opt._learning_rate, entry["lr"]))
        host_assign_many(pairs)
        if state is None or "origin" not in entry:
            continue
        state.lr_on, state.momentum_on = entry["lr_on"], entry["momentum_on"]
        state.lease = entry["lease"]


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


def multiply_lr(optimizer, factor, min_lr=0.0, model=None, known=None):
    """Multiply the running LR by ``factor``, not below ``min_lr``.

    The LR variable (plain LR, or the scale of an installed schedule), or the
    scale of the schedule in control. Returns ``[(opt, new_lr), ...]`` for
    the base optimizers whose LR was above ``min_lr``. Nothing retraces.
    ``known``: ``{id(base optimizer): current_lr(opt, host=True)}`` read
    since the last write (the caller's log of this epoch end).
    """
    floor = np.float32(min_lr)
    changed = []
    for opt in take_control(optimizer, model):
        state = _state(opt)
        # The host table's value (no eager evaluation of the schedule: a few
        # dozen dispatches, milliseconds on JAX): the ratio is `factor`
        # whatever its last digits, except near a positive floor, where the
        # step's exact value decides. (A schedule at exactly 0, its end or a
        # warmup's start, is 0 on the host and in the step alike.)
        old = known.get(id(opt)) if known else None
        if old is None:
            old = current_lr(opt, host=True)
        if floor > 0 and old * factor <= float(floor) * (1.0 + 1e-4):
            old = current_lr(opt)
        if not old > floor:
            continue
        new = max(old * factor, float(min_lr))
        _rescale(opt, state, new / old)
        changed.append((opt, new))
    return changed


def set_pending_scale(optimizer, scale):
    for opt in take_control(optimizer):
        _state(opt).pending_scale = float(scale)
