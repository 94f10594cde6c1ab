"""`SGDR`: cosine annealing with warm restarts, cycles sized from `fit`."""

import math

import keras

from keras_tricks import schedules
from keras_tricks.callbacks._schedule_callback import (
    ScheduleCallback,
    check_at_most_one,
    check_optional_number,
)
from keras_tricks.schedules import _primitives as P

_PLACEHOLDER_STEPS = 1_000


def fitted_first_cycle(fraction, t_mul, steps):
    """The first cycle's length (a float) for `first_cycle_fraction`.

    The fraction is rounded to a whole number of cycles `n` (those that fit
    in the run: `sum(fraction * t_mul**i, i < n) ~ 1`), and the first cycle
    is sized so that `n` cycles end exactly at `steps`: the last update runs
    at the bottom of the last cosine, never just after a restart (1/7 of 98
    updates rounded to 14 ended the third cycle at 98 of 100 updates).
    """
    if t_mul == 1.0:
        n = max(1, round(1.0 / fraction))
        return steps / n
    n = max(1, round(math.log(1.0 + (t_mul - 1.0) / fraction) / math.log(t_mul)))
    return steps * (t_mul - 1.0) / (t_mul**n - 1.0)


@keras.saving.register_keras_serializable(package="keras_tricks", name="SGDRCallback")
class SGDR(ScheduleCallback):
    """Train with SGDR, cosine annealing with warm restarts (Loshchilov & Hutter).

    Installs a `keras_tricks.schedules.SGDR` schedule on the model's optimizer
    at the start of `fit`. The first cycle can be given in updates
    (`first_cycle_steps`), in epochs (`first_cycle_epochs`, converted with
    `fit`'s steps per epoch) or as a fraction of the training after warmup
    (`first_cycle_fraction`; with `t_mul=2`, `1/7` gives three cycles of 1, 2
    and 4 sevenths that end with the training, the LR at its minimum; a
    fraction that does not tile the run is rounded to the nearest whole
    number of cycles, and the cycles are stretched or shrunk to end exactly
    at the last update). Cycle
    `i` lasts `t_mul**i` times the first one and peaks at `max_lr * m_mul**i`.

    The schedule runs inside the compiled step from the optimizer's
    `iterations` (no per-batch hook). A run resumed with `BackupAndRestore` or
    `fit(initial_epoch=e)` follows the same trajectory as an uninterrupted one;
    a new `fit` call with `initial_epoch=0` starts again from the first cycle.
    Each epoch writes `logs["lr"]` (and `logs["momentum"]` where the optimizer
    has one). To save a snapshot at the end of each cycle (snapshot
    ensembles), pair it with `keras.callbacks.ModelCheckpoint` at the epochs
    where cycles end (see the `sgdr_snapshots` example).

    PyTorch `CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)` is
    `first_cycle_steps=T_0, t_mul=T_mult, min_lr=eta_min` (stepped per batch);
    Keras `CosineDecayRestarts(initial_learning_rate, first_decay_steps,
    t_mul, m_mul, alpha)` is `max_lr, first_cycle_steps, t_mul, m_mul,
    min_lr=alpha * max_lr` when `m_mul == 1` or `alpha == 0` (Keras decays
    its peak as `(1 - alpha) * m_mul**i + alpha` times the initial LR, ours as
    `m_mul**i`); timm's `CosineLRScheduler` names them
    `t_initial`, `cycle_mul`, `cycle_decay`, `lr_min`, `cycle_limit`.

    Args:
        max_lr: float. Peak learning rate of the first cycle.
        first_cycle_steps: int or None. Length of the first cycle in updates.
        first_cycle_epochs: float or None. Length of the first cycle in
            epochs.
        first_cycle_fraction: float in (0, 1] or None. Length of the first
            cycle as a fraction of the training's updates after warmup.
            Give exactly one of the three `first_cycle_*` arguments.
        t_mul: float > 0. Each cycle is `t_mul` times longer than the one
            before. Defaults to `1.0`.
        m_mul: float > 0. Each cycle's peak is `m_mul` times the one before.
            Defaults to `1.0`.
        min_lr: float. The LR at the end of every cycle. Defaults to `0.0`.
        warmup_steps: int. Linear warmup from `min_lr` to `max_lr` before the
            first cycle, in updates. Defaults to `0`.
        cycle_limit: int or None. After this many cycles the LR stays at
            `min_lr`. Defaults to `None` (restart forever).
        total_steps: int or None. The training's length in updates, used
            only by `first_cycle_fraction`; `None` takes it from `fit`.
            Defaults to `None`.
        count: `"updates"` or `"batches"`: what a step is under Keras's
            `gradient_accumulation_steps` (see `OneCycle`).
            Defaults to `"updates"`.
        k_decay: float > 0. timm's `k_decay` (see
            `keras_tricks.schedules.SGDR`). Defaults to `1.0`.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_tricks

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(momentum=0.9), loss="mse")
    x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    sgdr = keras_tricks.callbacks.SGDR(
        max_lr=0.05, first_cycle_epochs=1, t_mul=2.0, min_lr=1e-4
    )
    model.fit(x, y, epochs=7, batch_size=16, verbose=0, callbacks=[sgdr])
    # Restarts after epochs 1 and 3: cycles of 1, 2 and 4 epochs.
    ```
    """

    def __init__(
        self,
        max_lr,
        first_cycle_steps=None,
        first_cycle_epochs=None,
        first_cycle_fraction=None,
        t_mul=1.0,
        m_mul=1.0,
        min_lr=0.0,
        warmup_steps=0,
        cycle_limit=None,
        total_steps=None,
        count="updates",
        k_decay=1.0,
    ):
        super().__init__(total_steps=total_steps, count=count)
        given = check_at_most_one(
            first_cycle_steps=first_cycle_steps,
            first_cycle_epochs=first_cycle_epochs,
            first_cycle_fraction=first_cycle_fraction,
        )
        if not given:
            raise ValueError(
                "SGDR needs the length of its first cycle: give one of "
                "`first_cycle_steps`, `first_cycle_epochs` or "
                "`first_cycle_fraction`. Received: none of them"
            )
        if first_cycle_steps is not None:
            first_cycle_steps = P.check_int(
                "first_cycle_steps", first_cycle_steps, gt=0
            )
        self.first_cycle_steps = first_cycle_steps
        self.first_cycle_epochs = check_optional_number(
            "first_cycle_epochs", first_cycle_epochs, gt=0.0
        )
        self.first_cycle_fraction = check_optional_number(
            "first_cycle_fraction", first_cycle_fraction, gt=0.0, le=1.0
        )
        self.max_lr = max_lr
        self.t_mul = t_mul
        self.m_mul = m_mul
        self.min_lr = min_lr
        self.warmup_steps = warmup_steps
        self.cycle_limit = cycle_limit
        self.k_decay = k_decay
        self._build(self.first_cycle_steps or _PLACEHOLDER_STEPS)
        if self.total_steps is not None and self.first_cycle_fraction is not None:
            self._make_schedule(self.total_steps, None)

    def _needs(self):
        if self.first_cycle_epochs is not None:
            return {"per_epoch"}
        if self.first_cycle_fraction is not None:
            return {"total"}
        return set()

    def _length_hint(self):
        if self.first_cycle_epochs is not None:
            return "`first_cycle_steps` instead of `first_cycle_epochs`"
        return "`total_steps`, or `first_cycle_steps`"

    def _build(self, first_cycle_steps):
        return schedules.SGDR(
            max_lr=self.max_lr,
            first_cycle_steps=first_cycle_steps,
            t_mul=self.t_mul,
            m_mul=self.m_mul,
            min_lr=self.min_lr,
            warmup_steps=self.warmup_steps,
            cycle_limit=self.cycle_limit,
            k_decay=self.k_decay,
        )

    def _make_schedule(self, total_steps, steps_per_epoch):
        if self.first_cycle_steps is not None:
            first = self.first_cycle_steps
        elif self.first_cycle_epochs is not None:
            first = max(1, round(self.first_cycle_epochs * steps_per_epoch))
        else:
            after_warmup = total_steps - int(self.warmup_steps)
            if after_warmup < 1:
                raise ValueError(
                    "Argument `warmup_steps` must be < total_steps. Received: "
                    f"warmup_steps={self.warmup_steps}, total_steps={total_steps}"
                )
            first = fitted_first_cycle(
                self.first_cycle_fraction, self.t_mul, after_warmup
            )
        return self._build(first)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_lr": self.max_lr,
                "first_cycle_steps": self.first_cycle_steps,
                "first_cycle_epochs": self.first_cycle_epochs,
                "first_cycle_fraction": self.first_cycle_fraction,
                "t_mul": self.t_mul,
                "m_mul": self.m_mul,
                "min_lr": self.min_lr,
                "warmup_steps": self.warmup_steps,
                "cycle_limit": self.cycle_limit,
                "k_decay": self.k_decay,
            }
        )
        return config
