"""RAdam: Adam with a rectified adaptive learning rate (Liu et al. 2019).

Adam's adaptive step `1 / sqrt(v_hat)` has a large variance in the first steps,
when `v` has averaged only a few squared gradients; that is why Adam needs a
warm-up. RAdam multiplies it by a rectification term `r_t` that removes the
variance, and while the variance is not yet defined (`rho_t <= 5`) takes an
un-adapted momentum step instead.

`rho_t = rho_inf - 2 t beta_2**t / (1 - beta_2**t)` sits 0.004 below the
threshold at `t = 5` with `beta_2 = 0.999`: computed naively in float32 it is
off by ~1e-2 and the rectified branch starts one step early. The branch is
therefore decided against the first rectified step found once, on the host, in
float64 (what PyTorch does), and `rho_t` itself is computed in float32 from a
rearrangement without cancellation (see `_rho`).
"""

import math

import keras
from keras import ops

from keras_tricks.optimizers._adam_math import AdamFamily, check_bool


def _first_rectified_step(beta_2):
    """The first 1-based step with `rho_t > 5` (float64, as torch), or None."""
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    if rho_inf <= 5.0:
        return None
    t = 1
    while True:
        beta_2_t = beta_2**t
        rho_t = rho_inf - 2.0 * t * beta_2_t / (1.0 - beta_2_t)
        if rho_t > 5.0:
            return t
        t += 1


def _g(u):
    """`1 - u / (exp(u) - 1)` for `u > 0`, accurate in float32."""
    # Below u = 1 the closed form cancels; its Taylor series (Bernoulli
    # numbers) is exact to float32 there with five terms.
    u2 = ops.square(u)
    series = ops.multiply(
        u,
        0.5
        + ops.multiply(
            u,
            -1.0 / 12.0
            + ops.multiply(
                u2,
                1.0 / 720.0
                + ops.multiply(u2, -1.0 / 30240.0 + ops.multiply(u2, 1.0 / 1209600.0)),
            ),
        ),
    )
    big = ops.maximum(u, 1.0)
    closed = ops.subtract(1.0, ops.divide(big, ops.expm1(big)))
    return ops.where(ops.less(u, 1.0), series, closed)


