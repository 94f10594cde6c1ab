"""A Dense output layer that starts at the label prior and computes in float32."""

import numbers

import keras
import numpy as np

from keras_tricks.imbalance import PriorBias, output_bias


@keras.saving.register_keras_serializable(package="keras_tricks")
class OutputHead(keras.layers.Dense):
    """Dense output layer whose bias starts at the label prior, in float32.

    Two tricks in one layer:

    - Its bias is initialized with `keras_tricks.imbalance.output_bias(prior,
      activation)`, so the untrained model predicts the label distribution
      and the first loss is the prior's entropy (or `Var(y)` for a linear
      head with MSE) instead of `log K`.
    - It computes in float32 (`dtype="float32"`) even under a
      `mixed_float16` / `mixed_bfloat16` policy: a softmax or sigmoid in half
      precision saturates and the loss would be computed on float16 values.
      Its float16 inputs are cast to float32 on the way in.

    The config stores the bias vector, not `prior`, so a saved model does not
    carry the labels.

    Args:
        units: int or None. Number of outputs. None takes it from `prior` /
            `bias` (for softmax with integer labels: `max(label) + 1`).
        activation: Activation name or callable. With `prior`, one of
            `None` / `"linear"`, `"sigmoid"`, `"softmax"`. Defaults to None.
        prior: Array-like or None. Training targets to compute the bias from
            (see `output_bias`). Defaults to None.
        bias: Sequence of floats or None. The bias vector itself (any
            activation). Give `prior` or `bias`, not both; with neither the
            bias starts at zero as in `Dense`. Defaults to None.
        sample_weight: Array `(n,)` or None. Weights of the training loss:
            pass the weights the model is trained with (e.g.
            `keras_tricks.imbalance.sample_weights(y)` for balanced weights or
            `"max"` oversampling) so that the bias matches the prior the loss
            sees. Defaults to None.
        eps: float. See `output_bias`. Defaults to 1e-7.
        dtype: The layer's dtype policy. Defaults to `"float32"`.
        **kwargs: Other `keras.layers.Dense` arguments
            (`kernel_initializer`, regularizers, `name`, ...).

    Example:

    ```python
    y = np.array([0] * 95 + [1] * 5)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu"),
        keras_tricks.layers.OutputHead(1, "sigmoid", prior=y),
    ])
    ```
    """

    def __init__(
        self,
        units=None,
        activation=None,
        prior=None,
        bias=None,
        sample_weight=None,
        eps=1e-7,
        dtype="float32",
        **kwargs,
    ):
        if units is not None:
            if (
                isinstance(units, bool)
                or not isinstance(units, numbers.Integral)
                or units < 1
            ):
                raise ValueError(
                    "Argument `units` must be a positive integer or None. "
                    f"Received: units={units!r}"
                )
            units = int(units)
        if prior is not None and bias is not None:
            raise ValueError(
                "Arguments `prior` and `bias` cannot both be given. "
                "Received: prior=<array>, bias=<array>"
            )
        vector = None
        if prior is not None:
            name = activation if activation is not None else "linear"
            if not isinstance(name, str) or name not in (
                "linear",
                "sigmoid",
                "softmax",
            ):
                raise ValueError(
                    "Argument `activation` must be None, 'linear', 'sigmoid' or "
                    f"'softmax' when `prior` is given. Received: activation={activation!r}"
                )
            vector = output_bias(
                prior,
                name,
                sample_weight=sample_weight,
                eps=eps,
                num_classes=units
                if name == "softmax" and units is not None and np.ndim(prior) == 1
                else None,
            )
        elif bias is not None:
            vector = np.asarray(bias, dtype=np.float32).ravel()
        elif sample_weight is not None:
            raise ValueError(
                "Argument `sample_weight` is only used with `prior`. Received: prior=None"
            )
        if vector is not None:
            if units is None:
                units = int(vector.shape[0])
            if units != vector.shape[0]:
                raise ValueError(
                    f"Argument `units` must match the bias length {vector.shape[0]}. "
                    f"Received: units={units}"
                )
            if not kwargs.get("use_bias", True):
                raise ValueError(
                    "Argument `use_bias` must be True with `prior` or `bias`. "
                    "Received: use_bias=False"
                )
            if "bias_initializer" in kwargs:
                raise ValueError(
                    "Argument `bias_initializer` cannot be given with `prior` or `bias`. "
                    f"Received: bias_initializer={kwargs['bias_initializer']!r}"
                )
            kwargs["bias_initializer"] = PriorBias(vector)
        if units is None:
            raise ValueError(
                "Argument `units` must be given when neither `prior` nor `bias` is. "
                "Received: units=None"
            )
        super().__init__(units=int(units), activation=activation, dtype=dtype, **kwargs)
        self._bias_vector = None if vector is None else [float(v) for v in vector]

    @property
    def initial_bias(self):
        """The bias vector the layer starts from (None when it starts at zero)."""
        return (
            None
            if self._bias_vector is None
            else np.asarray(self._bias_vector, np.float32)
        )

    def get_config(self):
        config = super().get_config()
        if self._bias_vector is not None:
            config.pop("bias_initializer", None)
        config["bias"] = self._bias_vector
        return config
