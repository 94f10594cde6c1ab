"""Callback state that survives an interrupted `fit`.

Keras's `BackupAndRestore` restores the weights, the optimizer and the epoch,
but not the state of callbacks. A plateau rule that forgets its best value and
its wait counter after a restart decides differently from an uninterrupted
run. So the stateful callbacks of this package:

* register themselves on the model in `set_model` (``model._keras_tricks_stateful``,
  weak references: the model keeps no callback, nor the weights an
  `EarlyStopping` holds, alive after its `fit`);
* expose ``get_state()`` (a JSON-serializable dict) and ``set_state(dict)``;
* apply a pending state, stashed on the model by
  `keras_tricks.callbacks.BackupAndRestore` when it resumes, at their first
  ``on_epoch_begin`` (after every ``on_train_begin`` has run, so the order of
  the callback list does not matter);
* tell the backup when their state changed at the end of an epoch, so that a
  backup listed before them in the callback list saves the new state too.

A callback is identified across runs by its class name, its monitored
quantity and, for several of the same kind, its rank among them in the
callback list. The callbacks of one `fit` are told apart from those of an
earlier one on the same model by the `params` dict that Keras hands to every
callback of one callback list.
"""

import weakref

REGISTRY = "_keras_tricks_stateful"
PENDING = "_keras_tricks_pending_state"
BACKUP = "_keras_tricks_backup"


class _Box:
    """A plain holder: Keras's layer tracking wraps lists and dicts set on a
    model into tracked copies, so they are kept in a box instead."""

    def __init__(self, value):
        self.value = value


def _get(model, name):
    box = getattr(model, name, None)
    return box.value if isinstance(box, _Box) else None


def _set(model, name, value):
    try:
        setattr(model, name, _Box(value))
    except AttributeError:
        pass


def register(model, callback):
    """Record ``callback`` as a stateful callback of ``model``."""
    if model is None:
        return
    registry = _get(model, REGISTRY)
    if registry is None:
        registry = []
        _set(model, REGISTRY, registry)
    registry[:] = [ref for ref in registry if ref() is not None]
    if not any(ref() is callback for ref in registry):
        registry.append(weakref.ref(callback))


def _registered(model):
    return [cb for cb in (ref() for ref in (_get(model, REGISTRY) or [])) if cb is not None]


def _same_fit(a, b):
    pa, pb = getattr(a, "params", None), getattr(b, "params", None)
    if pa is None or pb is None:
        return True
    return pa is pb


def active_callbacks(model, anchor):
    """The stateful callbacks of ``model`` in the same callback list as ``anchor``."""
    return [cb for cb in _registered(model) if _same_fit(cb, anchor)]


def base_key(callback):
    monitor = getattr(callback, "monitor", None)
    name = type(callback).__name__
    return f"{name}:{monitor}" if monitor else name


def state_key(model, callback):
    """A name for ``callback`` that is the same in a resumed run."""
    key = base_key(callback)
    rank = 0
    for other in active_callbacks(model, callback):
        if other is callback:
            break
        if base_key(other) == key:
            rank += 1
    return key if rank == 0 else f"{key}#{rank}"


def collect(model, anchor):
    """``{key: state}`` of the stateful callbacks that run with ``anchor``."""
    return {
        state_key(model, cb): cb.get_state() for cb in active_callbacks(model, anchor)
    }


def stash(model, states):
    """Keep restored states on the model until each callback takes its own."""
    _set(model, PENDING, dict(states))


def take_pending(model, callback):
    """Pop the restored state meant for ``callback``, or None."""
    pending = _get(model, PENDING)
    if not pending:
        return None
    return pending.pop(state_key(model, callback), None)


def state_changed(model, callback, weights_changed=False):
    """Tell an active backup that ``callback`` changed its state."""
    backup = _get(model, BACKUP)
    if backup is not None and _same_fit(backup, callback):
        backup._state_changed(weights_changed)
