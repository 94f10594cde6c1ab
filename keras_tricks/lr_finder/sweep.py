"""The sweep: its schedule, its arguments and `LRFinder`, the callback that runs it.

`LRFinder` is public as `keras_tricks.callbacks.LRFinder`; it is defined here,
in the finder's core, so that `find_lr` uses it without importing
`keras_tricks.callbacks` (which imports this package, never the reverse).
"""

import math
import numbers
import warnings

import keras
import numpy as np
from keras import ops

from keras_tricks import _control
from keras_tricks.lr_finder.result import LRFinderResult
from keras_tricks.lr_finder.rules import diverged_at_start


class _SweepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`start -> end` over `total` optimizer steps counted from `offset`.

    Installed as the control program (`_control.install` and `start`) for the sweep, so
    the LR reaches the compiled step as a function of `iterations` (one trace
    for the whole sweep, nothing done per batch in Python).
    """

    def __init__(self, start_lr, end_lr, total, mode="exp", offset=0):
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)
        self.total = int(total)
        self.mode = mode
        self.offset = int(offset)

    def lr_at(self, index):
        """The LR of sweep step `index` (a Python or numpy number)."""
        frac = np.clip(np.asarray(index, dtype="float64"), 0, self.total - 1)
        frac = frac / max(self.total - 1, 1)
        if self.mode == "exp":
            return self.start_lr * (self.end_lr / self.start_lr) ** frac
        return self.start_lr + (self.end_lr - self.start_lr) * frac

    def __call__(self, step):
        index = ops.subtract(ops.cast(step, "float32"), float(self.offset))
        index = ops.clip(index, 0.0, float(self.total - 1))
        frac = ops.divide(index, float(max(self.total - 1, 1)))
        if self.mode == "exp":
            log_ratio = math.log(self.end_lr / self.start_lr)
            return ops.multiply(self.start_lr, ops.exp(ops.multiply(frac, log_ratio)))
        return ops.add(self.start_lr, ops.multiply(frac, self.end_lr - self.start_lr))

    def get_config(self):
        return {
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "total": self.total,
            "mode": self.mode,
            "offset": self.offset,
        }


def _is_real(value):
    """A real number, NumPy scalars included, never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_sweep_args(start_lr, end_lr, num_steps, mode, beta, diverge_threshold):
    """Raise a clear `ValueError` for any bad sweep argument."""
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if (
            not _is_real(value)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(
                f"Argument `{name}` must be a positive finite number. "
                f"Received: {name}={value!r}"
            )
    if start_lr >= end_lr:
        raise ValueError(
            "Argument `start_lr` must be < end_lr (the sweep goes upwards). "
            f"Received: start_lr={start_lr}, end_lr={end_lr}"
        )
    if (
        isinstance(num_steps, bool)
        or not isinstance(num_steps, numbers.Integral)
        or num_steps < 2
    ):
        raise ValueError(
            f"Argument `num_steps` must be an int >= 2. Received: num_steps={num_steps!r}"
        )
    if mode not in ("exp", "linear"):
        raise ValueError(
            f'Argument `mode` must be "exp" or "linear". Received: mode={mode!r}'
        )
    if not _is_real(beta) or not 0.0 <= beta < 1.0:
        raise ValueError(f"Argument `beta` must be in [0, 1). Received: beta={beta!r}")
    if (
        not _is_real(diverge_threshold)
        or not math.isfinite(diverge_threshold)
        or diverge_threshold <= 1.0
    ):
        raise ValueError(
            "Argument `diverge_threshold` must be a number > 1. "
            f"Received: diverge_threshold={diverge_threshold!r}"
        )


def batches_per_execution(model):
    """The model's `steps_per_execution` as an int (1 when not a fixed int)."""
    value = getattr(model, "steps_per_execution", 1)
    return value if isinstance(value, int) and value > 1 else 1


@keras.saving.register_keras_serializable(package="keras_tricks")
class LRFinder(keras.callbacks.Callback):
    """LR range test inside `model.fit`; stops training when done.

    At `on_train_begin` it saves the model's and the optimizer's state and
    installs a sweep schedule `start_lr -> end_lr` (exponential or linear) on
    the optimizer's step, so the LR changes inside the compiled train step (one
    retrace for the sweep). After every batch it records the LR and the loss of
    that batch, smooths the loss with a bias-corrected EMA, and sets
    `model.stop_training` when the sweep is complete or the smoothed loss
    exceeds `diverge_threshold` times its best (or is not finite). At
    `on_train_end` it restores the weights, the optimizer's variables and its LR
    settings, and rebuilds the train function (when `restore=True`) and exposes the
    curve as `.result`, an :class:`keras_tricks.lr_finder.LRFinderResult`.

    The loss of each batch: Keras's `logs["loss"]` is the running mean since
    the epoch began, so the callback resets the model's metrics before every
    batch (see `on_train_batch_begin`). Other metrics in the logs of this
    `fit` are therefore per batch too. This is a per-batch hook: on JAX each
    batch syncs the training state (a few hundred batches, so it is cheap).

    With `steps_per_execution=k`, Keras calls the callbacks every `k` batches:
    each point is then one execution (the mean loss of its `k` batches, at
    their geometric-mean LR) and the sweep runs `num_steps * k` batches. Give
    `fit` enough batches (`epochs * steps`) for the whole sweep; if it ends
    early, `.result.stop_reason` is `"data"`. :func:`keras_tricks.find_lr`
    does all of this for you.

    Args:
        start_lr: float. The first LR. Defaults to 1e-7.
        end_lr: float. The last LR. Defaults to 10.0.
        num_steps: int. Points of the sweep. Defaults to 100.
        mode: str. `"exp"` or `"linear"`. Defaults to `"exp"`.
        beta: float. EMA factor of the smoothing. Defaults to 0.98.
        diverge_threshold: float. Stop when the smoothed loss exceeds this
            times the best so far (the first 10% of the points do not count
            as the best). A sweep of 20 points or more in which every loss
            after the first exceeds this times the first one (it starts too
            high) also counts as diverged. Defaults to 4.0.
        restore: bool. Put the model and optimizer back as they were when
            training ends. Defaults to True.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_tricks.callbacks import LRFinder

    x = np.random.rand(512, 8).astype("float32")
    y = (x.sum(axis=1) > 4).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, "sigmoid")])
    model.compile(keras.optimizers.Adam(), "binary_crossentropy")
    finder = LRFinder(start_lr=1e-6, end_lr=1.0, num_steps=64)
    model.fit(x, y, batch_size=32, epochs=10, callbacks=[finder], verbose=0)
    print(finder.result, finder.result.suggestion())
    ```
    """

    def __init__(
        self,
        start_lr=1e-7,
        end_lr=10.0,
        num_steps=100,
        mode="exp",
        beta=0.98,
        diverge_threshold=4.0,
        restore=True,
    ):
        super().__init__()
        validate_sweep_args(start_lr, end_lr, num_steps, mode, beta, diverge_threshold)
        # Python numbers in the config (NumPy scalars do not serialize).
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)
        self.num_steps = int(num_steps)
        self.mode = mode
        self.beta = float(beta)
        self.diverge_threshold = float(diverge_threshold)
        self.restore_state = bool(restore)
        self.result = None
        self._saved = None
        # `find_lr` warns from its own frame (pointing at the caller).
        self._warn_no_descent = True

    def get_config(self):
        return {
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "num_steps": self.num_steps,
            "mode": self.mode,
            "beta": self.beta,
            "diverge_threshold": self.diverge_threshold,
            "restore": self.restore_state,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- state ------------------------------------------------------------

    def _save(self, model):
        optimizer = model.optimizer

        def copy(variables):
            # A copy, not a view: on torch CPU `convert_to_numpy` shares memory.
            return [
                (v, np.array(ops.convert_to_numpy(v.value), copy=True))
                for v in variables
            ]

        self._saved = {
            "model": copy(model.variables),
            "optimizer": copy(optimizer.variables),
            "control": _control.snapshot(optimizer),
        }

    def restore(self):
        """Put back what `on_train_begin` saved; does nothing the second time."""
        saved, self._saved = self._saved, None
        if saved is None:
            return
        for variable, value in saved["model"] + saved["optimizer"]:
            variable.assign(value)
        # The control variables came back with the optimizer's; the sweep's
        # program stays traced, switched off: nothing retraces.
        _control.restore(saved["control"])

    # -- hooks --------------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "LRFinder needs a compiled model: call `model.compile(optimizer, "
                "loss)` before `fit`. Received: a model without an optimizer."
            )
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        self.result = None
        self._lrs, self._losses, self._smoothed = [], [], []
        self._avg, self._best = 0.0, math.inf
        self._points = 0
        self._stop_reason = None
        self._execution = batches_per_execution(model)
        _control.take_control(optimizer, model)
        if self.restore_state:
            self._save(model)
        self._schedule = _SweepSchedule(
            self.start_lr,
            self.end_lr,
            self.num_steps * self._execution,
            self.mode,
        )
        # The sweep owns the LR: no momentum function, scale 1 (the LR
        # variable set to the sweep's peak), from this step on.
        _control.lease(optimizer, self)
        # The program sees the step shifted by the origin already.
        sweep = _SweepSchedule(
            self.start_lr, self.end_lr, self._schedule.total, self.mode
        )
        program = _control.Program(
            sweep,
            peak=self.end_lr,
            key=("LRFinder", self.start_lr, self.end_lr, self._schedule.total, self.mode),
        )
        _control.install(model, program)
        self._schedule.offset = _control.iterations(optimizer)
        _control.start(optimizer, self._schedule.offset, lr_on=True, scale=1.0)
        self._last_step = self._schedule.offset

    def on_train_batch_begin(self, batch, logs=None):
        # Keras's loss tracker is a Mean weighted by sample count that runs
        # over the epoch. Recovering a batch's loss from two consecutive
        # running means needs the batch sizes and loses precision as the sums
        # grow (float32 totals); resetting the metrics before each batch makes
        # `logs["loss"]` exactly this batch's (or this execution's) loss, for
        # any batch size and on every backend. It costs a state sync on JAX,
        # which a per-batch LR finder pays anyway to read the step.
        self.model.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        if self._stop_reason is not None:
            return
        logs = logs if logs is not None else {}
        if "loss" not in logs:
            raise ValueError(
                "LRFinder needs the training loss in the batch logs. Received "
                f"logs with keys {sorted(logs)}."
            )
        loss = float(ops.convert_to_numpy(logs["loss"]))
        step = _control.iterations(self.model.optimizer)
        first = self._last_step - self._schedule.offset
        last = max(step - self._schedule.offset, first + 1) - 1
        self._last_step = step
        # The batches of this execution ran at sweep indices first..last; the
        # LR at their middle index is their geometric (exp) or arithmetic
        # (linear) mean LR. With one batch per execution it is that batch's LR.
        lr = float(self._schedule.lr_at((first + last) / 2))
        n = len(self._losses) + 1
        self._avg = self.beta * self._avg + (1.0 - self.beta) * loss
        smoothed = self._avg / (1.0 - self.beta**n)
        self._lrs.append(lr)
        self._losses.append(loss)
        self._smoothed.append(smoothed)
        logs["lr"] = lr
        # The first 10% of the planned points (the ones the suggestions skip)
        # neither set the best loss nor trigger divergence: an EMA over a few
        # noisy batches (a model that is already trained has small, noisy
        # losses) can jump 4x by chance at the very bottom of the sweep.
        # Counted in sweep points (distinct LRs), not batches: under gradient
        # accumulation each LR is recorded once per micro-batch.
        if n == 1 or lr != self._lrs[-2]:
            self._points += 1
        warm_up = max(1, self.num_steps // 10)
        warming_up = self._points <= warm_up
        if not math.isfinite(smoothed):
            self._stop_reason = "diverged"
        elif not warming_up and smoothed > self.diverge_threshold * self._best:
            self._stop_reason = "diverged"
        else:
            if not warming_up:
                self._best = min(self._best, smoothed)
            if step - self._schedule.offset >= self._schedule.total:
                self._stop_reason = "completed"
        if self._stop_reason is not None:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.result = LRFinderResult(
            self._lrs,
            self._losses,
            smoothed_losses=self._smoothed,
            num_steps=self.num_steps,
            beta=self.beta,
            stop_reason=self._stop_reason or "data",
        )
        if self.result.stop_reason == "completed" and diverged_at_start(
            self._losses, self.diverge_threshold
        ):
            # The warm-up cannot set the best loss, so a sweep that starts
            # too high (the loss shoots up at once and stays up) never trips
            # the running test: it is told from the whole curve.
            self.result.stop_reason = "diverged"
        if self.restore_state:
            self.restore()
        else:
            # The weights stay as the sweep left them; the LR goes back.
            _control.release(self.model.optimizer)
        if (
            self._warn_no_descent
            and self.result.stop_reason != "data"
            and not self.result.descended
        ):
            warnings.warn(self.result._no_descent_message(), stacklevel=2)
