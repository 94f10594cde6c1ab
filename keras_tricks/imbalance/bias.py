"""Output-bias priors: `output_bias`, `bias_initializer` and `PriorBias`.

Start the output layer at the class prior, so that the first loss is the
prior's entropy instead of `log K` (see also `keras_tricks.layers.OutputHead`).
"""

import keras
import numpy as np

from keras_tricks.imbalance._labels import _check_weights, _parse_labels, _to_numpy

__all__ = ["PriorBias", "bias_initializer", "output_bias"]

_ACTIVATIONS = ("linear", "sigmoid", "softmax")


def output_bias(y, activation="linear", sample_weight=None, eps=1e-7, num_classes=None):
    """The output-layer bias that makes the untrained model predict the prior.

    With a zero (or small) kernel, the model's first prediction is then the
    label distribution, and the first loss is the prior's entropy instead of
    `log K` (softmax) or `log 2` (sigmoid): the first steps are not spent
    learning the class frequencies ("init well", Karpathy; TensorFlow's
    imbalanced-data tutorial; "Bag of Tricks").

    - `"linear"` (MSE): `b = mean(y)` per output column; the first loss is
      `Var(y)`.
    - `"sigmoid"`: `b = log(p / (1 - p))` per column, `p` the mean of the 0/1
      column clipped to `[eps, 1 - eps]` (binary or multi-label).
    - `"softmax"`: `b_k = log(p_k + eps) - log(K)` (a constant shift changes
      nothing).

    Compute the bias from the distribution training actually sees. Balanced
    class weights or `"max"` oversampling make that distribution uniform,
    and the right bias is then (up to a shift) zero; pass the weights as
    `sample_weight` (`sample_weights(y)` for balanced weights, which is also
    the prior under `"max"` oversampling) to get it right for any weighting.

    Args:
        y: Array-like. Targets: for `"linear"`, real values `(n,)` or
            `(n, units)`; for `"sigmoid"`, 0/1 (or probabilities) `(n,)` or
            `(n, K)`; for `"softmax"`, integer / string labels `(n,)` or
            one-hot (or soft) rows `(n, K)`.
        activation: str. `"linear"`, `"sigmoid"` or `"softmax"` (`None` means
            linear). Defaults to `"linear"`.
        sample_weight: Array `(n,)` or None. Per-sample weights of the loss.
            Defaults to None.
        eps: float. Keeps the logs finite for classes with `p = 0` or `1`.
            Defaults to 1e-7.
        num_classes: int or None. Softmax with integer labels only: the number
            of outputs `K` (labels are indices `0..K-1`; a class absent from
            `y` gets `log(eps) - log(K)`). Defaults to `max(y) + 1`.

    Returns:
        A float32 NumPy array `(units,)`.

    Raises:
        ValueError: `y` is empty, has the wrong form for the activation,
            `sample_weight` is negative, NaN, all zeros or of another length.

    Example:

    ```python
    y = np.array([0] * 99 + [1])
    keras_tricks.imbalance.output_bias(y, "sigmoid")  # array([-4.59512])
    ```
    """
    if activation is None:
        activation = "linear"
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"Argument `activation` must be one of {list(_ACTIVATIONS)}. "
            f"Received: activation={activation!r}"
        )
    if not (isinstance(eps, (int, float)) and 0 < eps < 0.5):
        raise ValueError(f"Argument `eps` must be in (0, 0.5). Received: eps={eps!r}")
    y = _to_numpy(y, "y")
    n = y.shape[0]
    w = None if sample_weight is None else _check_weights(sample_weight, n)

    def weighted_mean(m):
        m = m.astype(np.float64)
        if w is None:
            return m.mean(axis=0)
        return (w[:, None] * m).sum(axis=0) / w.sum()

    if activation == "softmax":
        if y.ndim == 2 and y.shape[1] > 1:
            m = y.astype(np.float64)
            if (
                np.any(m < 0)
                or not np.all(np.isfinite(m))
                or not np.allclose(m.sum(axis=1), 1.0, atol=1e-3)
            ):
                raise ValueError(
                    "Argument `y` for a softmax head must be integer labels or rows "
                    "that sum to 1 (one-hot or soft labels). Received rows summing to "
                    f"{np.unique(np.round(m.sum(axis=1), 3))[:3].tolist()}"
                )
            if num_classes is not None and num_classes != m.shape[1]:
                raise ValueError(
                    f"Argument `num_classes` must match the {m.shape[1]} columns of `y`. "
                    f"Received: num_classes={num_classes}"
                )
        else:
            labels = _parse_labels(y)
            if labels.kind == "string":
                codes, k = labels.codes, len(labels.classes)
            else:
                values = labels.classes[labels.codes]
                if values.min() < 0:
                    raise ValueError(
                        "Argument `y` for a softmax head must hold class indices >= 0. "
                        f"Received: min(y)={int(values.min())}"
                    )
                codes, k = values, int(values.max()) + 1
            if num_classes is not None:
                if num_classes < k:
                    raise ValueError(
                        "Argument `num_classes` must be > every label. "
                        f"Received: num_classes={num_classes}, max label {k - 1}"
                    )
                k = int(num_classes)
            m = np.zeros((n, k))
            m[np.arange(n), codes] = 1.0
        p = weighted_mean(m)
        bias = np.log(p + eps) - np.log(len(p))
    else:
        m = y.reshape(n, -1) if y.ndim > 1 else y[:, None]
        if m.dtype.kind not in "iubf":
            raise ValueError(
                f"Argument `y` for a {activation} head must be numeric. Received: dtype={m.dtype}"
            )
        if not np.all(np.isfinite(m)):
            raise ValueError(
                f"Argument `y` must be finite for a {activation} head. Received NaN or inf"
            )
        if activation == "linear":
            bias = weighted_mean(m)
        else:
            if np.any(m < 0) or np.any(m > 1):
                raise ValueError(
                    "Argument `y` for a sigmoid head must be 0/1 (or probabilities in "
                    f"[0, 1]). Received values in [{m.min()}, {m.max()}]"
                )
            p = np.clip(weighted_mean(m), eps, 1.0 - eps)
            bias = np.log(p) - np.log1p(-p)
    return bias.astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_tricks")
