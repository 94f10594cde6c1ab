"""LARS: SGD with momentum and a layer-wise trust ratio (You et al. 2017).

Each variable's step is rescaled so that its size is a fixed fraction
(`trust_coefficient`) of the variable's own norm, whatever the gradient's
scale: the optimizer behind ResNet-50 trained with batches of 8k-32k. The
arithmetic follows `optax.lars` (weight decay added to the gradient, the
trust ratio on the sum, then the learning rate, then the momentum trace), so
with the same arguments the two give the same weights step by step.
"""

import numbers

import keras
from keras import ops

from keras_tricks.optimizers._exclude import Exclusion, exclude_from_config


def _check_real(name, value, low, high=None, low_open=False):
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and value == value  # not NaN
        and (value > low if low_open else value >= low)
        and (high is None or value < high)
    )
    if not ok:
        bracket = "(" if low_open else "["
        span = f"{bracket}{low}, {high})" if high is not None else None
        expected = (
            f"a number in {span}"
            if span
            else (f"a number {'>' if low_open else '>='} {low}")
        )
        raise ValueError(
            f"Argument `{name}` of LARS must be {expected}. Received: {name}={value!r}"
        )
    return float(value)


def _trust_ratio(weight, update, trust_coefficient, epsilon):
    """`trust_coefficient * ||w|| / (||u|| + eps)`, or 1 where a norm is 0.

    Both norms are over the whole tensor (one ratio per variable). The
    fallback to 1 follows optax's `scale_by_trust_ratio`: a variable that is
    all zeros (a fresh bias) or a zero step is left to the plain update.
    """
    dtype = update.dtype
    w_norm = ops.sqrt(ops.sum(ops.square(weight)))
    u_norm = ops.sqrt(ops.sum(ops.square(update)))
    ratio = ops.divide(
        ops.multiply(ops.cast(trust_coefficient, dtype), w_norm),
        ops.add(u_norm, ops.cast(epsilon, dtype)),
    )
    zero = ops.logical_or(ops.equal(w_norm, 0.0), ops.equal(u_norm, 0.0))
    return ops.where(zero, ops.ones((), dtype), ratio)


