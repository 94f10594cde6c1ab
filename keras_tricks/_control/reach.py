"""Reaching the optimizers behind any wrapper.

`base_optimizers` walks through `inner_optimizer` (Keras's `LossScaleOptimizer`
and this package's wrappers) and `optimizers` (multi-optimizers) to the
optimizers that really apply updates; the other functions read what the
control needs to know about an optimizer.
"""

import keras

# On an optimizer that `take_control` took: a `_Taken` of its base
# optimizers (the optimizers behind a wrapper do not change).
_TAKEN = "_kt_taken"


class _Taken:
    """The base optimizers of a controlled optimizer. Not a tuple: Keras's
    saving walks an object's lists and tuples, and a base optimizer would
    hold itself."""

    __slots__ = ("bases",)

    def __init__(self, bases):
        self.bases = tuple(bases)


def base_optimizers(optimizer):
    """The optimizers that really apply updates, behind any wrappers.

    Walks through ``inner_optimizer`` (Keras's ``LossScaleOptimizer`` and this
    package's wrappers) and ``optimizers`` (multi-optimizers).
    """
    if optimizer is None:
        return []
    taken = getattr(optimizer, "__dict__", {}).get(_TAKEN)
    if taken is not None:
        return list(taken.bases)
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
