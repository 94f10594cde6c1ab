"""A drop-in `EarlyStopping` with stop reasons, thresholds and a NaN guard."""

import math

import keras

from keras_tricks.callbacks import _monitor

NON_FINITE = "non_finite"
STOPPING_THRESHOLD = "stopping_threshold"
DIVERGENCE_THRESHOLD = "divergence_threshold"
PATIENCE = "patience"


@keras.saving.register_keras_serializable(package="keras_tricks")
class EarlyStopping(_monitor.MonitorCallback):
    """Stop training when a monitored metric has stopped improving.

    A drop-in superset of `keras.callbacks.EarlyStopping`: the same arguments,
    defaults and decisions (an epoch counts as an improvement when it beats
    the best by more than `min_delta`; training stops once `patience` epochs
    have passed without one; `baseline` must be beaten to reset the wait;
    nothing is watched before `start_from_epoch`; with
    `restore_best_weights=True` the best weights are restored at the end of
    training, whether it stopped early or ran all its epochs). In addition,
    after PyTorch Lightning's `EarlyStopping`, and checked in this order:

    1. `check_finite`: a NaN or infinite monitored value stops at once;
    2. `stopping_threshold`: stop as soon as the value is better than it
       (the goal is reached);
    3. `divergence_threshold`: stop as soon as the value is worse than it
       (training is lost);
    4. `patience`, as in Keras.

    The reason is kept in `stop_reason` (`"non_finite"`,
    `"stopping_threshold"`, `"divergence_threshold"`, `"patience"` or `None`)
    with a sentence in `stop_message`, printed when `verbose=1`.
    `min_delta_mode="rel"` makes `min_delta` a fraction of the best value.
    The decisions survive an interruption with
    `keras_tricks.callbacks.BackupAndRestore` (the best weights too).

    Memory: like Keras's, with `restore_best_weights=True` the callback keeps
    one full copy of the weights in host memory, taken at each improvement
    (`model.get_weights()`): for a large model on an accelerator that is a
    device-to-host copy of every weight at every improving epoch.

    Args:
        monitor: String. Quantity to be monitored. Defaults to `"val_loss"`.
        min_delta: Float. Minimum change that counts as an improvement.
            Defaults to `0`.
        patience: Integer. Epochs without improvement after which training
            stops. Defaults to `0`.
        verbose: Integer. 0: silent; 1: say when and why it stops.
            Defaults to `0`.
        mode: String. `"auto"`, `"min"` or `"max"`. Defaults to `"auto"`.
        baseline: Float or None. A value to beat; the wait is only reset by
            an epoch that beats it. Defaults to `None`.
        restore_best_weights: Boolean. Restore the weights of the best epoch
            at the end of training. Defaults to `False`.
        start_from_epoch: Integer. Epochs to wait before watching (the
            non-finite check runs from the first epoch). Defaults to `0`.
        check_finite: Boolean. Stop at once on a NaN or infinite monitored
            value. Defaults to `True`.
        stopping_threshold: Float or None. Stop once the value is better
            than this. Defaults to `None`.
        divergence_threshold: Float or None. Stop once the value is worse
            than this. Defaults to `None`.
        min_delta_mode: String. `"abs"` (Keras) or `"rel"`. Defaults to
            `"abs"`.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_tricks.callbacks import EarlyStopping

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", loss="mse")
    stopper = EarlyStopping(monitor="loss", patience=2, stopping_threshold=1e-3,
                            restore_best_weights=True)
    model.fit(np.ones((32, 4)), np.ones((32, 1)), epochs=50,
              callbacks=[stopper], verbose=0)
    print(stopper.stop_reason, stopper.stop_message)
    ```
    """

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
        check_finite=True,
        stopping_threshold=None,
        divergence_threshold=None,
        min_delta_mode="abs",
    ):
        super().__init__(
            monitor,
            mode,
            min_delta=min_delta,
            min_delta_mode=min_delta_mode,
            baseline=baseline,
        )
        patience = _monitor._check_int("patience", patience)
        start_from_epoch = _monitor._check_int("start_from_epoch", start_from_epoch)
        if stopping_threshold is not None:
            stopping_threshold = _monitor._check_number(
                "stopping_threshold", stopping_threshold
            )
        if divergence_threshold is not None:
            divergence_threshold = _monitor._check_number(
                "divergence_threshold", divergence_threshold
            )
        self.patience = patience
        self.verbose = verbose
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = start_from_epoch
        self.check_finite = bool(check_finite)
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None
        self.stop_reason = None
        self.stop_message = None
        if mode != "auto":
            self._check_thresholds(mode)

    def _check_thresholds(self, direction):
        """A goal on the wrong side of the divergence bound stops every epoch."""
        goal, lost = self.stopping_threshold, self.divergence_threshold
        if goal is None or lost is None:
            return
        if (direction == "min" and not goal < lost) or (
            direction == "max" and not goal > lost
        ):
            side = "<" if direction == "min" else ">"
            raise ValueError(
                f"With mode={direction!r}, argument `stopping_threshold` must be "
                f"{side} divergence_threshold, or every value stops training. "
                f"Received: stopping_threshold={goal!r}, "
                f"divergence_threshold={lost!r}"
            )

    def _set_monitor_op(self):
        super()._set_monitor_op()
        self._check_thresholds(self.direction)

    def get_config(self):
        return {
            "monitor": self.monitor,
            "min_delta": self.min_delta,
            "patience": self.patience,
            "verbose": self.verbose,
            "mode": self.mode,
            "baseline": self.baseline,
            "restore_best_weights": self.restore_best_weights,
            "start_from_epoch": self.start_from_epoch,
            "check_finite": self.check_finite,
            "stopping_threshold": self.stopping_threshold,
            "divergence_threshold": self.divergence_threshold,
            "min_delta_mode": self.min_delta_mode,
        }

    def on_train_begin(self, logs=None):
        # Instances are reused across `fit` calls.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0
        self.stop_reason = None
        self.stop_message = None
        self._reset_monitor()

    def _better(self, a, b):
        return a < b if self.direction == "min" else a > b

    def _stop(self, epoch, reason, message):
        self.stopped_epoch = epoch
        self.stop_reason = reason
        self.stop_message = message
        self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None:
            return
        try:
            self._decide(epoch, current)
        finally:
            self._notify_backup()

    def _decide(self, epoch, current):
        finite = math.isfinite(current)
        if self.check_finite and not finite:
            self._stop(
                epoch,
                NON_FINITE,
                f"Monitored metric {self.monitor} = {current} is not finite.",
            )
            return
        if epoch < self.start_from_epoch:
            return
        self.wait += 1
        improved = finite and self._is_improvement(current, self.best)
        if improved:
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # The wait restarts only when the baseline is beaten too.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
        if self.stopping_threshold is not None and self._better(
            current, self.stopping_threshold
        ):
            self._stop(
                epoch,
                STOPPING_THRESHOLD,
                f"Stopping threshold reached: {self.monitor} = {current} is "
                f"better than {self.stopping_threshold}.",
            )
            return
        if self.divergence_threshold is not None and self._better(
            self.divergence_threshold, current
        ):
            self._stop(
                epoch,
                DIVERGENCE_THRESHOLD,
                f"Divergence threshold reached: {self.monitor} = {current} is "
                f"worse than {self.divergence_threshold}.",
            )
            return
        if improved:
            return
        if self.wait >= self.patience and epoch > 0:
            self._stop(
                epoch,
                PATIENCE,
                f"Monitored metric {self.monitor} did not improve in the last "
                f"{self.wait} epochs. Best value: {self.best} "
                f"(epoch {self.best_epoch + 1}).",
            )

    def on_train_end(self, logs=None):
        if self.stop_reason is not None and self.verbose > 0:
            _monitor.print_msg(
                f"Epoch {self.stopped_epoch + 1}: early stopping "
                f"({self.stop_reason}). {self.stop_message}"
            )
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _monitor.print_msg(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)
            # Restored: a copy of every weight is not kept alive any longer.
            self.best_weights = None

    def get_state(self):
        state = super().get_state()
        state.update(
            wait=self.wait,
            stopped_epoch=self.stopped_epoch,
            best_epoch=self.best_epoch,
            stop_reason=self.stop_reason,
            stop_message=self.stop_message,
        )
        return state

    def set_state(self, state):
        super().set_state(state)
        self.wait = int(state.get("wait", 0))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))
        self.best_epoch = int(state.get("best_epoch", 0))
        self.stop_reason = state.get("stop_reason")
        self.stop_message = state.get("stop_message")

    def get_state_arrays(self):
        """The best weights, saved beside the state by `BackupAndRestore`."""
        if self.restore_best_weights and self.best_weights is not None:
            return list(self.best_weights)
        return None

    def set_state_arrays(self, arrays):
        self.best_weights = list(arrays) if arrays is not None else None
