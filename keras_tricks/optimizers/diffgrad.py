"""diffGrad: Adam's step damped where the gradient stops changing (Dubey et al. 2019).

The *v2* semantics: the friction `xi_t = sigmoid(|g_{t-1} - g_t|)` is computed
from the previous step's gradient (`g_0 = 0`), kept in one `previous_grad`
slot per variable. (The paper's first code release aliased `previous_grad` to
the gradient itself, which made `xi` identically 0.5: half of Adam's step.)
"""

import keras
from keras import ops

from keras_tricks.optimizers._adam_math import AdamFamily


@keras.saving.register_keras_serializable(package="keras_tricks")
class DiffGrad(AdamFamily):
    """diffGrad (Dubey et al. 2019, arXiv 1909.11015).

    Adam whose step is scaled, element by element, by a friction coefficient
    `xi_t = sigmoid(|g_{t-1} - g_t|)` in `[0.5, 1)`: where the gradient barely
    changes between steps (near an optimum, or on a flat stretch) the step is
    halved; where it changes fast the step is Adam's. The update is

    `w -= lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * xi_t * m / (sqrt(v) + epsilon)`

    with `g_0 = 0`. It equals `pytorch_optimizer.DiffGrad` (4.1) step by step.
    The state is Adam's plus the previous gradient (3 slots per variable).

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule` instance, or a
            callable that takes no arguments and returns the value to use.
            Defaults to `0.001`.
        beta_1: Float in `[0, 1)`. Decay of the first-moment average. Defaults
            to `0.9`. (Momentum cycling replaces it at run time.)
        beta_2: Float in `[0, 1)`. Decay of the second-moment average.
            Defaults to `0.999`.
        epsilon: Float >= 0. Added to `sqrt(v)`. Defaults to `1e-8`.
        weight_decay: Optional float >= 0: decoupled (AdamW-style) decay,
            `w -= lr * weight_decay * w` before the update. Defaults to `None`.
        **kwargs: Keras's optimizer arguments: `clipnorm`, `clipvalue`,
            `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.

    Example:

    ```python
    optimizer = keras_tricks.optimizers.DiffGrad(1e-3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    ```
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="diffgrad",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            weight_decay=weight_decay,
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

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        (
            self._momentums,
            self._velocities,
            self._previous_grads,
        ) = self.add_optimizer_variables(
            var_list, ["momentum", "velocity", "previous_grad"]
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        _, bc1, bc2 = self._bias_corrections(dtype)
        beta_1 = ops.cast(self.beta_1, dtype)
        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._velocities[index]
        previous = self._previous_grads[index]
        friction = ops.sigmoid(ops.abs(ops.subtract(previous, gradient)))
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1.0 - beta_1))
        self.assign_add(
            v,
            ops.multiply(ops.subtract(ops.square(gradient), v), 1.0 - self.beta_2),
        )
        self.assign(previous, gradient)
        alpha = ops.divide(ops.multiply(lr, ops.sqrt(bc2)), bc1)
        self.assign_sub(
            variable,
            ops.divide(
                ops.multiply(ops.multiply(m, friction), alpha),
                ops.add(ops.sqrt(v), self.epsilon),
            ),
        )
