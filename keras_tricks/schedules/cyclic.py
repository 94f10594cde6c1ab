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
        """The triangle `max(0, 1 - x)` times the mode's scale, in [0, 1].

        Computed from the position in the cycle, `step mod 2 * step_size`,
        an exact float32 operation, rather than from `step / step_size`: XLA
        turns a division by a constant into a multiplication by its
        reciprocal, which is not exact (`14 * (1/7) != 2` in float32) and put
        the troughs of `CyclicLR(1e-4, 1e-2, 7)` 9.4e-5 off `base_lr` in a
        compiled step. Here the triangle is exactly 0 at a trough and exactly
        1 at a peak, compiled or not.
        """
        step = P.as_step(step)
        s = float(self.step_size)
        position = ops.mod(step, 2.0 * s)
        # Steps since the cycle began, a multiple of 2 * step_size: rounding
        # makes the cycle number exact whatever the division compiles to.
        cycle = ops.add(ops.round(ops.divide(ops.subtract(step, position), 2.0 * s)), 1.0)
        rise = ops.subtract(s, ops.abs(ops.subtract(position, s)))  # 0 .. s
        tri = ops.where(ops.greater_equal(rise, s), 1.0, ops.divide(rise, s))
        if self.mode == "triangular2":
            scale = ops.power(0.5, ops.subtract(cycle, 1.0))
        elif self.mode == "exp_range":
            scale = ops.exp(ops.multiply(step, math.log(self.gamma)))
        else:
            return tri
        return ops.multiply(tri, scale)

    @staticmethod
    def _blend(low, high, w):
        # `low * (1 - w) + high * w` is exactly `low` at w = 0 and `high` at
        # w = 1 in float32 (PyTorch's `low + (high - low) * w` may miss `high`
        # by an ulp); elsewhere the two agree to rounding.
        return ops.add(ops.multiply(low, ops.subtract(1.0, w)), ops.multiply(high, w))

    def __call__(self, step):
        lr = self._blend(self.base_lr, self.max_lr, self._wave(step))
        return ops.cast(lr, "float32")

    def momentum(self, step):
        """The momentum (SGD `momentum` / Adam `beta_1`) at `step`, float32."""
        m = self._blend(self.max_momentum, self.base_momentum, self._wave(step))
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
