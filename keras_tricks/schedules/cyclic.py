"""Cyclical learning rates (Smith, 2015), equal to PyTorch's CyclicLR."""

import math

import keras

from keras_tricks.schedules import _primitives as P
from keras_tricks.schedules._ops import ops

MODES = ("triangular", "triangular2", "exp_range")


@keras.saving.register_keras_serializable(package="keras_tricks")
class CyclicLR(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclical learning rate (Smith, arXiv 1506.01186), with momentum cycling.

    The LR goes up linearly from `base_lr` to `max_lr` over `step_size` steps,
    back down over the next `step_size` steps, and repeats. With
    `cycle = floor(1 + step / (2 * step_size))` and
    `x = |step / step_size - 2 * cycle + 1|`:

    `lr = base_lr + (max_lr - base_lr) * max(0, 1 - x) * scale`

    where `scale` is 1 (`"triangular"`), `1 / 2**(cycle - 1)`
    (`"triangular2"`: the amplitude halves every cycle) or `gamma**step`
    (`"exp_range"`). The momentum moves the other way:
    `momentum = max_momentum - (max_momentum - base_momentum) * max(0, 1 - x) * scale`.

    `schedule(step)` and `schedule.momentum(step)` equal the LR and momentum of
    `torch.optim.lr_scheduler.CyclicLR(base_lr, max_lr, step_size_up=step_size,
    mode=mode, gamma=gamma, base_momentum=..., max_momentum=...)` after `step`
    calls of `scheduler.step()`.

    Args:
        base_lr: float. Lower bound of the LR (the LR at the start of a cycle).
        max_lr: float. Upper bound of the LR, reached at `step_size`.
        step_size: int. Steps in half a cycle (PyTorch's `step_size_up`).
            Smith suggests 2 to 10 epochs' worth of steps.
        mode: `"triangular"`, `"triangular2"` or `"exp_range"`.
            Defaults to `"triangular"`.
        gamma: float > 0. Decay base of `"exp_range"`, applied per step.
            Defaults to `1.0`.
        base_momentum: float. Momentum at the LR peak. Defaults to `0.8`.
        max_momentum: float. Momentum at the LR trough. Defaults to `0.9`.

    Example:

    ```python
    import keras
    from keras_tricks.schedules import CyclicLR

    schedule = CyclicLR(base_lr=1e-3, max_lr=1e-2, step_size=200,
                        mode="triangular2")
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    float(schedule(200)), float(schedule(600))  # (0.01, 0.0055)
    ```
    """

    has_momentum = True

    def __init__(
        self,
        base_lr,
        max_lr,
        step_size,
        mode="triangular",
        gamma=1.0,
        base_momentum=0.8,
        max_momentum=0.9,
    ):
        super().__init__()
        self.base_lr = P.check_number("base_lr", base_lr, ge=0.0)
        self.max_lr = P.check_number("max_lr", max_lr, gt=0.0)
        P.check_order("base_lr", self.base_lr, "max_lr", self.max_lr)
        self.step_size = P.check_int("step_size", step_size, gt=0)
        self.mode = P.check_choice("mode", mode, MODES)
        self.gamma = P.check_number("gamma", gamma, gt=0.0)
        self.base_momentum = P.check_number(
            "base_momentum", base_momentum, ge=0.0, le=1.0
        )
        self.max_momentum = P.check_number("max_momentum", max_momentum, ge=0.0, le=1.0)

    def _wave(self, step):
        """The triangle `max(0, 1 - x)` times the mode's scale, in [0, 1]."""
        step = P.as_step(step)
        s = float(self.step_size)
        cycle = ops.floor(ops.add(1.0, ops.divide(step, 2.0 * s)))
        x = ops.abs(ops.add(ops.subtract(ops.divide(step, s), 2.0 * cycle), 1.0))
        tri = ops.maximum(ops.subtract(1.0, x), 0.0)
        if self.mode == "triangular2":
            scale = ops.exp(ops.multiply(ops.subtract(cycle, 1.0), -math.log(2.0)))
        elif self.mode == "exp_range":
            scale = ops.exp(ops.multiply(step, math.log(self.gamma)))
        else:
            scale = 1.0
        return ops.multiply(tri, scale)

    def __call__(self, step):
        lr = P.linear(self.base_lr, self.max_lr, self._wave(step))
        return ops.cast(lr, "float32")

    def momentum(self, step):
        """The momentum (SGD `momentum` / Adam `beta_1`) at `step`, float32."""
        m = P.linear(self.max_momentum, self.base_momentum, self._wave(step))
        return ops.cast(m, "float32")

    def cycle_end_steps(self, total_steps):
        """The steps at which cycles end (the LR back at `base_lr`), up to `total_steps`.

        A cycle lasts `2 * step_size` updates; cycle `k` (from 1) is complete
        after `2 * step_size * k` updates, when the LR is back at its lowest
        value. See `keras_tricks.callbacks.SnapshotEnsemble`.

        Args:
            total_steps: int. The training's length in updates.

        Returns:
            A list of ints, increasing, each in `[1, total_steps]`.

        Example:

        ```python
        CyclicLR(1e-3, 1e-2, step_size=50).cycle_end_steps(350)  # [100, 200, 300]
        ```
        """
        total_steps = P.check_int("total_steps", total_steps, ge=0)
        period = 2 * self.step_size
        return list(range(period, total_steps + 1, period))

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "max_lr": self.max_lr,
            "step_size": self.step_size,
            "mode": self.mode,
            "gamma": self.gamma,
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
        }
