"""The few pieces every schedule of this package is built from.

A schedule here is a pure function of the optimizer step, computed with
`keras.ops` so that it runs inside the compiled train step on every backend.
The step is cast to float32 and clamped first; branches are `ops.where`, never
Python `if` on the step. Python `if` is used only on the configuration, which
is fixed when the schedule is made.

* `linear` and `cosine` interpolate from a start to an end value as a fraction
  `pct` in [0, 1] goes from 0 to 1;
* `join` glues such pieces together at step boundaries (a piecewise schedule);
* the `check_*` helpers validate constructor arguments with the error format
  of the package (argument name, what was expected, what was received).
"""

import math
import numbers

from keras_tricks.schedules._ops import ops

ANNEAL_KINDS = ("linear", "cos", "constant")


def as_step(step, lower=0.0, upper=None):
    """The step as a float32 tensor, clamped to `[lower, upper]`."""
    step = ops.cast(step, "float32")
    step = ops.maximum(step, lower)
    if upper is not None:
        step = ops.minimum(step, float(upper))
    return step


def linear(start, end, pct):
    """`start + (end - start) * pct`."""
    return ops.add(start, ops.multiply(ops.subtract(end, start), pct))


def cosine(start, end, pct):
    """Half a cosine from `start` (pct = 0) to `end` (pct = 1).

    `end + (start - end) / 2 * (1 + cos(pi * pct))`, the annealing function of
    SGDR and of PyTorch's `OneCycleLR(anneal_strategy="cos")`.
    """
    wave = ops.add(1.0, ops.cos(ops.multiply(math.pi, pct)))
    return ops.add(end, ops.multiply(ops.multiply(ops.subtract(start, end), 0.5), wave))


def interpolate(kind, start, end, pct):
    """Dispatch on `kind` ("linear", "cos" or "constant") to the primitive."""
    if kind == "linear":
        return linear(start, end, pct)
    if kind == "cos":
        return cosine(start, end, pct)
    if kind == "constant":
        return ops.add(ops.zeros_like(pct), start)
    raise ValueError(f"Unknown interpolation {kind!r}; expected one of {ANNEAL_KINDS}.")


def join(step, ends, pieces):
    """A piecewise schedule: `pieces[i]` runs from `ends[i - 1]` to `ends[i]`.

    The first piece starts at step 0. A step belongs to the first piece whose
    end it does not exceed (`step <= ends[i]`), the rule of PyTorch's
    `OneCycleLR`; steps past the last end belong to the last piece, whose
    fraction is clipped to 1 so that it holds its end value. A piece of zero or
    negative length can never be selected by an integer step past the previous
    end; it evaluates to its end value so no division by zero is traced.

    Args:
        step: float32 tensor (any shape) of steps.
        ends: list of Python floats, one per piece.
        pieces: list of `(kind, start_value, end_value)`; the values may be
            Python floats or tensors broadcastable with `step`.

    Returns:
        A float32 tensor shaped like `step`.
    """
    if len(ends) != len(pieces) or not pieces:
        raise ValueError("`join` needs one end per piece and at least one piece.")
    starts = [0.0] + [float(e) for e in ends[:-1]]
    values = []
    for begin, end, (kind, v0, v1) in zip(starts, ends, pieces, strict=True):
        length = float(end) - begin
        if length > 0:
            pct = ops.clip(ops.divide(ops.subtract(step, begin), length), 0.0, 1.0)
            values.append(interpolate(kind, v0, v1, pct))
        else:
            values.append(interpolate("constant", v1, v1, ops.zeros_like(step)))
    result = values[-1]
    for end, value in zip(reversed(ends[:-1]), reversed(values[:-1]), strict=True):
        result = ops.where(ops.less_equal(step, float(end)), value, result)
    return ops.cast(result, "float32")


# ---------------------------------------------------------------- validation


def _fail(message, **received):
    shown = ", ".join(f"{k}={v!r}" for k, v in received.items())
    raise ValueError(f"{message} Received: {shown}")


def check_number(name, value, *, gt=None, ge=None, lt=None, le=None):
    """Check that `value` is a real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(f"Argument `{name}` must be a number.", **{name: value})
    value = float(value)
    if not math.isfinite(value):
        _fail(f"Argument `{name}` must be finite.", **{name: value})
    if gt is not None and not value > gt:
        _fail(f"Argument `{name}` must be > {gt}.", **{name: value})
    if ge is not None and not value >= ge:
        _fail(f"Argument `{name}` must be >= {ge}.", **{name: value})
    if lt is not None and not value < lt:
        _fail(f"Argument `{name}` must be < {lt}.", **{name: value})
    if le is not None and not value <= le:
        _fail(f"Argument `{name}` must be <= {le}.", **{name: value})
    return value


def check_int(name, value, *, ge=None, gt=None):
    """Check that `value` is an integer (a float with an integer value is
    accepted) within the given bounds; returns a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(f"Argument `{name}` must be an integer.", **{name: value})
    if not float(value).is_integer():
        _fail(f"Argument `{name}` must be an integer.", **{name: value})
    value = int(value)
    if gt is not None and not value > gt:
        _fail(f"Argument `{name}` must be > {gt}.", **{name: value})
    if ge is not None and not value >= ge:
        _fail(f"Argument `{name}` must be >= {ge}.", **{name: value})
    return value


def check_choice(name, value, choices):
    """Check that `value` is one of `choices`."""
    if value not in choices:
        _fail(f"Argument `{name}` must be one of {list(choices)}.", **{name: value})
    return value


def check_order(low_name, low, high_name, high, strict=False):
    """Check `low <= high` (or `low < high` with `strict=True`)."""
    if (low > high) or (strict and low == high):
        op = "<" if strict else "<="
        _fail(
            f"Argument `{low_name}` must be {op} {high_name}.",
            **{low_name: low, high_name: high},
        )


def resolve_warmup(warmup_steps, warmup_ratio, total_steps):
    """Warmup length in steps from `warmup_steps` or `warmup_ratio`.

    `warmup_ratio` (0 <= r < 1) gives `ceil(r * total_steps)` steps, the
    rounding of Hugging Face `transformers`. Giving both is an error.
    """
    warmup_steps = check_int("warmup_steps", warmup_steps, ge=0)
    if warmup_ratio is not None:
        if warmup_steps != 0:
            _fail(
                "Give either `warmup_steps` or `warmup_ratio`, not both.",
                warmup_steps=warmup_steps,
                warmup_ratio=warmup_ratio,
            )
        ratio = check_number("warmup_ratio", warmup_ratio, ge=0.0, lt=1.0)
        warmup_steps = math.ceil(ratio * total_steps)
        if warmup_steps >= total_steps:
            _fail(
                "Argument `warmup_ratio` must leave at least one step after "
                "warmup: ceil(warmup_ratio * total_steps) < total_steps.",
                warmup_ratio=warmup_ratio,
                total_steps=total_steps,
            )
    elif warmup_steps >= total_steps:
        _fail(
            "Argument `warmup_steps` must be < total_steps.",
            warmup_steps=warmup_steps,
            total_steps=total_steps,
        )
    return warmup_steps
