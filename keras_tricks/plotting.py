"""Plot helpers. matplotlib is an optional extra, imported only when a plot is drawn."""

import numpy as np


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - exercised without matplotlib
        raise ImportError(
            "Plotting needs matplotlib. Install it with "
            "`pip install keras-tricks[plot]` (or `pip install matplotlib`)."
        ) from error
    return plt


def plot_schedule(schedule, steps, ax=None):
    """Draw a learning-rate schedule (and its momentum, if any) against the step.

    The schedule is evaluated once on the whole array of steps (schedules of
    this package are vectorized). When the schedule has a momentum
    (`schedule.has_momentum`), the momentum is drawn on a second y axis at the
    right.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule` (or any
            callable mapping an array of steps to learning rates).
        steps: int or array-like. An int `n` plots steps `0 .. n - 1`; an
            array gives the steps to evaluate.
        ax: matplotlib `Axes` or None. Where to draw; a new figure when None.

    Returns:
        The matplotlib `Axes` holding the LR curve (the momentum's twin axes is
        `ax.right_ax` when there is one).

    Raises:
        ImportError: when matplotlib is not installed.

    Example:

    ```python
    from keras_tricks.schedules import OneCycle, plot_schedule

    ax = plot_schedule(OneCycle(max_lr=0.1, total_steps=1000), 1200)
    ax.figure.savefig("one_cycle.png")
    ```
    """
    plt = _pyplot()
    from keras import ops

    if np.ndim(steps) == 0:
        steps = np.arange(int(steps))
    steps = np.asarray(steps)
    lr = np.asarray(ops.convert_to_numpy(schedule(steps)), dtype="float64")
    lr = np.broadcast_to(lr, steps.shape)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, lr, color="tab:blue", label="learning rate")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate", color="tab:blue")
    ax.set_title(type(schedule).__name__)
    ax.grid(alpha=0.3)
    if getattr(schedule, "has_momentum", False):
        momentum = np.asarray(
            ops.convert_to_numpy(schedule.momentum(steps)), dtype="float64"
        )
        right = ax.twinx()
        right.plot(steps, momentum, color="tab:orange", ls="--", label="momentum")
        right.set_ylabel("momentum", color="tab:orange")
        ax.right_ax = right
    return ax
