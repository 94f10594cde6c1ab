"""Label and weight parsing shared by the imbalance tools.

Reads integer / string labels, one-hot rows and multi-label 0/1 matrices into
one `_Labels` record, and checks per-sample weights. Private: the public
functions in `weights`, `oversampling` and `bias` call these.
"""

import keras
import numpy as np


class _Labels:
    """Parsed class labels.

    Attributes:
        kind: "int", "string", "onehot" or "multilabel".
        codes: int array `(n,)`, index of each sample's class in `classes`
            (None for multi-label).
        classes: the class values: label values (int), sorted labels (string)
            or column indices (one-hot, multi-label).
        keys: the keys `fit(class_weight=...)` needs for each class.
        matrix: the `(n, K)` 0/1 matrix for multi-label, else None.
    """

    def __init__(self, kind, codes, classes, keys, matrix=None):
        self.kind = kind
        self.codes = codes
        self.classes = classes
        self.keys = keys
        self.matrix = matrix

    @property
    def counts(self):
        if self.kind == "multilabel":
            return self.matrix.sum(axis=0)
        return np.bincount(self.codes, minlength=len(self.classes))


def _to_numpy(y, name):
    if y is None:
        raise ValueError(
            f"Argument `{name}` must be an array of labels. Received: {name}=None"
        )
    y = np.asarray(
        keras.ops.convert_to_numpy(y)
        if not isinstance(y, (list, tuple, np.ndarray))
        else y
    )
    if y.ndim == 0 or y.shape[0] == 0:
        raise ValueError(
            f"Argument `{name}` must hold at least one sample. "
            f"Received: {name} with shape {y.shape}"
        )
    return y


def _parse_labels(y, name="y"):
    """Reads int / string labels, one-hot or multi-label indicator matrices."""
    y = _to_numpy(y, name)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if y.dtype.kind in "OUS":
            classes, codes = np.unique(
                y.astype(str) if y.dtype.kind == "O" else y, return_inverse=True
            )
            return _Labels("string", codes.ravel(), classes, list(range(len(classes))))
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                bad = y[~(np.isfinite(y) & (y == np.round(y)))][:3]
                raise ValueError(
                    f"Argument `{name}` must hold integer class labels, strings, a "
                    "one-hot matrix or a multi-label 0/1 matrix. Received float "
                    f"values such as {bad.tolist()}"
                )
            y = y.astype(np.int64)
        if y.dtype.kind not in "iub":
            raise ValueError(
                f"Argument `{name}` must hold integer or string class labels. "
                f"Received: dtype={y.dtype}"
            )
        classes = np.unique(y)
        codes = np.searchsorted(classes, y)
        return _Labels("int", codes, classes, [int(c) for c in classes])
    if y.ndim == 2:
        m = y.astype(np.float64)
        if not np.all((m == 0) | (m == 1)):
            raise ValueError(
                f"Argument `{name}` as a 2D array must be a one-hot or multi-label "
                "indicator matrix of 0s and 1s. Received values such as "
                f"{np.unique(m[(m != 0) & (m != 1)])[:3].tolist()}"
            )
        if np.all(m.sum(axis=1) == 1):
            labels = m.argmax(axis=1)
            classes, codes = np.unique(labels, return_inverse=True)
            return _Labels("onehot", codes.ravel(), classes, [int(c) for c in classes])
        cols = np.arange(m.shape[1])
        return _Labels("multilabel", None, cols, [int(c) for c in cols], matrix=m)
    raise ValueError(
        f"Argument `{name}` must be 1D (class labels) or 2D (one-hot or multi-label). "
        f"Received: {name} with shape {y.shape}"
    )


def _require_two_classes(labels, name="y"):
    if labels.kind == "multilabel":
        pos = labels.matrix.sum(axis=0)
        n = labels.matrix.shape[0]
        bad = np.flatnonzero((pos == 0) | (pos == n))
        if bad.size:
            raise ValueError(
                f"Argument `{name}` must have both 0s and 1s in every column of a "
                f"multi-label matrix. Received: columns {bad.tolist()} hold only one value"
            )
        return
    if len(labels.classes) < 2:
        raise ValueError(
            f"Argument `{name}` must hold at least two classes to balance. "
            f"Received: only class {labels.classes.tolist()}"
        )


def _check_weights(w, n, name="sample_weight"):
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(
            f"Argument `{name}` must be a 1D array with one weight per sample ({n}). "
            f"Received: {name} with shape {w.shape}"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        bad = w[~np.isfinite(w) | (w < 0)][:3]
        raise ValueError(
            f"Argument `{name}` must be finite and >= 0. Received values such as "
            f"{bad.tolist()}"
        )
    if w.sum() <= 0:
        raise ValueError(
            f"Argument `{name}` must not be all zeros. Received: {name}.sum()=0"
        )
    return w