@keras.saving.register_keras_serializable(package="keras_tricks")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise adaptive rate scaling: SGD with a per-variable trust ratio.

    For each variable `w` with gradient `g` (You et al. 2017, "Large Batch
    Training of Convolutional Networks", arXiv 1708.03888; the arithmetic of
    `optax.lars`):

    ```
    u = g + weight_decay * w
    u = u * trust_coefficient * ||w|| / (||u|| + epsilon)   # 1 if a norm is 0
    m = momentum * m - learning_rate * u
    w = w + m            # Nesterov: w = w + momentum * m - learning_rate * u
    ```

    The trust ratio makes each layer's step proportional to the layer's own
    norm, so a learning rate that suits one layer does not blow up another:
    the reason plain SGD with the linear scaling rule diverges at very large
    batches while LARS does not. Use it with a warmup and a polynomial or
    cosine decay (e.g. `keras_tricks.schedules.WarmupCosine`), and with a
    learning rate of the order of 1-10 (the trust ratio with the default
    `trust_coefficient=1e-3` makes the step ~1e-3 * lr of the weight norm).

    Unlike Keras's decoupled `weight_decay`, the decay here is added to the
    gradient *before* the trust ratio, as in the paper and optax. Biases
    and normalization parameters are usually taken out of both the weight
    decay and the adaptation with `exclude` (what TF Model Garden's
    `exclude_from_weight_decay` and `exclude_from_layer_adaptation` do);
    Keras's `exclude_from_weight_decay()` takes variables out of the decay
    only. The momentum is read as `self.momentum` at every update, so a
    callback that cycles it inside the compiled step reaches it.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`
            or a callable. Defaults to `0.1`.
        momentum: Float in `[0, 1)`. Momentum of the trace. `0` is plain
            LARS without momentum (the buffers are still kept, so that the
            momentum may change during training). Defaults to `0.9`.
        weight_decay: Float `>= 0`. L2 coefficient added to the gradient
            before the trust ratio. Defaults to `0.0`.
        trust_coefficient: Float `> 0`. The paper's `eta`. Defaults to `1e-3`.
        epsilon: Float `>= 0`. Added to the update norm in the trust
            ratio. Defaults to `0.0` (optax's default).
        nesterov: Bool. Nesterov momentum. Defaults to `False`.
        exclude: Optional string or list of strings. Variables whose `path`
            or `name` matches one of these regular expressions (a substring
            is a valid expression) get neither weight decay nor the trust
            ratio: a plain momentum-SGD step, e.g. `exclude=["bias", "gamma",
            "beta"]`. Or a callable that takes the variable and returns True
            to exclude it, e.g. `lambda v: len(v.shape) < 2` (every bias and
            normalization parameter); to save the optimizer (`.keras`,
            `get_config`) it must be a registered function
            (`keras.saving.register_keras_serializable`). Defaults to `None`.
        name: String. Defaults to `"lars"`.
        **kwargs: Keras's standard optimizer arguments (`clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`).

    Example:

    ```python
    optimizer = keras_tricks.optimizers.LARS(
        learning_rate=keras_tricks.schedules.WarmupCosine(
            peak_lr=5.0, total_steps=1000, warmup_steps=100
        ),
        momentum=0.9,
        weight_decay=1e-4,
        exclude=["bias", "gamma", "beta"],
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    ```
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=0.0,
        trust_coefficient=1e-3,
        epsilon=0.0,
        nesterov=False,
        exclude=None,
        name="lars",
        **kwargs,
    ):
        momentum = _check_real("momentum", momentum, 0.0, 1.0)
        weight_decay = _check_real(
            "weight_decay", 0.0 if weight_decay is None else weight_decay, 0.0
        )
        trust_coefficient = _check_real(
            "trust_coefficient", trust_coefficient, 0.0, low_open=True
        )
        epsilon = _check_real("epsilon", epsilon, 0.0)
        if not isinstance(nesterov, bool):
            raise ValueError(
                "Argument `nesterov` of LARS must be a bool. "
                f"Received: nesterov={nesterov!r}"
            )
        exclusion = Exclusion(exclude, "LARS")
        if isinstance(learning_rate, numbers.Real) and not isinstance(
            learning_rate, bool
        ):
            learning_rate = float(learning_rate)  # Keras refuses NumPy scalars
        # The decay is part of the update (before the trust ratio), not
        # Keras's decoupled decay: keep it away from the base class.
        super().__init__(
            learning_rate=learning_rate, weight_decay=None, name=name, **kwargs
        )
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.trust_coefficient = trust_coefficient
        self.epsilon = epsilon
        self.nesterov = nesterov
        self._exclusion = exclusion
        self.exclude = exclusion.value

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        # Decided once, on the Keras variables (TensorFlow's `update_step`
        # receives the underlying `tf.Variable`, without `path`).
        self._excluded_flags = [self._exclusion(v) for v in variables]

    def _apply_weight_decay(self, variables):
        # Done inside `update_step`, added to the gradient.
        return

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        update = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        if not self._excluded_flags[index]:
            if self.weight_decay and self._use_weight_decay(variable):
                update = ops.add(
                    update,
                    ops.multiply(ops.cast(self.weight_decay, dtype), variable),
                )
            update = ops.multiply(
                update,
                _trust_ratio(variable, update, self.trust_coefficient, self.epsilon),
            )
        # Read at every update and never branched on: a momentum computed
        # in the compiled step (momentum cycling) reaches the arithmetic.
        momentum = ops.cast(self.momentum, dtype)
        m = self.momentums[index]
        step = ops.multiply(update, lr)
        self.assign(m, ops.subtract(ops.multiply(m, momentum), step))
        if self.nesterov:
            self.assign_add(variable, ops.subtract(ops.multiply(m, momentum), step))
        else:
            self.assign_add(variable, m)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.weight_decay,
                "trust_coefficient": self.trust_coefficient,
                "epsilon": self.epsilon,
                "nesterov": self.nesterov,
                "exclude": self._exclusion.config(),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = exclude_from_config(config, custom_objects)
        return super().from_config(config, custom_objects=custom_objects)
