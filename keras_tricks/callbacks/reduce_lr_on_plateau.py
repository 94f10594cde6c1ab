"""A drop-in `ReduceLROnPlateau` that also works on top of any LR schedule."""

import math

import keras

from keras_tricks import _control
from keras_tricks.callbacks import _monitor


def log_learning_rates(model, logs):
    """Write the current LR(s) into ``logs`` the way Keras's callback does.

    Returns what it read, ``{id(base optimizer): lr}``, for
    `reduce_learning_rate` at the same epoch end (each read costs a few
    host transfers)."""
    optimizer = model.optimizer
    if optimizer is None or logs is None:
        return {}
    read = {}
    nested = getattr(optimizer, "optimizers", None)
    if isinstance(nested, (list, tuple)) and nested:
        named = [(f"learning_rate_{opt.name}", opt) for opt in nested]
    else:
        named = [("learning_rate", optimizer)]
    for key, opt in named:
        bases = _control.base_optimizers(opt)
        lr = _control.current_lr(opt, host=True)
        logs[key] = lr
        if bases:
            read[id(bases[0])] = lr
    return read


def reduce_learning_rate(model, factor, min_lr, known=None):
    """Multiply the model's LR by ``factor``, not below ``min_lr``.

    Whatever drives the LR, the reduction is run-time state that the compiled
    step reads (nothing retraces) and that checkpoints keep (see
    `keras_tricks._control`): a plain LR variable is assigned, as Keras does;
    a schedule installed by a callback is scaled through the optimizer's LR
    variable; a schedule the optimizer was created with is scaled too.
    ``min_lr`` bounds the LR at the moment of the reduction. Returns
    ``[(optimizer, new_lr), ...]`` for the optimizers that changed.
    ``known``: what `log_learning_rates` read at this epoch end.
    """
    optimizer = model.optimizer
    if not _control.base_optimizers(optimizer):
        raise ValueError("The model has no optimizer. Compile the model before `fit`.")
    return _control.multiply_lr(optimizer, factor, min_lr, model=model, known=known)


