"""`find_lr`: the whole LR range test in one call."""

import collections.abc
import warnings

import keras

from keras_tricks.lr_finder.rules import _MIN_POINTS, diverged_at_start
from keras_tricks.lr_finder.sweep import (
    LRFinder,
    batches_per_execution,
    validate_sweep_args,
)


def find_lr(
    model,
    x,
    y=None,
    batch_size=None,
    start_lr=1e-7,
    end_lr=10.0,
    num_steps=100,
    mode="exp",
    beta=0.98,
    diverge_threshold=4.0,
    sample_weight=None,
    **fit_kwargs,
):
    """Run an LR range test on a compiled model; leave the model as it was.

    Trains for `num_steps` points while the learning rate grows from
    `start_lr` to `end_lr`, records the loss of every batch (not Keras's
    running epoch mean), smooths it with a bias-corrected EMA, and stops early
    when the smoothed loss exceeds `diverge_threshold` times its best or turns
    non-finite. The LR is a schedule of the optimizer's step installed for the
    sweep (one retrace, nothing recompiled per batch). Afterwards the model's
    weights, the optimizer's variables (`iterations` included), its LR (and
    any schedule or scale installed by this package's callbacks) are exactly
    what they were before; the train function is rebuilt (one more trace at
    the next `fit`).

    Data: numpy arrays, a `tf.data.Dataset`, a `keras.utils.PyDataset` and
    other re-iterable inputs are repeated (epoch after epoch) until the sweep
    is done; a one-shot Python generator (any iterator) must yield enough
    batches, or a clear error is raised. With `steps_per_execution=k` set in
    `compile`, Keras hands the callbacks a loss every `k` batches: each point
    is then one execution of `k` batches (their mean loss, at their
    geometric-mean LR), and the sweep runs `num_steps * k` batches.

    Args:
        model: A compiled `keras.Model`.
        x: Input data, as for `model.fit`.
        y: Targets, as for `model.fit` (None for datasets and generators).
        batch_size: int or None. As for `model.fit` (array inputs only).
        start_lr: float. The first LR. Defaults to 1e-7.
        end_lr: float. The last LR. Defaults to 10.0.
        num_steps: int. Number of points (batches) of the sweep. Defaults to
            100.
        mode: str. `"exp"` (LR grows geometrically; fastai's default) or
            `"linear"` (Smith's original). Defaults to `"exp"`.
        beta: float. EMA factor of the loss smoothing. Defaults to 0.98.
        diverge_threshold: float. Stop when the smoothed loss exceeds this
            times the best smoothed loss so far (the first 10% of the points
            do not count as the best). A sweep in which every loss after the
            first exceeds this times the first one (it starts too high)
            raises, as a divergence. Defaults to 4.0.
        sample_weight: As for `model.fit`.
        **fit_kwargs: Passed to `model.fit` (e.g. `class_weight`, `shuffle`,
            `verbose`); `epochs`, `initial_epoch`, `steps_per_epoch` and
            validation arguments are managed by the sweep.

    Returns:
        An :class:`LRFinderResult`.

    Raises:
        ValueError: model not compiled; bad arguments (`start_lr >= end_lr`,
            ...); the data ran out before the sweep ended; the loss diverged
            at once (with a suggested lower `start_lr`).

    Example:

    ```python
    import numpy as np
    import keras
    import keras_tricks

    x = np.random.rand(512, 8).astype("float32")
    y = (x.sum(axis=1) > 4).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, "sigmoid")])
    model.compile(keras.optimizers.Adam(), "binary_crossentropy")
    result = keras_tricks.find_lr(model, x, y, batch_size=32, num_steps=80)
    print(result)
    lr = result.suggestion()          # chain; also "valley", "steep", "minimum"
    result.plot(methods=("chain", "valley"))
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` must be a keras.Model. Received: {type(model).__name__}"
        )
    if getattr(model, "optimizer", None) is None or not getattr(
        model, "compiled", False
    ):
        raise ValueError(
            "find_lr needs a compiled model: call `model.compile(optimizer, loss)` "
            "first. Received: a model that is not compiled."
        )
    validate_sweep_args(start_lr, end_lr, num_steps, mode, beta, diverge_threshold)
    managed = {
        "epochs",
        "initial_epoch",
        "steps_per_epoch",
        "validation_data",
        "validation_split",
        "validation_steps",
        "validation_freq",
        "validation_batch_size",
    }
    clash = sorted(managed.intersection(fit_kwargs))
    if clash:
        raise ValueError(
            f"find_lr manages the fit arguments {clash} itself. "
            f"Received: {', '.join(f'{k}={fit_kwargs[k]!r}' for k in clash)}"
        )
    user_callbacks = list(fit_kwargs.pop("callbacks", None) or [])
    fit_kwargs.setdefault("verbose", 0)

    finder = LRFinder(
        start_lr=start_lr,
        end_lr=end_lr,
        num_steps=num_steps,
        mode=mode,
        beta=beta,
        diverge_threshold=diverge_threshold,
        restore=True,
    )
    finder._warn_no_descent = False
    one_shot = isinstance(x, collections.abc.Iterator)
    if one_shot:
        epochs = 1
    else:
        # Enough epochs for the sweep even at one batch an epoch; the finder
        # stops training as soon as the LR schedule has run its course.
        epochs = 4 * num_steps * batches_per_execution(model) + 10
    try:
        with warnings.catch_warnings():
            # A one-shot generator that runs short makes Keras warn; the clear
            # error below says the same with the numbers.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            model.fit(
                x,
                y,
                batch_size=batch_size,
                sample_weight=sample_weight,
                epochs=epochs,
                callbacks=[finder, *user_callbacks],
                **fit_kwargs,
            )
    finally:
        # Normally done in on_train_end; also after an exception inside fit.
        finder.restore()
    result = finder.result
    if result is None:
        raise ValueError("The LR range test did not run: the data gave no batch.")
    if result.stop_reason == "data":
        raise ValueError(
            f"The data ran out after {len(result.lrs)} of the {num_steps} points "
            "the sweep needs. A one-shot generator is not repeated: pass one that "
            "yields enough batches (or never ends), pass re-iterable data (arrays, "
            "tf.data.Dataset, PyDataset), or lower `num_steps`. "
            f"Received: num_steps={num_steps}"
        )
    if result.stop_reason == "diverged":
        skip, stop = result._usable()
        if stop - skip < _MIN_POINTS:
            raise ValueError(result._too_few_points_message(skip, stop))
        if diverged_at_start(result.losses, diverge_threshold):
            raise ValueError(
                "The loss diverged at the first update of the LR range test: "
                f"every batch after the first lost more than {diverge_threshold}x "
                f"the first one ({result.losses[0]:.4g}), so the sweep starts too "
                f"high. Use a lower `start_lr` (e.g. start_lr="
                f"{result.lrs[0] / 1000:.1e}). Received: start_lr={start_lr}"
            )
    if not result.descended:
        warnings.warn(result._no_descent_message(), stacklevel=2)
    return result
