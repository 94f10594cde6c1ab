"""Balanced class weights and per-sample weights.

`class_weights` gives sklearn's "balanced" weights
`n_samples / (n_classes * bincount(y))` in the form `fit(class_weight=...)`
takes; `sample_weights` spreads them (or any class weights) over the samples.
"""

import numpy as np

from keras_tricks.imbalance._labels import _parse_labels, _require_two_classes

__all__ = ["class_weights", "sample_weights"]


def class_weights(y, return_classes=False):
    """Balanced class weights in the form `model.fit(class_weight=...)` takes.

    For single-label targets the weights are sklearn's
    `compute_class_weight("balanced")`: `n_samples / (n_classes * count_c)`, so
    every class carries the same total weight and the mean weight per sample is 1.

    The keys are what Keras looks up: Keras turns a batch's targets into one
    integer per sample (the label itself for integer labels, `argmax` for one-hot
    rows) and reads `class_weight[label]`.

    - Integer labels: the keys are the label values.
    - One-hot rows: the keys are column indices.
    - String labels: Keras cannot train on strings, so encode them first as the
      index into the sorted unique labels (`np.unique(y, return_inverse=True)` or
      `sklearn.preprocessing.LabelEncoder`, which give the same codes). The keys
      are those indices; `return_classes=True` also returns the labels, so
      `classes[key]` is the label of `key`.
    - Multi-label 0/1 matrices: the weight of column `k` is the positive weight
      `n_neg_k / n_pos_k` (PyTorch's `BCEWithLogitsLoss(pos_weight=...)`): a
      positive in column `k` then counts as much as all its negatives together.
      Keras's `fit(class_weight=...)` cannot apply it (it takes the `argmax` of
      2D targets); use `sample_weights(y)`, which returns per-element weights.

    Args:
        y: Array-like. Integer or string labels `(n,)`, a one-hot matrix
            `(n, K)` or a multi-label 0/1 matrix `(n, K)`.
        return_classes: bool. Also return the class values, in key order.
            Defaults to False.

    Returns:
        A dict `{key: weight}` (Python ints and floats), or
        `(dict, classes)` when `return_classes=True`.

    Raises:
        ValueError: `y` is empty, has only one class (a multi-label column with
            only 0s or only 1s), or is not a label array.

    Example:

    ```python
    y = np.array([0] * 90 + [1] * 10)
    keras_tricks.imbalance.class_weights(y)
    # {0: 0.5555..., 1: 5.0}
    model.fit(x, y, class_weight=keras_tricks.imbalance.class_weights(y))
    ```
    """
    labels = _parse_labels(y)
    _require_two_classes(labels)
    if labels.kind == "multilabel":
        pos = labels.matrix.sum(axis=0)
        neg = labels.matrix.shape[0] - pos
        weights = neg / pos
    else:
        from sklearn.utils.class_weight import compute_class_weight

        weights = compute_class_weight(
            "balanced", classes=np.arange(len(labels.classes)), y=labels.codes
        )
    result = {k: float(w) for k, w in zip(labels.keys, weights, strict=True)}
    if return_classes:
        return result, labels.classes
    return result


def sample_weights(y, class_weight=None):
    """Per-sample weights: each sample gets the weight of its class.

    Use it where `fit(class_weight=...)` is not accepted (multi-output models,
    generators, `OversampledDataset(sample_weight=...)`) or to compute the prior
    the loss sees (`output_bias(y, ..., sample_weight=sample_weights(y))`).

    For multi-label matrices it returns per-element weights `(n, K)`: the
    positive weight `n_neg_k / n_pos_k` where `y[i, k] == 1`, 1 elsewhere. Keras
    applies a `(n, K)` sample weight element by element only when the loss keeps
    that axis: give the model outputs and targets a trailing axis of 1 (shape
    `(n, K, 1)`), so that binary cross-entropy reduces over that axis only.

    Args:
        y: Array-like. Labels as accepted by `class_weights`.
        class_weight: dict or None. Weights keyed like `class_weights(y)`
            returns them (for string labels the label itself is also accepted
            as key); a class missing from the dict gets 1.0, as in Keras.
            None uses the balanced weights. Defaults to None.

    Returns:
        A float32 array `(n,)`, or `(n, K)` for multi-label targets.

    Raises:
        ValueError: `y` is empty or has one class only, or `class_weight` holds
            a negative or non-finite weight.

    Example:

    ```python
    y = np.array([0, 0, 0, 1])
    keras_tricks.imbalance.sample_weights(y)
    # array([0.6666667, 0.6666667, 0.6666667, 2.], dtype=float32)
    ```
    """
    labels = _parse_labels(y)
    if class_weight is None:
        _require_two_classes(labels)
        weights = class_weights(y)
    else:
        if not isinstance(class_weight, dict):
            raise ValueError(
                "Argument `class_weight` must be a dict {class: weight} or None. "
                f"Received: class_weight={class_weight!r}"
            )
        weights = {}
        for key, cls in zip(labels.keys, labels.classes, strict=True):
            w = class_weight.get(
                key, class_weight.get(cls.item() if hasattr(cls, "item") else cls, 1.0)
            )
            weights[key] = w
        values = np.asarray(list(weights.values()), dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(
                "Argument `class_weight` must hold finite weights >= 0. "
                f"Received: class_weight={class_weight}"
            )
    per_class = np.asarray([weights[k] for k in labels.keys], dtype=np.float32)
    if labels.kind == "multilabel":
        m = labels.matrix.astype(np.float32)
        return m * per_class[None, :] + (1.0 - m)
    return per_class[labels.codes]
