"""Helpers shared by the diagnosis tools: the loss's kind and the prior's loss."""

import numbers

import numpy as np


def check_real(name, value, low=None, high=None, allow_none=False):
    if value is None and allow_none:
        return
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real)
    bad = bad or not np.isfinite(value)
    bad = bad or (low is not None and value <= low) or (high is not None and value >= high)
    if bad:
        parts = [f"> {low}" if low is not None else "", f"< {high}" if high is not None else ""]
        expected = " and ".join(p for p in parts if p) or "finite"
        raise ValueError(
            f"Argument `{name}` must be a number {expected}. Received: {name}={value!r}"
        )


def check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {low}. Received: {name}={value!r}"
        )


def loss_kind(model):
    """`"sparse"`, `"categorical"`, `"binary"`, `"mse"`, `"mae"` or None."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, (list, tuple, dict)) or loss is None:
        return None
    if isinstance(loss, str):
        name = loss
    else:
        name = getattr(loss, "name", None) or getattr(loss, "__name__", "")
        name = f"{name} {type(loss).__name__}"
    name = name.lower()
    if "sparse_categorical" in name or "sparsecategorical" in name:
        return "sparse"
    if "categorical_crossentropy" in name or "categoricalcrossentropy" in name:
        return "categorical"
    if "binary_crossentropy" in name or "binarycrossentropy" in name:
        return "binary"
    if name.split()[0] in ("mse", "mean_squared_error") or "meansquarederror" in name:
        return "mse"
    if name.split()[0] in ("mae", "mean_absolute_error") or "meanabsoluteerror" in name:
        return "mae"
    return None


def prior_loss(kind, y):
    """The loss of the best constant prediction (the label prior), or None.

    Cross-entropy: the prior's entropy (`-sum p_k log p_k`; the binary
    entropy per column); MSE: the variance of the targets; MAE: the mean
    absolute deviation from the median.
    """
    if kind is None or y is None or isinstance(y, (list, tuple, dict)):
        return None
    y = np.asarray(y, dtype="float64")
    if kind == "sparse":
        _, counts = np.unique(y.reshape(-1).astype("int64"), return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log(p)).sum())
    if kind == "categorical":
        p = y.reshape(-1, y.shape[-1]).mean(axis=0)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())
    if kind == "binary":
        p = np.clip(y.reshape(len(y), -1).mean(axis=0), 1e-12, 1 - 1e-12)
        return float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))
    if kind == "mse":
        return float(np.mean(y.reshape(len(y), -1).var(axis=0)))
    if kind == "mae":
        flat = y.reshape(len(y), -1)
        return float(np.mean(np.abs(flat - np.median(flat, axis=0))))
    return None


def head(data, n):
    """The first `n` rows of an array or of every array in a structure."""
    import keras

    return keras.tree.map_structure(lambda a: np.asarray(a)[:n], data)
