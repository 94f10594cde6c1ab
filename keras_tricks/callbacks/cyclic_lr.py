"""`CyclicLR`: Smith's cyclical learning rate (and momentum) inside `fit`."""

import keras

from keras_tricks import schedules
from keras_tricks.callbacks._schedule_callback import (
    ScheduleCallback,
    check_at_most_one,
    check_optional_number,
)
from keras_tricks.schedules import _primitives as P

_PLACEHOLDER_STEPS = 1_000


@keras.saving.register_keras_serializable(
    package="keras_tricks", name="CyclicLRCallback"
)
class CyclicLR(ScheduleCallback):
    """Train with a cyclical learning rate (Smith, arXiv 1506.01186).

    Installs a `keras_tricks.schedules.CyclicLR` schedule at the start of
    `fit`: the LR goes linearly from `base_lr` up to `max_lr` over
    `step_size` updates and back down, again and again (`"triangular"`), with
    the amplitude halved every cycle (`"triangular2"`) or decayed by
    `gamma**step` (`"exp_range"`). With `cycle_momentum=True` (the default,
    as in PyTorch) the momentum (SGD `momentum`, or `beta_1` of the Adam
    family) moves from `max_momentum` down to `base_momentum` and back,
    opposite to the LR. The half cycle can be given in updates (`step_size`)
    or in epochs (`step_size_epochs`; Smith suggests 2 to 10 epochs).

    The schedule runs inside the compiled step from the optimizer's
    `iterations` (no per-batch hook); a run resumed with `BackupAndRestore` or
    `fit(initial_epoch=e)` follows the same trajectory as an uninterrupted
    one, and a new `fit` call with `initial_epoch=0` starts a new first cycle.
    Each epoch writes `logs["lr"]` and `logs["momentum"]`.

    PyTorch `CyclicLR(base_lr, max_lr, step_size_up, mode, gamma,
    cycle_momentum, base_momentum, max_momentum)` is the same with
    `step_size=step_size_up` (only symmetric cycles here).

    Args:
        base_lr: float. Lower bound of the LR.
        max_lr: float. Upper bound of the LR.
        step_size: int or None. Updates in half a cycle.
        step_size_epochs: float or None. Epochs in half a cycle. Give exactly
            one of `step_size` and `step_size_epochs`.
        mode: `"triangular"`, `"triangular2"` or `"exp_range"`.
            Defaults to `"triangular"`.
        gamma: float. Per-update decay of `"exp_range"`. Defaults to `1.0`.
        cycle_momentum: bool. Cycle the optimizer's momentum inversely to the
            LR. Needs SGD with `momentum > 0` or an optimizer of the Adam
            family. Defaults to `True`.
        base_momentum: float. Momentum at the LR peak. Defaults to `0.8`.
        max_momentum: float. Momentum at the LR trough. Defaults to `0.9`.
        count: `"updates"` or `"batches"`: what a step is under Keras's
            `gradient_accumulation_steps` (see `OneCycle`).
            Defaults to `"updates"`.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_tricks

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(momentum=0.9), loss="mse")
    x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    clr = keras_tricks.callbacks.CyclicLR(
        base_lr=1e-3, max_lr=1e-2, step_size_epochs=2, mode="triangular2"
    )
    model.fit(x, y, epochs=8, batch_size=16, verbose=0, callbacks=[clr])
    ```
    """

    def __init__(
        self,
        base_lr,
        max_lr,
        step_size=None,
        step_size_epochs=None,
        mode="triangular",
        gamma=1.0,
        cycle_momentum=True,
        base_momentum=0.8,
        max_momentum=0.9,
        count="updates",
    ):
        super().__init__(total_steps=None, count=count)
        given = check_at_most_one(
            step_size=step_size, step_size_epochs=step_size_epochs
        )
        if not given:
            raise ValueError(
                "CyclicLR needs the length of half a cycle: give `step_size` "
                "(updates) or `step_size_epochs`. Received: neither"
            )
        if step_size is not None:
            step_size = P.check_int("step_size", step_size, gt=0)
        self.step_size = step_size
        self.step_size_epochs = check_optional_number(
            "step_size_epochs", step_size_epochs, gt=0.0
        )
        self.base_lr = base_lr
        self.max_lr = max_lr
        self.mode = mode
        self.gamma = gamma
        self.cycle_momentum = bool(cycle_momentum)
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        self._cycle_momentum = self.cycle_momentum
        self._build(self.step_size or _PLACEHOLDER_STEPS)

    def _needs(self):
        return {"per_epoch"} if self.step_size_epochs is not None else set()

    def _length_hint(self):
        return "`step_size` instead of `step_size_epochs`"

    def _build(self, step_size):
        return schedules.CyclicLR(
            base_lr=self.base_lr,
            max_lr=self.max_lr,
            step_size=step_size,
            mode=self.mode,
            gamma=self.gamma,
            base_momentum=self.base_momentum,
            max_momentum=self.max_momentum,
        )

    def _make_schedule(self, total_steps, steps_per_epoch):
        if self.step_size is not None:
            return self._build(self.step_size)
        return self._build(max(1, round(self.step_size_epochs * steps_per_epoch)))

    def get_config(self):
        config = {
            "base_lr": self.base_lr,
            "max_lr": self.max_lr,
            "step_size": self.step_size,
            "step_size_epochs": self.step_size_epochs,
            "mode": self.mode,
            "gamma": self.gamma,
            "cycle_momentum": self.cycle_momentum,
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
            "count": self.count,
        }
        return config
