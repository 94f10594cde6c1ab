"""Private helpers shared by the Adam-family optimizers of this package.

The bias corrections `1 - beta**t` are computed as `-expm1(t * log(beta))`:
in float32 the naive form loses about `eps / (1 - beta**t)` relative precision
(1e-5 at `beta=0.999, t=5`), which is more than a float32 comparison with
PyTorch's float64 host arithmetic tolerates.
"""

import math
import numbers

import keras
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


class AdamFamily(keras.optimizers.Optimizer):
    """Private base of RAdam, DiffGrad and AdamW8bit: Adam's hyperparameters.

    Checks `beta_1`, `beta_2`, `epsilon` and `weight_decay` (named errors,
    NumPy scalars accepted), hands Keras's own arguments to
    `keras.optimizers.Optimizer`, puts the three betas/epsilon in the config,
    and gives the bias corrections of a step. With
    `decoupled_weight_decay=False` Keras is given no `weight_decay` (its
    decay is the decoupled kind) and the value is kept in `self._l2` for the
    subclass to add to the gradient.
    """

    # RAdam needs `beta_2 > 0` (`log(beta_2)`); Adam's own range is [0, 1).
    _beta_2_low_open = False

    def __init__(
        self,
        learning_rate,
        beta_1,
        beta_2,
        epsilon,
        weight_decay,
        name,
        decoupled_weight_decay=True,
        **kwargs,
    ):
        cls_name = type(self).__name__
        if weight_decay is not None:
            weight_decay = check_real(cls_name, "weight_decay", weight_decay, 0.0)
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay if decoupled_weight_decay else None,
            **kwargs,
        )
        self.beta_1 = check_real(cls_name, "beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = check_real(
            cls_name,
            "beta_2",
            beta_2,
            0.0,
            1.0,
            low_open=self._beta_2_low_open,
            high_open=True,
        )
        self.epsilon = check_real(cls_name, "epsilon", epsilon, 0.0)
        self._l2 = None if decoupled_weight_decay else weight_decay

    def _bias_corrections(self, dtype):
        """`(t, 1 - beta_1**t, 1 - beta_2**t)` of this step, in `dtype`.

        `beta_1` may be a tensor (momentum cycling writes it at run time).
        """
        step = ops.cast(self.iterations + 1, dtype)
        return (
            step,
            one_minus_power(self.beta_1, step, dtype),
            one_minus_power(self.beta_2, step, dtype),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
        )
        return config