@keras.saving.register_keras_serializable(package="keras_tricks")
class RAdam(AdamFamily):
    """Rectified Adam (Liu et al. 2019, arXiv 1908.03265).

    Adam's adaptive learning rate has a large variance early in training,
    which is why Adam usually needs a learning-rate warm-up. RAdam rectifies
    that variance: with `rho_inf = 2 / (1 - beta_2) - 1` and
    `rho_t = rho_inf - 2 t beta_2**t / (1 - beta_2**t)`, once `rho_t > 5`
    the update is

    `lr * r_t * m_hat / (sqrt(v_hat) + epsilon)`, with
    `r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))`,

    and before that (the first 5 steps at `beta_2=0.999`) the un-adapted
    momentum step `lr * m_hat`, or no step with `degenerated_to_sgd=False`
    (the official code's option). It equals `torch.optim.RAdam` step by step
    (`epsilon` is added to `sqrt(v)`, then the bias correction of `v` is
    applied, as in PyTorch).

    Use it where a warm-up is hard to tune; with a well-tuned warm-up Adam
    and RAdam end up close.

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule` instance, or a
            callable that takes no arguments and returns the value to use.
            Defaults to `0.001`.
        beta_1: Float in `[0, 1)`. Decay of the first-moment average. Defaults
            to `0.9`. (Momentum cycling, e.g. `keras_tricks.callbacks.OneCycle`,
            replaces it at run time.)
        beta_2: Float in `(0, 1)`. Decay of the second-moment average.
            Defaults to `0.999`.
        epsilon: Float >= 0. Added to `sqrt(v)`. Defaults to `1e-8`
            (PyTorch's; Keras's Adam uses `1e-7`).
        weight_decay: Optional float >= 0. Defaults to `None` (none).
        decoupled_weight_decay: Bool. `True`: AdamW-style decay
            `w -= lr * weight_decay * w` before the update (as Keras's
            `weight_decay` and `torch.optim.RAdam(decoupled_weight_decay=True)`);
            `False`: L2, `weight_decay * w` is added to the gradient. Defaults
            to `True`.
        degenerated_to_sgd: Bool. While `rho_t <= 5`, take the momentum step
            `lr * m_hat` (`True`, PyTorch's behaviour) or no step (`False`).
            Defaults to `True`.
        **kwargs: Keras's optimizer arguments: `clipnorm`, `clipvalue`,
            `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.

    Example:

    ```python
    optimizer = keras_tricks.optimizers.RAdam(1e-3, weight_decay=1e-4)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    ```
    """

    _beta_2_low_open = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay=None,
        decoupled_weight_decay=True,
        degenerated_to_sgd=True,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="radam",
        **kwargs,
    ):
        cls_name = type(self).__name__
        check_bool(cls_name, "decoupled_weight_decay", decoupled_weight_decay)
        check_bool(cls_name, "degenerated_to_sgd", degenerated_to_sgd)
        # With `decoupled_weight_decay=False` the decay is L2, added to the
        # gradient in `update_step` (`self._l2`); Keras's own is decoupled.
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            name=name,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            **kwargs,
        )
        self.decoupled_weight_decay = decoupled_weight_decay
        self.degenerated_to_sgd = degenerated_to_sgd
        c = 1.0 - self.beta_2
        log_beta_2 = math.log1p(-c)
        self._rho_inf = 2.0 / c - 1.0
        self._first_rectified = _first_rectified_step(self.beta_2)
        # rho_t = rho_const + (2 / L) * g(t L), L = -log(beta_2): see `_rho`.
        self._neg_log_beta_2 = -log_beta_2
        self._rho_const = 2.0 / c - 2.0 / self._neg_log_beta_2 - 1.0

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )

    def _rho(self, step, dtype):
        """`rho_t` in float32 without cancellation.

        With `L = -log(beta_2)` and `u = t L`:
        `rho_t = 2/(1-beta_2) - 1 - (2/L) u/(e^u - 1)
               = [2/(1-beta_2) - 2/L - 1] + (2/L) (1 - u/(e^u - 1))`;
        the bracket is a host constant and the last factor is `_g(u)`.
        """
        u = ops.multiply(step, ops.cast(self._neg_log_beta_2, dtype))
        return ops.add(
            ops.cast(self._rho_const, dtype),
            ops.multiply(ops.cast(2.0 / self._neg_log_beta_2, dtype), _g(u)),
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step, bc1, bc2 = self._bias_corrections(dtype)
        beta_1 = ops.cast(self.beta_1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        if self._l2 is not None and self._use_weight_decay(variable):
            gradient = ops.add(gradient, ops.multiply(variable, self._l2))
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1.0 - beta_1))
        self.assign_add(
            v,
            ops.multiply(ops.subtract(ops.square(gradient), v), 1.0 - self.beta_2),
        )
        m_hat = ops.divide(m, bc1)
        fallback = 1.0 if self.degenerated_to_sgd else 0.0
        if self._first_rectified is None:
            scale = ops.cast(fallback, dtype)
        else:
            rho = ops.maximum(self._rho(step, dtype), 5.0)
            rho_inf = self._rho_inf
            rect = ops.sqrt(
                ops.divide(
                    ops.multiply(ops.subtract(rho, 4.0), ops.subtract(rho, 2.0)),
                    rho,
                )
                * (rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0)))
            )
            adaptive = ops.divide(
                ops.multiply(rect, ops.sqrt(bc2)),
                ops.add(ops.sqrt(v), self.epsilon),
            )
            rectified = ops.greater_equal(self.iterations + 1, self._first_rectified)
            scale = ops.where(rectified, adaptive, ops.cast(fallback, dtype))
        self.assign_sub(variable, ops.multiply(ops.multiply(m_hat, lr), scale))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "decoupled_weight_decay": self.decoupled_weight_decay,
                "degenerated_to_sgd": self.degenerated_to_sgd,
            }
        )
        if not self.decoupled_weight_decay:
            config["weight_decay"] = self._l2
        return config
