"""Cosine annealing with warm restarts (SGDR), stateless."""

import math

import keras
import numpy as np

from keras_tricks.schedules import _primitives as P
from keras_tricks.schedules._ops import ops

# Cycles are tabled up to this step (float32 steps are not exact past 2**24).
_LAST_STEP = 2.0**31
_MAX_CYCLES = 100_000


@keras.saving.register_keras_serializable(package="keras_tricks")
class SGDR(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing with warm restarts (Loshchilov & Hutter, 2016).

    Cycle `i` lasts `T_i = first_cycle_steps * t_mul**i` steps; within it the
    learning rate follows half a cosine from `max_lr * m_mul**i` down to
    `min_lr`, then jumps back up (a warm restart):

    `lr = min_lr + (max_lr * m_mul**i - min_lr) / 2 * (1 + cos(pi * T_cur / T_i))`

    where `T_cur` is the number of steps since cycle `i` began. The schedule
    has no state: a resumed run sees the same LR. For `t_mul != 1` the cycle
    boundaries are computed once, in float64, when the schedule is made, so a
    restart happens at the first optimizer step at or past the exact boundary
    (float32 `log`/`exp` in the step would put it a step early or late near
    step 1e5); the step finds its cycle in that table (`searchsorted`).

    **k-decay** (timm's `k_decay`, Zhang & Li, 2021): with `k_decay=k` the
    cosine runs on `T_cur**k / T_i**k` instead of `T_cur / T_i`; `k > 1` keeps
    the LR high for longer, `k < 1` drops it sooner.

    With an integer `t_mul`, `m_mul=1`, no warmup and no cycle limit, it equals
    `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=first_cycle_steps,
    T_mult=t_mul, eta_min=min_lr)` stepped once per optimizer update. It equals
    Keras's `CosineDecayRestarts(max_lr, first_cycle_steps, t_mul, m_mul,
    alpha)` with `min_lr = alpha * max_lr` only when `m_mul == 1` or
    `alpha == 0`: Keras decays the peak as `(1 - alpha) * m_mul**i + alpha`
    (times `max_lr`), which keeps the floor under a decaying peak, while here
    the peak is `max_lr * m_mul**i` (timm's `cycle_decay`).

    **Warmup.** With `warmup_steps > 0` the LR first rises linearly from
    `min_lr` to `max_lr` over `warmup_steps` steps, then the restarts begin.
    The warmup is *not* counted in `first_cycle_steps`: the first cosine cycle
    runs from step `warmup_steps` to `warmup_steps + first_cycle_steps`.

    **Cycle limit.** With `cycle_limit=n`, after `n` cycles the LR stays at
    `min_lr` for good.

    Args:
        max_lr: float. Peak learning rate of the first cycle.
        first_cycle_steps: int (or float > 0). Length of the first cycle in
            steps (PyTorch's `T_0`, Keras's `first_decay_steps`, timm's
            `t_initial`). A fraction puts the restarts between steps: the
            `SGDR` callback uses one to end the last cycle with the training.
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
        k_decay: float > 0. timm's `k_decay`: the cosine of each cycle runs
            on `(T_cur / T_i)**k_decay`. Defaults to `1.0` (plain SGDR).

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
        k_decay=1.0,
    ):
        super().__init__()
        self.max_lr = P.check_number("max_lr", max_lr, gt=0.0)
        first = P.check_number("first_cycle_steps", first_cycle_steps, gt=0.0)
        # An integer stays an int in the config (the common case); a fraction
        # of a step is allowed (the SGDR callback fits its cycles to the run).
        self.first_cycle_steps = int(first) if first.is_integer() else first
        self.t_mul = P.check_number("t_mul", t_mul, gt=0.0)
        self.m_mul = P.check_number("m_mul", m_mul, gt=0.0)
        self.min_lr = P.check_number("min_lr", min_lr, ge=0.0)
        P.check_order("min_lr", self.min_lr, "max_lr", self.max_lr)
        self.warmup_steps = P.check_int("warmup_steps", warmup_steps, ge=0)
        if cycle_limit is not None:
            cycle_limit = P.check_int("cycle_limit", cycle_limit, gt=0)
        self.cycle_limit = cycle_limit
        self.k_decay = P.check_number("k_decay", k_decay, gt=0.0)
        self._firsts, self._starts, self._peaks, self._horizon = self._tables()

    def _tables(self):
        """Per cycle: its first integer step, its start and its peak; or None.

        Computed in float64 on the host. float32 `exp`/`log` put a restart up
        to ~0.1 step off near step 1e5 (`t_mul=1.5`), and no tolerance tells a
        true integer boundary from one 0.002 step past it. A boundary is
        snapped only where it is an integer to 1e-9 relative; a step belongs
        to cycle `i` from the first integer step at or after the cycle's start
        (`ceil`, exact in float32), whatever float32 makes of the start
        itself. `t_mul == 1` needs no table (`i * T_0` is exact) and runs in
        closed form.
        """
        t0, t_mul = float(self.first_cycle_steps), self.t_mul
        if t_mul == 1.0:
            horizon = None if self.cycle_limit is None else t0 * self.cycle_limit
            return None, None, None, horizon
        starts, length = [0.0], t0
        limit = self.cycle_limit if self.cycle_limit is not None else _MAX_CYCLES
        while len(starts) <= limit:
            end = starts[-1] + length
            if t_mul > 1.0 and starts[-1] > _LAST_STEP:
                break
            # Ever shorter cycles (t_mul < 1): stop once all that are left add
            # up to less than a thousandth of a step; `min_lr` from there.
            if t_mul < 1.0 and length / (1.0 - t_mul) < 1e-3:
                break
            starts.append(end)
            length *= t_mul
        if len(starts) > _MAX_CYCLES:
            raise ValueError(
                "Argument `t_mul` is so close to 1 that the cycles before step "
                f"{_LAST_STEP:.0e} number more than {_MAX_CYCLES}; use t_mul=1.0. "
                f"Received: t_mul={self.t_mul!r}, "
                f"first_cycle_steps={self.first_cycle_steps!r}"
            )
        starts = np.asarray(starts, dtype="float64")
        nearest = np.round(starts)
        snap = np.abs(starts - nearest) <= 1e-9 * np.maximum(1.0, starts)
        starts = np.where(snap, nearest, starts)
        peaks = self.max_lr * self.m_mul ** np.arange(len(starts), dtype="float64")
        bounded = self.cycle_limit is not None or t_mul < 1.0
        horizon = float(np.ceil(starts[-1])) if bounded else None
        firsts = np.ceil(starts).astype("float32")
        return firsts, starts.astype("float32"), peaks.astype("float32"), horizon

    def __call__(self, step):
        step = P.as_step(step)
        t = ops.maximum(ops.subtract(step, float(self.warmup_steps)), 0.0)
        if self._starts is None:
            t0 = float(self.first_cycle_steps)
            if self._horizon is not None:
                t = ops.minimum(t, self._horizon)
            i = ops.floor(ops.divide(t, t0))
            start = ops.multiply(i, t0)
            length = ops.subtract(ops.multiply(i + 1.0, t0), start)
            peak = ops.multiply(
                self.max_lr, ops.exp(ops.multiply(i, math.log(self.m_mul)))
            )
        else:
            starts = ops.convert_to_tensor(self._starts)
            firsts = ops.convert_to_tensor(self._firsts)
            shape = ops.shape(t)
            flat = ops.reshape(t, (-1,))
            # The last table entry ends the last cycle: index at most n - 2.
            last = len(self._starts) - 2
            # An integer step (the optimizer's) is placed by the cycles' first
            # integer steps, exactly; a fractional one (a plot) by the starts.
            whole = ops.equal(flat, ops.floor(flat))
            i = ops.where(
                whole,
                ops.searchsorted(firsts, flat, side="right"),
                ops.searchsorted(starts, flat, side="right"),
            )
            i = ops.clip(ops.subtract(ops.cast(i, "int32"), 1), 0, last)
            start = ops.reshape(ops.take(starts, i), shape)
            length = ops.subtract(ops.reshape(ops.take(starts, i + 1), shape), start)
            peak = ops.reshape(ops.take(ops.convert_to_tensor(self._peaks), i), shape)
        pct = ops.clip(ops.divide(ops.subtract(t, start), length), 0.0, 1.0)
        if self.k_decay != 1.0:
            # timm's k-decay: cos(pi * t**k / T**k), the same as pct**k.
            pct = ops.power(pct, self.k_decay)
        lr = P.cosine(peak, self.min_lr, pct)
        if self._horizon is not None:
            lr = ops.where(ops.greater_equal(t, self._horizon), self.min_lr, lr)

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
            # The snap of `_tables`: an integer to 1e-9 relative, else the
            # first integer step at or after the boundary.
            if abs(start - nearest) <= 1e-9 * max(1.0, abs(start)):
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
            "k_decay": self.k_decay,
        }
