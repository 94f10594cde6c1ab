"""Layer-wise adaptation (a trust ratio) for any optimizer.

The inner optimizer computes its step as usual; the wrapper takes the step's
*direction* (the update divided by the current learning rate), rescales it so
that its norm is `trust_coefficient * ||w||`, and multiplies by the learning
rate again: optax's `chain(<inner direction>, scale_by_trust_ratio(),
scale_by_learning_rate(lr))`, the shape of LAMB. A ratio taken on the update
itself (after the learning rate) would cancel the learning rate, and with it
every schedule.
"""

import numbers

import keras
from keras import ops

from keras_tricks.optimizers._exclude import Exclusion, exclude_from_config
from keras_tricks.optimizers._wrapper import OptimizerWrapper


def _base_optimizer(optimizer):
    while getattr(optimizer, "inner_optimizer", None) is not None:
        optimizer = optimizer.inner_optimizer
    return optimizer


def _check(name, value, low_open):
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and value == value
        and value not in (float("inf"),)
        and (value > 0 if low_open else value >= 0)
    )
    if not ok:
        raise ValueError(
            f"Argument `{name}` of TrustRatio must be a finite number "
            f"{'>' if low_open else '>='} 0. Received: {name}={value!r}"
        )
    return float(value)


@keras.saving.register_keras_serializable(package="keras_tricks")
class TrustRatio(OptimizerWrapper):
    """Add layer-wise adaptation (LARS/LAMB's trust ratio) to any optimizer.

    For each variable `w`, the inner optimizer's update `delta` (what it
    would add to `w`, weight decay included) is turned into a direction
    `d = -delta / lr` with the learning rate `lr` of this step, and replaced
    by

    ```
    -lr * d * trust_coefficient * ||w|| / (||d|| + epsilon)   # ratio 1 if a norm is 0
    ```

    so every layer moves by the same fraction of its own norm, whatever its
    gradient scale (You et al. 2017 for SGD, "LARS"; You et al. 2019 for
    Adam, "LAMB", arXiv 1904.00962). The learning rate stays in charge of
    the step size: a schedule, a warmup or a plateau reduction changes the
    step exactly as without the wrapper (a ratio taken on `delta` itself
    would cancel it).

    `TrustRatio(keras.optimizers.AdamW(lr, weight_decay=wd))` is optax's
    `lamb(lr, weight_decay=wd)` up to where the epsilon sits (Keras's Adam
    adds it to `sqrt(v)` before bias correction). Keras's own
    `keras.optimizers.Lamb` differs in its weight decay: Keras applies it
    decoupled, outside the ratio, while LAMB (and this wrapper around
    `AdamW`) puts it in the direction that the ratio rescales. Without
    weight decay the three agree.

    Args:
        optimizer: A `keras.optimizers.Optimizer` instance that computes the
            step (its learning rate, schedule, weight decay and clipping
            are used as they are). `use_ema` is not supported on it (the
            average would see the step before the ratio).
        trust_coefficient: Float `> 0`. Multiplies the ratio. Defaults to
            `1.0` (LAMB; LARS uses `1e-3` with an SGD learning rate ~1000x
            larger).
        epsilon: Float `>= 0`. Added to the direction's norm. Defaults to
            `0.0`.
        exclude: Optional string or list of strings. Variables whose `path`
            or `name` matches one of these regular expressions keep the
            inner optimizer's plain step, e.g. `exclude=["bias", "gamma",
            "beta"]`. Or a callable that takes the variable and returns True
            to exclude it, e.g. `lambda v: len(v.shape) < 2`; to save the
            optimizer (`.keras`, `get_config`) it must be a registered
            function (`keras.saving.register_keras_serializable`). Defaults
            to `None`.
        name: Optional name of the wrapper.

    Example:

    ```python
    optimizer = keras_tricks.optimizers.TrustRatio(
        keras.optimizers.AdamW(1e-3, weight_decay=0.01),
        exclude=["bias", "gamma", "beta"],
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    ```
    """

    def __init__(
        self,
        optimizer,
        trust_coefficient=1.0,
        epsilon=0.0,
        exclude=None,
        name=None,
        **kwargs,
    ):
        super().__init__(optimizer, name=name, **kwargs)
        self.trust_coefficient = _check("trust_coefficient", trust_coefficient, True)
        self.epsilon = _check("epsilon", epsilon, False)
        base = _base_optimizer(optimizer)
        if getattr(base, "use_ema", False):
            raise ValueError(
                "TrustRatio rescales the inner optimizer's step after it is "
                "applied, so an EMA kept by the inner optimizer would average "
                "the weights before the rescaling. Received: an inner "
                f"{type(base).__name__}(use_ema=True)."
            )
        self._exclusion = Exclusion(exclude, "TrustRatio")
        self.exclude = self._exclusion.value

    def _current_lr(self):
        return _base_optimizer(self.inner_optimizer)._get_current_learning_rate()

    def _rescale(self, old, new, variable, lr):
        """`old + ratio * (new - old)`: the inner step with the trust ratio."""
        if new is None or self._exclusion(variable):
            return new
        dtype = new.dtype
        old = ops.cast(old, dtype)
        delta = ops.subtract(new, old)
        lr = ops.cast(lr, dtype)
        w_norm = ops.sqrt(ops.sum(ops.square(old)))
        d_norm = ops.sqrt(ops.sum(ops.square(delta)))
        # tc * ||w|| / (||delta / lr|| + eps), written without dividing by
        # lr (a zero LR gives a zero step, and the fallback ratio of 1).
        ratio = ops.divide(
            ops.multiply(
                ops.multiply(ops.cast(self.trust_coefficient, dtype), w_norm), lr
            ),
            ops.add(d_norm, ops.multiply(ops.cast(self.epsilon, dtype), lr)),
        )
        zero = ops.logical_or(ops.equal(w_norm, 0.0), ops.equal(d_norm, 0.0))
        ratio = ops.where(zero, ops.ones((), dtype), ratio)
        return ops.add(old, ops.multiply(delta, ratio))

    def _stateful_apply(self, grads, trainable_variables):
        # The learning rate of *this* step: the inner `iterations` advance
        # at the end of its `apply`.
        lr = self._current_lr()
        olds = [ops.copy(v.value) for v in trainable_variables]
        self.inner_optimizer.apply(grads, trainable_variables)
        for var, old, grad in zip(trainable_variables, olds, grads, strict=False):
            if grad is None or self._exclusion(var):
                continue
            var.assign(self._rescale(old, var.value, var, lr))

    def _stateless_apply(self, own_values, inner_values, grads, trainable_values):
        mapping = list(zip(self.inner_optimizer.variables, inner_values, strict=False))
        with keras.StatelessScope(state_mapping=mapping):
            lr = ops.convert_to_tensor(self._current_lr())
        new_trainable, new_inner = self.inner_optimizer.stateless_apply(
            inner_values, grads, trainable_values
        )
        new_trainable = [
            new if g is None else self._rescale(old, new, var, lr)
            for old, new, var, g in zip(
                trainable_values,
                new_trainable,
                self._trainable_variables,
                grads,
                strict=False,
            )
        ]
        return new_trainable, own_values, new_inner

    def get_config(self):
        config = self._base_config()
        config.update(
            {
                "trust_coefficient": self.trust_coefficient,
                "epsilon": self.epsilon,
                "exclude": self._exclusion.config(),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = exclude_from_config(config, custom_objects)
        return super().from_config(config, custom_objects=custom_objects)
