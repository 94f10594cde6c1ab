"""Private helpers shared by the Adam-family optimizers of this package.

The bias corrections `1 - beta**t` are computed as `-expm1(t * log(beta))`:
in float32 the naive form loses about `eps / (1 - beta**t)` relative precision
(1e-5 at `beta=0.999, t=5`), which is more than a float32 comparison with
PyTorch's float64 host arithmetic tolerates.
"""

import math
import numbers

from keras import ops


def check_real(
    cls_name, name, value, low=None, high=None, low_open=False, high_open=False
):
    """Validate a real hyperparameter (NumPy scalars accepted, bools not)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and math.isnan(float(value)):
        ok = False
    if ok and low is not None:
        ok = float(value) > low if low_open else float(value) >= low
    if ok and high is not None:
        ok = float(value) < high if high_open else float(value) <= high
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(
            f"Argument `{name}` of {cls_name} must be a float in "
            f"{left}{lo}, {hi}{right}. Received: {name}={value!r}"
        )
    return float(value)


def check_bool(cls_name, name, value):
    if not isinstance(value, bool):
        raise ValueError(
            f"Argument `{name}` of {cls_name} must be a bool. "
            f"Received: {name}={value!r}"
        )
    return value


def log_beta(beta, dtype):
    """`log(beta)`: exact on the host for a Python float, else in `dtype`."""
    if isinstance(beta, numbers.Real):
        return ops.cast(math.log(beta) if beta > 0 else -math.inf, dtype)
    return ops.log(ops.cast(beta, dtype))


def one_minus_power(beta, step, dtype):
    """`1 - beta**step` without cancellation (`step` a float tensor >= 1)."""
    return ops.negative(ops.expm1(ops.multiply(step, log_beta(beta, dtype))))
