"""`checklist(model, x, y)`: the pre-flight checks of seed 004, before training."""

import keras
import numpy as np
from keras.src.utils import (
    io_utils,  # print_msg: absl logging when interactive logging is off
)

from keras_tricks.diagnosis import _backend, _common

PASS, WARN = "pass", "warn"


class ChecklistItem:
    """One check: its name, `"pass"` or `"warn"`, the number and the fix.

    Attributes:
        name: str. What was checked.
        status: str. `"pass"` or `"warn"`.
        value: str. The number(s) behind the status.
        fix: str. What to do about a warning (empty when it passed).
    """

    def __init__(self, name, status, value, fix=""):
        self.name, self.status, self.value, self.fix = name, status, value, fix

    def __repr__(self):
        return f"ChecklistItem({self.name!r}, {self.status!r}, {self.value!r})"


class Checklist:
    """The result of `checklist`: a list of `ChecklistItem`s, printable as a table.

    Attributes:
        items: list of `ChecklistItem`.
        passed: bool. True when no item warns.
        warnings: list of `ChecklistItem`. The items that warn.
    """

    def __init__(self, items):
        self.items = list(items)

    @property
    def warnings(self):
        return [item for item in self.items if item.status == WARN]

    @property
    def passed(self):
        return not self.warnings

    def __getitem__(self, name):
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(name)

    def __str__(self):
        rows = [("check", "status", "value")]
        rows += [(i.name, i.status, i.value) for i in self.items]
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        for item in self.warnings:
            lines.append(f"- {item.name}: {item.fix}")
        return "\n".join(lines)


def _inputs_item(x):
    if isinstance(x, (list, tuple, dict)) or not np.issubdtype(np.asarray(x).dtype, np.number):
        return ChecklistItem("inputs standardized", PASS, "not a numeric array: not checked")
    flat = np.asarray(x, dtype="float64").reshape(len(x), -1)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    worst_mean, worst_std = float(np.max(np.abs(mean))), float(np.max(std))
    value = f"max |mean| {worst_mean:.3g}, max std {worst_std:.3g}"
    if worst_mean > 3.0 or worst_std > 5.0:
        return ChecklistItem(
            "inputs standardized", WARN, value,
            "Standardize the inputs (subtract the mean, divide by the std per "
            "feature: keras.layers.Normalization, or scale pixels to [0, 1]).",
        )
    return ChecklistItem("inputs standardized", PASS, value)


def _labels_item(kind, y, max_ratio):
    if kind not in ("sparse", "categorical", "binary") or isinstance(y, (list, tuple, dict)):
        return ChecklistItem("labels balanced", PASS, "not a classification loss: not checked")
    y = np.asarray(y)
    if kind == "sparse":
        counts = np.bincount(y.reshape(-1).astype("int64"))
        counts = counts[counts > 0]
    elif kind == "categorical":
        counts = y.reshape(-1, y.shape[-1]).sum(axis=0)
        counts = counts[counts > 0]
    else:
        positive = float(np.mean(y))
        counts = np.array([positive, 1 - positive]) * len(y)
    ratio = float(counts.max() / max(counts.min(), 1e-12))
    value = f"largest / smallest class {ratio:.3g}"
    if ratio > max_ratio:
        return ChecklistItem(
            "labels balanced", WARN, value,
            "Imbalanced labels: weight the classes or oversample "
            "(keras_tricks.imbalance.class_weights, OversampledDataset) and "
            "initialize the head's bias to the prior "
            "(keras_tricks.imbalance.bias_initializer).",
        )
    return ChecklistItem("labels balanced", PASS, value)


