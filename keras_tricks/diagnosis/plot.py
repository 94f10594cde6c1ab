"""`plot_history`: learning curves with the diagnosis drawn on them. matplotlib, lazy."""

import numpy as np

_LR_KEYS = ("lr", "learning_rate")


def _as_dict(history):
    data = getattr(history, "history", history)
    if not isinstance(data, dict) or "loss" not in data:
        raise ValueError(
            "Argument `history` must be a keras History (or its `.history` dict) "
            f"with a 'loss' entry. Received: history={history!r}"
        )
    return data


def plot_history(history, report=None, metric=None, log_scale=False, axes=None):
    """Draw the learning curves of a run, with its diagnosis on them.

    Left: the training and validation loss (the LR on a second axis when the
    history logged `lr` or `learning_rate`). Right: one metric (`metric`, or
    the first logged one that is not a loss or the LR), train and validation.
    With a `DiagnosisReport`, its verdict is the title and its epoch (where
    the train/validation gap opens, where the loss diverges) a vertical line.

    Args:
        history: A `keras.callbacks.History` (what `fit` returns) or its
            `.history` dict.
        report: A `DiagnosisReport` (`TrainingDiagnosis(...).report`) or
            None. Defaults to `None`.
        metric: str or None. The metric of the right panel; None picks the
            first. Defaults to `None`.
        log_scale: bool. A log-scale loss axis. Defaults to `False`.
        axes: A pair of matplotlib `Axes`, or None for a new figure.
            Defaults to `None`.

    Returns:
        The pair of matplotlib `Axes` (the right one is None without a
        metric).

    Raises:
        ImportError: when matplotlib is not installed.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_tricks.diagnosis import TrainingDiagnosis, plot_history

    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    diagnosis = TrainingDiagnosis(probe_data=(x, y), verbose=0)
    history = model.fit(x, y, epochs=5, validation_split=0.25,
                        callbacks=[diagnosis], verbose=0)
    left, right = plot_history(history, diagnosis.report)
    left.figure.savefig("history.png")
    ```
    """
    from keras_tricks.plotting import _pyplot

    data = _as_dict(history)
    plt = _pyplot()
    if metric is None:
        candidates = [
            k for k in data
            if not k.startswith("val_") and "loss" not in k
            and k not in _LR_KEYS and k != "diagnosis"
        ]
        metric = candidates[0] if candidates else None
    elif metric not in data:
        raise ValueError(
            f"Argument `metric` must be a key of the history {sorted(data)}. "
            f"Received: metric={metric!r}"
        )
    if axes is None:
        ncols = 2 if metric else 1
        fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 3.8), squeeze=False)
        axes = list(axes[0]) + [None] * (2 - ncols)
    left, right = axes
    epochs = np.arange(len(data["loss"]))
    left.plot(epochs, data["loss"], color="tab:blue", label="train loss")
    if "val_loss" in data:
        left.plot(epochs, data["val_loss"], color="tab:orange", label="validation loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    if log_scale:
        left.set_yscale("log")
    left.grid(alpha=0.3)
    lr_key = next((k for k in _LR_KEYS if k in data), None)
    if lr_key:
        twin = left.twinx()
        twin.plot(epochs, data[lr_key], color="tab:gray", ls=":", label="learning rate")
        twin.set_ylabel("learning rate", color="tab:gray")
        left.lr_ax = twin
    if report is not None:
        left.set_title(report.title)
        if report.epoch is not None:
            for ax in (left, right):
                if ax is not None:
                    ax.axvline(report.epoch, color="tab:red", ls="--", alpha=0.7,
                               label=f"epoch {report.epoch}")
    left.legend(loc="best", fontsize=8)
    if right is not None and metric:
        right.plot(epochs, data[metric], color="tab:blue", label=f"train {metric}")
        if f"val_{metric}" in data:
            right.plot(epochs, data[f"val_{metric}"], color="tab:orange",
                       label=f"validation {metric}")
        right.set_xlabel("epoch")
        right.set_ylabel(metric)
        right.grid(alpha=0.3)
        right.legend(loc="best", fontsize=8)
    return left, right