@keras.saving.register_keras_serializable(package="keras_tricks")
class ReduceLROnPlateau(_monitor.MonitorCallback):
    """Reduce the learning rate when a metric has stopped improving.

    A drop-in superset of `keras.callbacks.ReduceLROnPlateau`: the same
    arguments, defaults and decisions (the LR drops at the end of the
    `patience`-th epoch without an improvement larger than `min_delta`, then
    `cooldown` epochs pass before counting again; `logs["learning_rate"]`
    holds the LR of the epoch that just ended). In addition:

    * it works on top of any LR schedule (Keras raises `TypeError`): the
      schedule's output is multiplied by a scale, so a cosine decay keeps its
      shape and is lowered by `factor` at each plateau;
    * `min_delta_mode="rel"` makes `min_delta` a fraction of the best value
      (torch's `threshold_mode="rel"`);
    * `smoothing` compares a bias-corrected EMA of the monitored value
      instead of the raw value, which filters a noisy validation loss;
    * its decisions survive an interruption with
      `keras_tricks.callbacks.BackupAndRestore`.

    Without a schedule the optimizer's LR variable is assigned, like Keras
    does, under a `LossScaleOptimizer` (`mixed_float16`) and for each
    optimizer of a multi-optimizer too.

    Args:
        monitor: String. Quantity to be monitored. Defaults to `"val_loss"`.
        factor: Float in (0, 1). `new_lr = lr * factor`. Defaults to `0.1`.
        patience: Integer. Epochs without improvement after which the LR is
            reduced. Defaults to `10`.
        verbose: Integer. 0: quiet, 1: a message at each reduction.
            Defaults to `0`.
        mode: String. `"auto"`, `"min"` or `"max"`. Defaults to `"auto"`.
        min_delta: Float. Margin that counts as an improvement. Defaults to
            `1e-4`.
        cooldown: Integer. Epochs to wait after a reduction before counting
            bad epochs again. Defaults to `0`.
        min_lr: Float. Lower bound on the learning rate. Defaults to `0.0`.
        min_delta_mode: String. `"abs"` (Keras) or `"rel"` (a fraction of the
            best value). Defaults to `"abs"`.
        smoothing: Float in [0, 1). EMA coefficient for the monitored value;
            `0` compares raw values (Keras). Defaults to `0.0`.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_tricks.callbacks import ReduceLROnPlateau

    schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=1000)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(schedule), loss="mse")
    reduce_lr = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2)
    model.fit(np.ones((32, 4)), np.zeros((32, 1)), epochs=5,
              callbacks=[reduce_lr], verbose=0)
    ```
    """

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
        min_delta_mode="abs",
        smoothing=0.0,
        **kwargs,
    ):
        # Keras accepts and ignores extra keyword arguments (`epsilon` of
        # Keras 2); refusing them would break a swapped import.
        super().__init__(
            monitor, mode, min_delta=min_delta, min_delta_mode=min_delta_mode
        )
        if not _monitor._is_real(factor) or not 0.0 < factor < 1.0:
            raise ValueError(
                "ReduceLROnPlateau does not support a factor >= 1.0 (or <= 0). "
                f"Argument `factor` must be in (0, 1). Received: factor={factor!r}"
            )
        patience = _monitor._check_int("patience", patience)
        cooldown = _monitor._check_int("cooldown", cooldown)
        min_lr = _monitor._check_number("min_lr", min_lr, low=0)
        _monitor._check_number("smoothing", smoothing, low=0, high=1, high_open=True)
        self.factor = float(factor)
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.smoothing = float(smoothing)
        self.cooldown_counter = 0
        self.wait = 0
        self._ema = 0.0
        self._ema_count = 0

    def get_config(self):
        return {
            "monitor": self.monitor,
            "factor": self.factor,
            "patience": self.patience,
            "verbose": self.verbose,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
            "min_delta_mode": self.min_delta_mode,
            "smoothing": self.smoothing,
        }

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0
        self._ema = 0.0
        self._ema_count = 0
        self._reset_monitor()

    def on_train_begin(self, logs=None):
        self._reset()
        # Under control before the first trace: a later reduction of a
        # schedule then retraces nothing.
        if getattr(self.model, "optimizer", None) is not None:
            _control.take_control(self.model.optimizer, self.model)

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _smoothed(self, value):
        if self.smoothing == 0.0:
            return value
        self._ema = self.smoothing * self._ema + (1.0 - self.smoothing) * value
        self._ema_count += 1
        return self._ema / (1.0 - self.smoothing**self._ema_count)

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        if self.monitor_op is None:
            self._set_monitor_op()
        if logs is None:
            logs = {}
        known = log_learning_rates(model, logs)
        current = self.get_monitor_value(logs)
        if current is None:
            return
        if not math.isfinite(current):
            # A NaN compares false with everything: count it as a bad epoch,
            # and keep it out of the EMA.
            improved = False
        else:
            current = self._smoothed(current)
            improved = None
        weights_changed = False
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if improved is None and self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                changed = reduce_learning_rate(
                    model, self.factor, self.min_lr, known=known
                )
                if changed:
                    weights_changed = True
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
                    if self.verbose > 0:
                        for opt, new_lr in changed:
                            name = f" {opt.name}" if len(changed) > 1 else ""
                            _monitor.print_msg(
                                f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing"
                                f"{name} learning rate to {new_lr}."
                            )
        self._notify_backup(weights_changed)

    def get_state(self):
        state = super().get_state()
        state.update(
            wait=self.wait,
            cooldown_counter=self.cooldown_counter,
            ema=self._ema,
            ema_count=self._ema_count,
        )
        return state

    def set_state(self, state):
        super().set_state(state)
        self.wait = int(state.get("wait", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        self._ema = float(state.get("ema", 0.0))
        self._ema_count = int(state.get("ema_count", 0))