def checklist(model, x, y, sample_size=512, max_class_ratio=3.0, loss_tolerance=0.25,
              verbose=1):
    """Check a compiled model and its data before training (seed 004's checklist).

    Each item passes or warns, with the number behind it and the fix:

    1. *inputs standardized*: per-feature mean and std of a sample of `x`
       (warns above |mean| 3 or std 5);
    2. *labels balanced*: the largest / smallest class count (warns above
       `max_class_ratio`), for cross-entropy losses;
    3. *initial loss ≈ prior's loss*: the loss before training against the
       loss of the best constant prediction (the prior's entropy for
       cross-entropy, the targets' variance for MSE); more than
       `loss_tolerance` above it means a badly initialized head (use
       `keras_tricks.imbalance.bias_initializer`) or too-large initial
       weights;
    4. *gradients finite and non-zero*: for every trainable variable, on the
       sample;
    5. *learning rate tuned*: warns while the optimizer still has its
       class's default LR (run `keras_tricks.find_lr`);
    6. *outputs in float32*: warns when the model's outputs are float16 or
       bfloat16 under a mixed policy (losses should see float32).

    Args:
        model: A compiled Keras model.
        x: Inputs (an array or the structure the model takes).
        y: Targets.
        sample_size: int. Rows used for the loss and gradients. Defaults to
            `512`.
        max_class_ratio: float. Largest / smallest class count allowed.
            Defaults to `3.0`.
        loss_tolerance: float. Relative excess of the initial loss over the
            prior's loss allowed. Defaults to `0.25`.
        verbose: int. 1 prints the table. Defaults to `1`.

    Returns:
        A `Checklist` (`items`, `passed`, `warnings`; `print` it for the
        table).

    Example:

    ```python
    import keras
    from sklearn.datasets import load_digits
    from keras_tricks.diagnosis import checklist

    x, y = load_digits(return_X_y=True)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", loss="sparse_categorical_crossentropy")
    result = checklist(model, x, y)  # warns: inputs not standardized, default LR
    print([item.name for item in result.warnings])
    ```
    """
    if getattr(model, "optimizer", None) is None or getattr(model, "loss", None) is None:
        raise ValueError(
            "Argument `model` must be compiled (with an optimizer and a loss). "
            f"Received: model={model!r}"
        )
    _common.check_int("sample_size", sample_size, 1)
    _common.check_real("max_class_ratio", max_class_ratio, low=1)
    _common.check_real("loss_tolerance", loss_tolerance, low=0)
    kind = _common.loss_kind(model)
    xs, ys = _common.head(x, sample_size), _common.head(y, sample_size)
    items = [_inputs_item(xs), _labels_item(kind, y, max_class_ratio)]

    derivatives = _backend.loss_derivatives(model, xs, ys)
    loss, grads = derivatives.value_and_grad()
    prior = _common.prior_loss(kind, ys)
    if prior is None:
        items.append(ChecklistItem("initial loss ≈ prior's loss", PASS,
                                   f"initial loss {loss:.4g} (no prior for this loss)"))
    else:
        value = f"initial loss {loss:.4g}, prior's loss {prior:.4g}"
        if not np.isfinite(loss) or loss > (1 + loss_tolerance) * prior + 1e-3:
            items.append(ChecklistItem(
                "initial loss ≈ prior's loss", WARN, value,
                "The model starts worse than a constant prediction: initialize the "
                "head's bias to the prior (keras_tricks.imbalance.bias_initializer) "
                "and check the initial weights' scale and the inputs.",
            ))
        else:
            items.append(ChecklistItem("initial loss ≈ prior's loss", PASS, value))

    bad = []
    for variable, g in zip(model.trainable_variables, grads):
        if not np.all(np.isfinite(g)):
            bad.append(f"{variable.path} (not finite)")
        elif not np.any(g):
            bad.append(f"{variable.path} (zero)")
    n_vars = len(grads)
    if bad:
        items.append(ChecklistItem(
            "gradients finite and non-zero", WARN,
            f"{len(bad)} of {n_vars} variables: " + ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else ""),
            "A variable with a zero gradient does not train (a dead ReLU layer, "
            "a frozen branch, an unused output); a non-finite one diverges (check "
            "the inputs for NaN, lower the LR).",
        ))
    else:
        items.append(ChecklistItem("gradients finite and non-zero", PASS,
                                   f"all {n_vars} variables"))

    optimizer = model.optimizer
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    lr = inner.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        items.append(ChecklistItem("learning rate tuned", PASS, f"a schedule ({type(lr).__name__})"))
    else:
        lr = float(keras.ops.convert_to_numpy(lr))
        try:
            default = float(type(inner)().learning_rate)
        except Exception:  # an optimizer that needs arguments: no default known
            default = None
        value = f"learning_rate={lr:.3g}"
        if default is not None and np.isclose(lr, default):
            items.append(ChecklistItem(
                "learning rate tuned", WARN, value + f" ({type(inner).__name__}'s default)",
                "Run an LR range test: keras_tricks.find_lr(model, x, y).suggestion().",
            ))
        else:
            items.append(ChecklistItem("learning rate tuned", PASS, value))

    outputs = model(keras.tree.map_structure(lambda a: a[:2], xs), training=False)
    dtypes = sorted({str(keras.backend.standardize_dtype(o.dtype)) for o in keras.tree.flatten(outputs)})
    low = [d for d in dtypes if d in ("float16", "bfloat16")]
    if low:
        items.append(ChecklistItem(
            "outputs in float32", WARN, f"outputs are {', '.join(dtypes)}",
            "Under a mixed policy give the head dtype='float32' "
            "(keras_tricks.precision.check_outputs(model, fix=True) does it).",
        ))
    else:
        items.append(ChecklistItem("outputs in float32", PASS, f"outputs are {', '.join(dtypes)}"))
    result = Checklist(items)
    if verbose:
        io_utils.print_msg(str(result))
    return result