class PriorBias(keras.initializers.Initializer):
    """Initializer that sets a bias vector to fixed values (e.g. a class prior).

    `keras.initializers.Constant` takes one scalar; this takes a vector, checks
    that its length matches the layer's units and serializes it.

    Args:
        bias: Sequence of floats. The bias values, one per unit.

    Example:

    ```python
    init = keras_tricks.imbalance.PriorBias([-4.6])
    head = keras.layers.Dense(1, "sigmoid", bias_initializer=init)
    ```
    """

    def __init__(self, bias):
        values = np.asarray(bias, dtype=np.float64).ravel()
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(
                f"Argument `bias` must be a non-empty vector of finite floats. Received: bias={bias!r}"
            )
        self.bias = [float(v) for v in values]

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if shape != (len(self.bias),):
            raise ValueError(
                f"PriorBias holds {len(self.bias)} values and cannot fill a variable of "
                f"shape {shape}. Give the layer units={len(self.bias)}."
            )
        return keras.ops.convert_to_tensor(
            np.asarray(self.bias), dtype=keras.backend.standardize_dtype(dtype)
        )

    def get_config(self):
        return {"bias": list(self.bias)}


def bias_initializer(
    y, activation="linear", sample_weight=None, eps=1e-7, num_classes=None
):
    """A Keras bias initializer set to the prior of `y` (see `output_bias`).

    Args:
        y: Array-like. The training targets.
        activation: str. `"linear"`, `"sigmoid"` or `"softmax"`. Defaults to
            `"linear"`.
        sample_weight: Array `(n,)` or None. Weights of the training loss.
            Defaults to None.
        eps: float. Defaults to 1e-7.
        num_classes: int or None. Softmax with integer labels only. Defaults
            to None.

    All arguments are as in `output_bias`.

    Returns:
        A `PriorBias` initializer (serializable; its config holds the bias
        vector, not `y`).

    Example:

    ```python
    head = keras.layers.Dense(
        1, "sigmoid", bias_initializer=keras_tricks.imbalance.bias_initializer(y, "sigmoid")
    )
    ```
    """
    return PriorBias(
        output_bias(
            y, activation, sample_weight=sample_weight, eps=eps, num_classes=num_classes
        )
    )
