"""Cosine annealing with warm restarts (SGDR), stateless and closed-form."""

import math

import keras

from keras_tricks.schedules import _primitives as P
from keras_tricks.schedules._ops import ops


@keras.saving.register_keras_serializable(package="keras_tricks")
class SGDR(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing with warm restarts (Loshchilov & Hutter, 2016).

    Cycle `i` lasts `T_i = first_cycle_steps * t_mul**i` steps; within it the
    learning rate follows half a cosine from `max_lr * m_mul**i` down to
    `min_lr`, then jumps back up (a warm restart):

    `lr = min_lr + (max_lr * m_mul**i - min_lr) / 2 * (1 + cos(pi * T_cur / T_i))`

    where `T_cur` is the number of steps since cycle `i` began. The cycle index
    is computed in closed form from the step (also for a non-integer `t_mul`),
    so the schedule has no state and a resumed run sees the same LR.

    With an integer `t_mul`, `m_mul=1`, no warmup and no cycle limit, it equals
    `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=first_cycle_steps,
    T_mult=t_mul, eta_min=min_lr)` stepped once per optimizer update.

    **Warmup.** With `warmup_steps > 0` the LR first rises linearly from
    `min_lr` to `max_lr` over `warmup_steps` steps, then the restarts begin.
    The warmup is *not* counted in `first_cycle_steps`: the first cosine cycle
    runs from step `warmup_steps` to `warmup_steps + first_cycle_steps`.

    **Cycle limit.** With `cycle_limit=n`, after `n` cycles the LR stays at
    `min_lr` for good.

    Args:
        max_lr: float. Peak learning rate of the first cycle.
        first_cycle_steps: int. Length of the first cycle in steps (PyTorch's
            `T_0`, Keras's `first_decay_steps`, timm's `t_initial`).
        t_mul: float > 0. Each cycle is `t_mul` times longer than the one
            before (PyTorch's `T_mult`, timm's `cycle_mul`). Defaults to `1.0`.
        m_mul: float > 0. Each cycle's peak is `m_mul` times the one before
            (timm's `cycle_decay`, Keras's `m_mul`). Defaults to `1.0`.
        min_lr: float. The LR at the end of every cycle (PyTorch's
            `eta_min`). Defaults to `0.0`.
        warmup_steps: int. Linear warmup before the first cycle (not part of
            it). Defaults to `0`.
        cycle_limit: int or None. Number of cycles after which the LR holds
            `min_lr`; `None` restarts forever. Defaults to `None`.

    Example:

    ```python
    import keras
    from keras_tricks.schedules import SGDR

    schedule = SGDR(max_lr=0.1, first_cycle_steps=100, t_mul=2.0, min_lr=1e-4)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    float(schedule(0)), float(schedule(99)), float(schedule(100))
    # (0.1, ~1.3e-4, 0.1): a restart at step 100, the next one at step 300
    ```
    """

    has_momentum = False

    def __init__(
        self,
        max_lr,
        first_cycle_steps,
        t_mul=1.0,
        m_mul=1.0,
        min_lr=0.0,
        warmup_steps=0,
        cycle_limit=None,
    ):
        super().__init__()
        self.max_lr = P.check_number("max_lr", max_lr, gt=0.0)
        self.first_cycle_steps = P.check_int(
            "first_cycle_steps", first_cycle_steps, gt=0
        )
        self.t_mul = P.check_number("t_mul", t_mul, gt=0.0)
        self.m_mul = P.check_number("m_mul", m_mul, gt=0.0)
        self.min_lr = P.check_number("min_lr", min_lr, ge=0.0)
        P.check_order("min_lr", self.min_lr, "max_lr", self.max_lr)
        self.warmup_steps = P.check_int("warmup_steps", warmup_steps, ge=0)
        if cycle_limit is not None:
            cycle_limit = P.check_int("cycle_limit", cycle_limit, gt=0)
        self.cycle_limit = cycle_limit
        # With an integer T_0 and t_mul every cycle starts at an integer step;
        # rounding keeps the float32 boundaries exact (no off-by-one restart).
        self._integral = self.t_mul.is_integer()

    def _cycle_start(self, i):
        """Step (after warmup) at which cycle `i` begins; `i` a float tensor."""
        t0, t_mul = float(self.first_cycle_steps), self.t_mul
        if t_mul == 1.0:
            return ops.multiply(i, t0)
        grown = ops.exp(ops.multiply(i, math.log(t_mul)))
        start = ops.divide(ops.multiply(ops.subtract(grown, 1.0), t0), t_mul - 1.0)
        nearest = ops.round(start)
        if self._integral:
            return nearest
        # A restart that falls on an integer step (t_mul=1.5, T_0=8: steps 8,
        # 20, 38, 65) must happen at that step, not one step late because
        # float32 gave 65.00001: snap boundaries within a few ulps of an integer.
        tolerance = ops.add(1e-4, ops.multiply(1e-6, ops.abs(start)))
        close = ops.less_equal(ops.abs(ops.subtract(start, nearest)), tolerance)
        return ops.where(close, nearest, start)

    def _cycle_span_total(self):
        """Steps (after warmup) before the LR holds `min_lr`, or None."""
        t0, t_mul = float(self.first_cycle_steps), self.t_mul
        if self.cycle_limit is not None:
            n = self.cycle_limit
            return t0 * n if t_mul == 1.0 else t0 * (t_mul**n - 1.0) / (t_mul - 1.0)
        if t_mul < 1.0:
            # Ever shorter cycles add up to a finite time.
            return t0 / (1.0 - t_mul)
        return None

    def __call__(self, step):
        step = P.as_step(step)
        t = ops.maximum(ops.subtract(step, float(self.warmup_steps)), 0.0)
        t0, t_mul = float(self.first_cycle_steps), self.t_mul
        horizon = self._cycle_span_total()
        if horizon is not None:
            t = ops.minimum(t, horizon)

        if t_mul == 1.0:
            i = ops.floor(ops.divide(t, t0))
        else:
            arg = ops.add(1.0, ops.multiply(ops.divide(t, t0), t_mul - 1.0))
            arg = ops.maximum(arg, 1e-30)
            i = ops.floor(ops.divide(ops.log(arg), math.log(t_mul)))
            i = ops.maximum(i, 0.0)
        # float32 log/exp can miss a boundary by one cycle: correct both ways.
        i = ops.where(ops.less(t, self._cycle_start(i)), ops.maximum(i - 1.0, 0.0), i)
        i = ops.where(ops.greater_equal(t, self._cycle_start(i + 1.0)), i + 1.0, i)

        start = self._cycle_start(i)
        length = ops.subtract(self._cycle_start(i + 1.0), start)
        pct = ops.clip(ops.divide(ops.subtract(t, start), length), 0.0, 1.0)
        peak = ops.multiply(self.max_lr, ops.exp(ops.multiply(i, math.log(self.m_mul))))
        lr = P.cosine(peak, self.min_lr, pct)
        if horizon is not None:
            lr = ops.where(ops.greater_equal(t, horizon), self.min_lr, lr)

        if self.warmup_steps > 0:
            warm = P.join(
                step, [float(self.warmup_steps)], [("linear", self.min_lr, self.max_lr)]
            )
            lr = ops.where(ops.less(step, float(self.warmup_steps)), warm, lr)
        return ops.cast(lr, "float32")

    def cycle_end_steps(self, total_steps):
        """The steps at which cycles end, up to `total_steps`.

        Each value `b` is a number of updates: cycle `i` is complete after
        `b_i` updates (its last update, at the LR minimum, is step `b_i - 1`;
        step `b_i` restarts). The warmup counts in `b_i`. Computed on the
        host with the boundaries the schedule itself uses, so a snapshot
        taken after `b_i` updates is the model at the end of a cycle
        (see `keras_tricks.callbacks.SnapshotEnsemble`).

        Args:
            total_steps: int. The training's length in updates; ends after
                it are left out.

        Returns:
            A list of ints, increasing, each in `[1, total_steps]`.

        Example:

        ```python
        SGDR(0.1, first_cycle_steps=100, t_mul=2.0).cycle_end_steps(700)
        # [100, 300, 700]
        ```
        """
        total_steps = P.check_int("total_steps", total_steps, ge=0)
        t0, t_mul = float(self.first_cycle_steps), self.t_mul
        ends, previous, n = [], 0, 1
        while self.cycle_limit is None or n <= self.cycle_limit:
            if t_mul == 1.0:
                start = t0 * n
            else:
                start = t0 * (t_mul**n - 1.0) / (t_mul - 1.0)
            nearest = round(start)
            if self._integral or abs(start - nearest) <= 1e-4 + 1e-6 * abs(start):
                end = int(nearest)
            else:
                # The first integer step at or after a fractional boundary.
                end = int(math.ceil(start))
            end += self.warmup_steps
            if end > total_steps or end <= previous:
                # Past the training, or cycles shorter than one update
                # (t_mul < 1): no further distinct end.
                break
            ends.append(end)
            previous, n = end, n + 1
        return ends

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "first_cycle_steps": self.first_cycle_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "min_lr": self.min_lr,
            "warmup_steps": self.warmup_steps,
            "cycle_limit": self.cycle_limit,
        }
