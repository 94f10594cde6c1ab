"""The "Bag of Tricks" plateau rule: halve the LR when the loss only fluctuates.

Every epoch the residual between the epoch's loss and its bias-corrected EMA
is added to a running sum. While the loss still falls the EMA lags above it
and the residuals share a sign, so the sum grows; on a plateau the loss only
wobbles around its EMA and the signed residuals cancel. When the mean of the
summed residuals over a window of P epochs falls under a threshold, the LR is
multiplied by `factor` and the window grows by `growth` so that the next
reduction needs a longer plateau.

`PlateauRule` is the rule alone (plain Python, testable on a list of numbers);
`SmartReduceLROnPlateau` is the Keras callback that feeds it and changes the LR.
"""

import math

import keras

from keras_tricks import _control
from keras_tricks.callbacks import _monitor
from keras_tricks.callbacks.reduce_lr_on_plateau import (
    log_learning_rates,
    reduce_learning_rate,
)

_ALIGNMENTS = ("aligned", "literal")
# Arguments of ReduceLROnPlateau that this callback has no use for.
_REDUCE_LR_ONLY = frozenset({"min_delta_mode", "smoothing"})
_THRESHOLD_MODES = ("abs", "rel")


class PlateauRule:
    """The EMA-fluctuation plateau test as a small state machine.

    Feed it one value per epoch with `update`; it answers True at the end of
    an epoch after which the LR should drop. With `alignment="aligned"` a
    check happens once `round(window)` epochs have been summed since the last
    check, and the mean residual is the sum divided by that count. With
    `alignment="literal"` the check happens when `epochs_seen % window == 0`,
    as in the original pseudo-code, and the sum is divided by `window` even
    when fewer epochs were summed (after the window grows from 16 to 24, the
    next check comes at epoch 24, eight epochs later).

    Args:
        window: Number. Initial window P in epochs. Defaults to `16`.
        threshold: Float. The mean |residual| under which a plateau is
            declared. Defaults to `1e-3`.
        threshold_mode: String. `"abs"`, or `"rel"` for `threshold` times
            the smoothed value (independent of the loss scale).
            Defaults to `"abs"`.
        beta: Float in [0, 1). EMA coefficient. Defaults to `0.98`.
        growth: Float >= 1. The window is multiplied by it after each
            plateau. Defaults to `1.5`.
        alignment: String. `"aligned"` or `"literal"`. Defaults to
            `"aligned"`.
        cooldown: Integer. Epochs after a plateau that are left out of the
            next window (the EMA still sees them). Defaults to `0`.

    Example:

    ```python
    import numpy as np
    from keras_tricks.callbacks import PlateauRule

    rule = PlateauRule()
    rng = np.random.default_rng(0)
    flat = 0.5 + 0.001 * rng.standard_normal(30)
    print([e for e, v in enumerate(flat) if rule.update(v)])  # [15]
    ```
    """

    def __init__(
        self,
        window=16,
        threshold=1e-3,
        threshold_mode="abs",
        beta=0.98,
        growth=1.5,
        alignment="aligned",
        cooldown=0,
    ):
        _monitor._check_number("window", window, low=1)
        _monitor._check_number("threshold", threshold, low=0)
        _monitor._check_choice("threshold_mode", threshold_mode, _THRESHOLD_MODES)
        _monitor._check_number("beta", beta, low=0, high=1, high_open=True)
        _monitor._check_number("growth", growth, low=1)
        _monitor._check_choice("window_alignment", alignment, _ALIGNMENTS)
        cooldown = _monitor._check_int("cooldown", cooldown)
        self.initial_window = float(window)
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.beta = float(beta)
        self.growth = float(growth)
        self.alignment = alignment
        self.cooldown = cooldown
        self.reset()

    def get_config(self):
        return {
            "window": self.initial_window,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "beta": self.beta,
            "growth": self.growth,
            "alignment": self.alignment,
            "cooldown": self.cooldown,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def reset(self):
        """Forget everything (a new `fit`)."""
        self.window = self.initial_window
        self.epochs = 0
        self.avg = 0.0
        self.residual_sum = 0.0
        self.window_epochs = 0
        self.cooldown_left = 0
        self.smoothed = None
        self.last_statistic = None
        self.last_limit = None

    def _due(self):
        if self.alignment == "literal":
            return self.epochs % self.window == 0
        return self.window_epochs >= round(self.window)

    def update(self, value):
        """Add one epoch's value; True when a plateau is declared."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"PlateauRule needs finite values. Received: {value}")
        self.epochs += 1
        self.avg = self.beta * self.avg + (1.0 - self.beta) * value
        self.smoothed = self.avg / (1.0 - self.beta**self.epochs)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return False
        self.residual_sum += value - self.smoothed
        self.window_epochs += 1
        if not self._due():
            return False
        count = self.window if self.alignment == "literal" else self.window_epochs
        self.last_statistic = abs(self.residual_sum) / count
        self.last_limit = self.threshold
        if self.threshold_mode == "rel":
            self.last_limit = self.threshold * abs(self.smoothed)
        self.residual_sum = 0.0
        self.window_epochs = 0
        plateau = self.last_statistic <= self.last_limit
        if plateau:
            self.window *= self.growth
            self.cooldown_left = self.cooldown
        return plateau

    _STATE = (
        "window",
        "epochs",
        "avg",
        "residual_sum",
        "window_epochs",
        "cooldown_left",
        "smoothed",
        "last_statistic",
        "last_limit",
    )

    def get_state(self):
        return {name: getattr(self, name) for name in self._STATE}

    def set_state(self, state):
        for name in self._STATE:
            if name in state:
                setattr(self, name, state[name])


@keras.saving.register_keras_serializable(package="keras_tricks")
class SmartReduceLROnPlateau(_monitor.MonitorCallback):
    """Halve the LR when the training loss only fluctuates around its EMA.

    The plateau rule of the "Bag of Tricks" notes (see `PlateauRule`): per
    epoch, the signed residuals between the epoch's mean training loss and
    its bias-corrected EMA (`beta=0.98`) are summed over a window of P epochs
    (`patience`, 16 by default); when their mean magnitude is at most
    `threshold` the LR is multiplied by `factor` (0.5), not below `min_lr`
    (1e-6), and P grows by `growth` (1.5): windows of 16, 24, 36, 54, ...
    epochs.

    It accepts the arguments of `keras.callbacks.ReduceLROnPlateau` where
    they apply, so swapping the import is enough: `patience` is the initial
    window, `min_delta` the threshold, `factor`, `cooldown`, `min_lr`,
    `monitor` and `verbose` mean the same. `mode` is accepted and checked but
    has no effect: the rule looks at |sum of residuals|, which does not
    depend on the direction. Like `keras_tricks.callbacks.ReduceLROnPlateau`
    it works on top of any LR schedule and its state survives an
    interruption with `keras_tricks.callbacks.BackupAndRestore`.

    Where it differs from the pseudo-code, by choice: windows are aligned
    ("epochs since the last check >= round(P)") unless
    `window_alignment="literal"` (`epoch % P == 0`, which misaligns after P
    grows); `threshold_mode="rel"` scales the threshold by the smoothed loss,
    since the absolute 1e-3 depends on the loss's scale.

    When it helps and when not: it reacts to a real plateau of the training
    loss without a hand-tuned patience, but slowly (the EMA with beta=0.98
    remembers about 50 epochs, so after a fast fall the residuals stay one-
    sided for a while), and a noisy loss whose noise does not average out
    over P epochs never triggers it. It is meant for runs of many epochs.

    Args:
        monitor: String. Quantity to watch. Defaults to `"loss"` (the epoch's
            mean training loss); `"val_loss"` works too.
        factor: Float in (0, 1). `new_lr = lr * factor`. Defaults to `0.5`.
        patience: Number. The initial window P in epochs. Defaults to `16`.
        verbose: Integer. 1 prints a message at each reduction.
            Defaults to `0`.
        mode: String. `"auto"`, `"min"` or `"max"`; no effect (see above).
            Defaults to `"auto"`.
        min_delta: Float or None. Keras's name for `threshold`.
            Defaults to `None`.
        cooldown: Integer. Epochs after a reduction left out of the next
            window. Defaults to `0`.
        min_lr: Float. Lower bound on the learning rate. Defaults to `1e-6`.
        threshold: Float or None. The mean |residual| under which the LR
            drops; `None` means `1e-3` (or `min_delta`). Defaults to `None`.
        threshold_mode: String. `"abs"` or `"rel"` (times the smoothed
            loss). Defaults to `"abs"`.
        beta: Float in [0, 1). EMA coefficient. Defaults to `0.98`.
        growth: Float >= 1. Window growth after a reduction. Defaults to `1.5`.
        window_alignment: String. `"aligned"` or `"literal"`. Defaults to
            `"aligned"`.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_tricks.callbacks import SmartReduceLROnPlateau

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    smart = SmartReduceLROnPlateau(patience=4, verbose=1)
    model.fit(np.ones((32, 4)), np.zeros((32, 1)), epochs=10,
              callbacks=[smart], verbose=0)
    ```
    """

    def __init__(
        self,
        monitor="loss",
        factor=0.5,
        patience=16,
        verbose=0,
        mode="auto",
        min_delta=None,
        cooldown=0,
        min_lr=1e-6,
        threshold=None,
        threshold_mode="abs",
        beta=0.98,
        growth=1.5,
        window_alignment="aligned",
        **kwargs,
    ):
        if kwargs:
            # A typo or an argument of the other plateau callback would
            # otherwise be ignored without a word.
            others = sorted(set(kwargs) & _REDUCE_LR_ONLY)
            hint = (
                f" {others} belong to keras_tricks.callbacks.ReduceLROnPlateau."
                if others
                else ""
            )
            shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise TypeError(
                "SmartReduceLROnPlateau got unexpected keyword argument(s) "
                f"{sorted(kwargs)}.{hint} Received: {shown}"
            )
        if min_delta is not None and threshold is not None:
            raise ValueError(
                "Pass either `threshold` or its Keras name `min_delta`, not both. "
                f"Received: threshold={threshold}, min_delta={min_delta}"
            )
        if min_delta is not None:
            min_delta = _monitor._check_number("min_delta", min_delta)
        if threshold is not None:
            threshold = _monitor._check_number("threshold", threshold, low=0)
        _monitor._check_number("patience", patience, low=1)
        if threshold is None:
            threshold = 1e-3 if min_delta is None else abs(min_delta)
        super().__init__(monitor, mode, min_delta=threshold)
        if not _monitor._is_real(factor) or not 0.0 < factor < 1.0:
            raise ValueError(
                f"Argument `factor` must be in (0, 1). Received: factor={factor!r}"
            )
        min_lr = _monitor._check_number("min_lr", min_lr, low=0)
        self.rule = PlateauRule(
            window=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            beta=beta,
            growth=growth,
            alignment=window_alignment,
            cooldown=cooldown,
        )
        self.factor = float(factor)
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.beta = float(beta)
        self.growth = float(growth)
        self.window_alignment = window_alignment
        self.reductions = []

    def get_config(self):
        return {
            "monitor": self.monitor,
            "factor": self.factor,
            "patience": self.patience,
            "verbose": self.verbose,
            "mode": self.mode,
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "beta": self.beta,
            "growth": self.growth,
            "window_alignment": self.window_alignment,
        }

    @property
    def window(self):
        """The current window P, in epochs."""
        return self.rule.window

    def on_train_begin(self, logs=None):
        # Under control before the first trace (see ReduceLROnPlateau).
        if getattr(self.model, "optimizer", None) is not None:
            _control.take_control(self.model.optimizer, self.model)
        self.rule.reset()
        self.reductions = []
        self._reset_monitor()

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        if logs is None:
            logs = {}
        known = log_learning_rates(model, logs)
        current = self.get_monitor_value(logs)
        if current is None or not math.isfinite(current):
            return
        weights_changed = False
        if self.rule.update(current):
            changed = reduce_learning_rate(model, self.factor, self.min_lr, known=known)
            if changed:
                weights_changed = True
                new_lr = changed[0][1]
                self.reductions.append((epoch, new_lr))
                if self.verbose > 0:
                    _monitor.print_msg(
                        f"\nEpoch {epoch + 1}: SmartReduceLROnPlateau reducing "
                        f"learning rate to {new_lr} (mean residual "
                        f"{self.rule.last_statistic:.3g} <= "
                        f"{self.rule.last_limit:.3g}; next window "
                        f"{round(self.rule.window)} epochs)."
                    )
        self._notify_backup(weights_changed)

    def get_state(self):
        state = super().get_state()
        state["rule"] = self.rule.get_state()
        state["reductions"] = [list(r) for r in self.reductions]
        return state

    def set_state(self, state):
        super().set_state(state)
        self.rule.set_state(state.get("rule", {}))
        self.reductions = [tuple(r) for r in state.get("reductions", [])]
